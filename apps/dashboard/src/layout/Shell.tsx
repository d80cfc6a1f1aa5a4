import { useEffect, type ReactNode } from 'react';
import { Link, useLocation, useRoute } from 'wouter';
import { useMe } from '../api/me.js';
import { setSession, useSession } from '../api/session.js';
import { Empty, ErrorState, Loading } from '../ui/states.js';
import '../ui/pages.css';

function NavItem({ href, children }: { href: string; children: ReactNode }) {
  const [active] = useRoute(`${href}/*?`);
  return (
    <Link
      href={href}
      className={active ? 'nav-item nav-item-active' : 'nav-item'}
      aria-current={active ? 'page' : undefined}
    >
      {children}
    </Link>
  );
}

/**
 * The signed-in frame: the sidebar (team, sections, sign out) and the page. What it offers follows
 * `GET /v1/me`: Hosts for a BYOC team, the Admin section for administrators.
 */
export function Shell({ children }: { children: ReactNode }) {
  const session = useSession();
  const me = useMe();
  const [location] = useLocation();
  const teams = me.data?.teams;
  // A session from before a team was chosen acts for the first team the user is in.
  useEffect(() => {
    const first = teams?.[0];
    if (session && !session.teamId && first) setSession({ ...session, teamId: first.id });
  }, [session, teams]);
  const team = teams?.find((t) => t.id === session?.teamId);
  // The admin area acts for no team: an administrator reaches it even without one.
  const inAdmin = location === '/admin' || location.startsWith('/admin/');

  return (
    <div className="shell">
      <aside className="sidebar" aria-label="Sidebar">
        <div className="brand">
          <span className="logo" aria-hidden="true">
            ◆
          </span>{' '}
          Wrenn
        </div>
        {teams && teams.length > 1 ? (
          <label className="field field-compact">
            <span>Team</span>
            <select
              value={session?.teamId ?? ''}
              onChange={(e) => session && setSession({ ...session, teamId: e.target.value })}
            >
              {teams.map((t) => (
                <option key={t.id} value={t.id}>
                  {t.name}
                </option>
              ))}
            </select>
          </label>
        ) : (
          <p className="team-name">{team?.name ?? ' '}</p>
        )}
        <nav aria-label="Sections">
          <NavItem href="/sandboxes">Sandboxes</NavItem>
          <NavItem href="/templates">Templates</NavItem>
          <NavItem href="/builds">Builds</NavItem>
          {team?.is_byoc && <NavItem href="/hosts">Hosts</NavItem>}
          <NavItem href="/team">Team</NavItem>
          <NavItem href="/keys">API keys</NavItem>
        </nav>
        {me.data?.is_admin && (
          <nav aria-label="Admin">
            <NavItem href="/admin">Admin</NavItem>
            {inAdmin && (
              <>
                <NavItem href="/admin/hosts">All hosts</NavItem>
                <NavItem href="/admin/templates">All templates</NavItem>
                <NavItem href="/admin/builds">Platform builds</NavItem>
                <NavItem href="/admin/teams">Teams</NavItem>
                <NavItem href="/admin/users">Users</NavItem>
                <NavItem href="/admin/audit">Audit log</NavItem>
              </>
            )}
          </nav>
        )}
        <div className="sidebar-foot">
          <span className="muted" title={session?.email}>
            {session?.email}
          </span>
          <button type="button" className="link" onClick={() => setSession(undefined)}>
            Sign out
          </button>
        </div>
      </aside>
      <main className="page">
        {session?.teamId || (inAdmin && me.data?.is_admin) ? (
          children
        ) : me.error ? (
          <ErrorState error={me.error} retry={() => void me.refetch()} />
        ) : teams?.length === 0 ? (
          <Empty title="You are not in any team yet.">
            <p className="muted">An owner of a team can add you to it.</p>
          </Empty>
        ) : (
          <Loading what="your teams" />
        )}
      </main>
    </div>
  );
}
