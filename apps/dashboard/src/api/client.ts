import { QueryClient } from '@tanstack/react-query';
import { createWrennClient, WrennApiError } from '@wrenn/sdk';
import { getSession, setSession } from './session.js';

/** The API on the page's own origin; a session's team goes in X-Wrenn-Team. */
export const api = createWrennClient({ token: () => getSession()?.token });
api.use({
  onRequest({ request }) {
    const team = getSession()?.teamId;
    if (team) request.headers.set('x-wrenn-team', team);
    return request;
  },
  onResponse({ response, request }) {
    // An expired session signs out (the sign-in call itself answers 401 for a wrong password).
    if (response.status === 401 && !request.url.includes('/v1/auth/')) setSession(undefined);
    return response;
  },
});

export const queryClient = new QueryClient({
  defaultOptions: {
    queries: {
      retry: (failures, error) =>
        failures < 2 && !(error instanceof WrennApiError && error.status >= 400 && error.status < 500),
    },
  },
});

export { unwrap, WrennApiError, type Schemas } from '@wrenn/sdk';
