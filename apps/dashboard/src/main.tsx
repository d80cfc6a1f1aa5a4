import { QueryClientProvider } from '@tanstack/react-query';
import { StrictMode } from 'react';
import { createRoot } from 'react-dom/client';
import { Redirect, Route, Router, Switch } from 'wouter';
import { useHashLocation } from 'wouter/use-hash-location';
import { queryClient } from './api/client.js';
import { useSession } from './api/session.js';
import { SignIn } from './auth/SignIn.js';
import { ApiKeys } from './keys/ApiKeys.js';
import { Shell } from './layout/Shell.js';
import { SandboxList } from './sandboxes/SandboxList.js';
import { SandboxPage } from './sandboxes/SandboxPage.js';
import './styles.css';

function App() {
  const session = useSession();
  if (!session) return <SignIn />;
  return (
    <Router hook={useHashLocation}>
      <Shell>
        <Switch>
          <Route path="/sandboxes">
            <SandboxList />
          </Route>
          <Route path="/sandboxes/:id">{(params) => <SandboxPage id={params.id} />}</Route>
          <Route path="/keys">
            <ApiKeys />
          </Route>
          <Route>
            <Redirect to="/sandboxes" />
          </Route>
        </Switch>
      </Shell>
    </Router>
  );
}

createRoot(document.getElementById('root')!).render(
  <StrictMode>
    <QueryClientProvider client={queryClient}>
      <App />
    </QueryClientProvider>
  </StrictMode>,
);
