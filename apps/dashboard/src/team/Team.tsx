import { useInfiniteQuery, useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useState, type FormEvent } from 'react';
import { api, unwrap } from '../api/client.js';
import { useCurrentTeam } from '../api/me.js';
import { AuditLog } from '../ui/AuditTable.js';
import { Empty, ErrorState, Loading, QueryView } from '../ui/states.js';
import '../ui/pages.css';
import { TableHead } from '../ui/TableHead.js';
import { DangerButton } from '../ui/DangerButton.js';

type Role = 'owner' | 'member';

/** The team's members and roles (owners add, remove and change them) and, for owners, its audit log. */
export function Team() {
  const { me, team } = useCurrentTeam();
  const teamId = team?.id ?? '';
  const path = { params: { path: { teamId } } };
  const canManage = team?.role === 'owner' || Boolean(me.data?.is_admin);
  const queries = useQueryClient();
  const [email, setEmail] = useState('');
  const members = useQuery({
    queryKey: ['members', teamId],
    queryFn: async () => (await unwrap(api.GET('/v1/teams/{teamId}/members', path))).members,
    enabled: Boolean(teamId),
  });
  const refresh = async () => {
    await queries.invalidateQueries({ queryKey: ['members', teamId] });
    await queries.invalidateQueries({ queryKey: ['team-audit', teamId] });
  };
  const add = useMutation({
    mutationFn: () => unwrap(api.POST('/v1/teams/{teamId}/members', { ...path, body: { email } })),
    onSuccess: async () => {
      setEmail('');
      await refresh();
    },
  });
  const member = (userId: string) => ({ params: { path: { teamId, userId } } });
  const setRole = useMutation({
    mutationFn: ({ userId, role }: { userId: string; role: Role }) =>
      unwrap(api.PATCH('/v1/teams/{teamId}/members/{userId}', { ...member(userId), body: { role } })),
    onSuccess: refresh,
  });
  const remove = useMutation({
    mutationFn: (userId: string) => unwrap(api.DELETE('/v1/teams/{teamId}/members/{userId}', member(userId))),
    onSuccess: refresh,
  });

  function submit(event: FormEvent) {
    event.preventDefault();
    add.mutate();
  }

  if (me.isPending) return <Loading what="the team" />;
  if (me.error) return <ErrorState error={me.error} retry={() => void me.refetch()} />;
  if (!team) return <Empty title="This team is not one of yours." />;
  return (
    <>
      <header className="page-head">
        <h1>Team</h1>
        <span className="muted">
          {team.name} · you are {team.role}
          {team.is_byoc ? ' · brings its own hosts' : ''}
        </span>
      </header>
      {canManage && (
        <form className="toolbar" onSubmit={submit}>
          <label className="field field-inline">
            <span>Member email</span>
            <input type="email" required value={email} onChange={(e) => setEmail(e.target.value)} />
          </label>
          <button type="submit" className="button button-primary" disabled={add.isPending}>
            {add.isPending ? 'Adding…' : 'Add member'}
          </button>
        </form>
      )}
      {[add.error, setRole.error, remove.error].map(
        (error, i) => error && <ErrorState key={i} error={error} />,
      )}
      <QueryView query={members} what="members">
        {(data) => (
          <div className="table-wrap">
            <table className="table" aria-label="Members">
              <TableHead columns={['Email', 'Role']} actions={canManage} />
              <tbody>
                {data.map((m) => (
                  <tr key={m.user_id}>
                    <td>{m.email}</td>
                    <td>
                      {canManage ? (
                        <select
                          aria-label={`Role of ${m.email}`}
                          value={m.role}
                          disabled={setRole.isPending}
                          onChange={(e) =>
                            setRole.mutate({ userId: m.user_id, role: e.target.value as Role })
                          }
                        >
                          <option value="owner">owner</option>
                          <option value="member">member</option>
                        </select>
                      ) : (
                        m.role
                      )}
                    </td>
                    {canManage && (
                      <td>
                        <DangerButton
                          label={`Remove ${m.email}`}
                          disabled={remove.isPending}
                          onClick={() => remove.mutate(m.user_id)}
                        >
                          Remove
                        </DangerButton>
                      </td>
                    )}
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </QueryView>
      {canManage && <TeamAudit teamId={teamId} />}
    </>
  );
}

function TeamAudit({ teamId }: { teamId: string }) {
  const audit = useInfiniteQuery({
    queryKey: ['team-audit', teamId],
    initialPageParam: undefined as string | undefined,
    queryFn: ({ pageParam }) =>
      unwrap(
        api.GET('/v1/teams/{teamId}/audit', {
          params: { path: { teamId }, query: { limit: 50, ...(pageParam ? { before: pageParam } : {}) } },
        }),
      ),
    getNextPageParam: (last) => last.next_before ?? undefined,
  });
  return (
    <section aria-labelledby="team-audit">
      <h2 id="team-audit">Audit log</h2>
      <AuditLog audit={audit} />
    </section>
  );
}
