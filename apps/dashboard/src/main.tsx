import { QueryClientProvider } from '@tanstack/react-query';
import { StrictMode, type ReactNode } from 'react';
import { createRoot } from 'react-dom/client';
import { Redirect, Route, Router, Switch } from 'wouter';
import { useHashLocation } from 'wouter/use-hash-location';
import { AdminAudit } from './admin/AdminAudit.js';
import { AdminHosts } from './admin/AdminHosts.js';
import { AdminOnly } from './admin/AdminOnly.js';
import { AdminTeams } from './admin/AdminTeams.js';
import { AdminTemplates } from './admin/AdminTemplates.js';
import { AdminUsers } from './admin/AdminUsers.js';
import { queryClient } from './api/client.js';
import { useSession } from './api/session.js';
import { SignIn } from './auth/SignIn.js';
import { Builds } from './builds/Builds.js';
import { Hosts } from './hosts/Hosts.js';
import { ApiKeys } from './keys/ApiKeys.js';
import { Shell } from './layout/Shell.js';
import { SandboxList } from './sandboxes/SandboxList.js';
import { SandboxPage } from './sandboxes/SandboxPage.js';
import { Team } from './team/Team.js';
import { Templates } from './templates/Templates.js';
import './styles.css';

/** The admin area's pages (docs/dashboard.md): each only for administrators. */
const ADMIN_PAGES: [string, () => ReactNode][] = [
  ['/admin/hosts', () => <AdminHosts />],
  ['/admin/templates', () => <AdminTemplates />],
  ['/admin/builds', () => <Builds scope="platform" />],
  ['/admin/teams', () => <AdminTeams />],
  ['/admin/users', () => <AdminUsers />],
  ['/admin/audit', () => <AdminAudit />],
];

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
          <Route path="/templates">
            <Templates />
          </Route>
          <Route path="/builds">
            <Builds scope="team" />
          </Route>
          <Route path="/team">
            <Team />
          </Route>
          <Route path="/hosts">
            <Hosts />
          </Route>
          <Route path="/keys">
            <ApiKeys />
          </Route>
          <Route path="/admin">
            <AdminOnly>
              <Redirect to="/admin/hosts" />
            </AdminOnly>
          </Route>
          {ADMIN_PAGES.map(([path, page]) => (
            <Route key={path} path={path}>
              <AdminOnly>{page()}</AdminOnly>
            </Route>
          ))}
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
