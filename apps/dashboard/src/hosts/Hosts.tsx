import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { api, unwrap } from '../api/client.js';
import { useCurrentTeam } from '../api/me.js';
import { CopyButton } from '../ui/CopyButton.js';
import { Empty, ErrorState, Loading, QueryView } from '../ui/states.js';
import { HostTable } from './HostTable.js';
import { DangerButton } from '../ui/DangerButton.js';

const REFRESH_MS = 3000;

/** The command that registers a host with `token` (docs/fleet.md, "Add a host in two commands"). */
export function registerCommand(token: string): string {
  return [
    `WRENN_CONTROL_PLANE_URL=${window.location.origin} WRENN_REGISTRATION_TOKEN=${token} \\`,
    '  WRENN_AGENT_LISTEN=0.0.0.0:7070 WRENN_ADVERTISE_ADDRESS=<this host’s address>:7070 \\',
    '  node apps/cli/bin/wrenn.js agent',
  ].join('\n');
}

/** A registration token, shown once, with its command (both copyable). */
export function RegistrationToken({ token, onDone }: { token: string; onDone: () => void }) {
  const command = registerCommand(token);
  return (
    <section className="card reveal" aria-labelledby="new-host">
      <h2 id="new-host">Register the new host</h2>
      <p className="muted">
        Shown this once: it works once, for an hour. On the new host, as root, after{' '}
        <code>bash scripts/setup.sh</code> in a checkout of Wrenn, run:
      </p>
      <div className="toolbar">
        <code className="mono secret" aria-label="Registration token">
          {token}
        </code>
        <CopyButton text={token} label="Copy the token" />
      </div>
      <pre className="log-lines mono" aria-label="Command to run on the host">
        {command}
      </pre>
      <div className="toolbar">
        <CopyButton text={command} label="Copy the command" />
        <button type="button" className="link" onClick={onDone}>
          Done
        </button>
      </div>
    </section>
  );
}

/** A BYOC team's own hosts: status (refreshed), "Register host" (token shown once), delete. */
export function Hosts() {
  const { me, team } = useCurrentTeam();
  const teamId = team?.id ?? '';
  const isOwner = team?.role === 'owner' || Boolean(me.data?.is_admin);
  const queries = useQueryClient();
  const [token, setToken] = useState<string>();
  const hosts = useQuery({
    queryKey: ['hosts', teamId],
    queryFn: async () =>
      (await unwrap(api.GET('/v1/hosts', { params: { query: { team_id: teamId } } }))).hosts,
    enabled: Boolean(teamId),
    refetchInterval: REFRESH_MS,
  });
  const register = useMutation({
    mutationFn: () => unwrap(api.POST('/v1/hosts', { body: { team_id: teamId } })),
    onSuccess: async (made) => {
      setToken(made.registration_token);
      await queries.invalidateQueries({ queryKey: ['hosts', teamId] });
    },
  });
  const remove = useMutation({
    mutationFn: (id: string) => unwrap(api.DELETE('/v1/hosts/{id}', { params: { path: { id }, query: {} } })),
    onSuccess: () => queries.invalidateQueries({ queryKey: ['hosts', teamId] }),
  });

  if (me.isPending) return <Loading what="the team" />;
  if (!team?.is_byoc)
    return (
      <Empty title="This team runs on the platform’s hosts.">
        <p className="muted">An administrator can let a team bring its own hosts.</p>
      </Empty>
    );
  return (
    <>
      <header className="page-head">
        <h1>Hosts</h1>
        {isOwner && (
          <button
            type="button"
            className="button button-primary"
            disabled={register.isPending}
            onClick={() => register.mutate()}
          >
            {register.isPending ? 'Registering…' : 'Register host'}
          </button>
        )}
      </header>
      {register.error && <ErrorState error={register.error} />}
      {token && <RegistrationToken token={token} onDone={() => setToken(undefined)} />}
      {remove.error && <ErrorState error={remove.error} />}
      <QueryView
        query={hosts}
        what="hosts"
        empty={
          <Empty title="No hosts yet.">
            <p className="muted">“Register host” gives the token a new host registers with.</p>
          </Empty>
        }
      >
        {(data) => (
          <HostTable
            hosts={data}
            label="Hosts"
            actions={
              isOwner
                ? (h) => (
                    <DangerButton
                      label={`Delete host ${h.id.slice(0, 8)}`}
                      disabled={remove.isPending}
                      onClick={() => remove.mutate(h.id)}
                    >
                      Delete
                    </DangerButton>
                  )
                : undefined
            }
          />
        )}
      </QueryView>
    </>
  );
}
