import { useQuery } from '@tanstack/react-query';
import { useEffect, type ReactNode } from 'react';
import { Link, useRoute } from 'wouter';
import { api, unwrap } from '../api/client.js';
import { setSession, useSession } from '../api/session.js';
import { Empty, ErrorState, Loading } from '../ui/states.js';

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

/** The signed-in frame: the sidebar (team, sections, sign out) and the page. */
export function Shell({ children }: { children: ReactNode }) {
  const session = useSession();
  const teams = useQuery({
    queryKey: ['teams'],
    queryFn: async () => (await unwrap(api.GET('/v1/teams'))).teams,
  });
  // A session from before a team was chosen acts for the first team the user is in.
  useEffect(() => {
    const first = teams.data?.[0];
    if (session && !session.teamId && first) setSession({ ...session, teamId: first.id });
  }, [session, teams.data]);
  const team = teams.data?.find((t) => t.id === session?.teamId);

  return (
    <div className="shell">
      <aside className="sidebar" aria-label="Sidebar">
        <div className="brand">
          <span className="logo" aria-hidden="true">
            ◆
          </span>{' '}
          Wrenn
        </div>
        {teams.data && teams.data.length > 1 ? (
          <label className="field field-compact">
            <span>Team</span>
            <select
              value={session?.teamId ?? ''}
              onChange={(e) => session && setSession({ ...session, teamId: e.target.value })}
            >
              {teams.data.map((t) => (
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
          <NavItem href="/keys">API keys</NavItem>
        </nav>
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
        {session?.teamId ? (
          children
        ) : teams.error ? (
          <ErrorState error={teams.error} retry={() => void teams.refetch()} />
        ) : teams.data?.length === 0 ? (
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
