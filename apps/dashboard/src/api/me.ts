import { useQuery } from '@tanstack/react-query';
import { api, unwrap } from './client.js';
import { useSession } from './session.js';

/**
 * Who is signed in (`GET /v1/me`): whether they are an admin, their teams with role and BYOC flag.
 * It decides what the dashboard shows; the API checks every call for itself.
 */
export function useMe() {
  const token = useSession()?.token;
  return useQuery({
    queryKey: ['me', token],
    queryFn: () => unwrap(api.GET('/v1/me')),
    enabled: Boolean(token),
  });
}

/** The team the dashboard acts for, as `/v1/me` describes it (role, BYOC). */
export function useCurrentTeam() {
  const me = useMe();
  const teamId = useSession()?.teamId;
  return { me, team: me.data?.teams.find((t) => t.id === teamId) };
}
