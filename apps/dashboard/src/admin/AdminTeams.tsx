import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { api, unwrap } from '../api/client.js';
import { age, Empty, ErrorState, QueryView } from '../ui/states.js';
import { TableHead } from '../ui/TableHead.js';

/** Every team with its counts, and the switch that makes it BYOC (its sandboxes only on its hosts). */
export function AdminTeams() {
  const queries = useQueryClient();
  const teams = useQuery({
    queryKey: ['admin-teams'],
    queryFn: async () => (await unwrap(api.GET('/v1/admin/teams'))).teams,
  });
  const byoc = useMutation({
    mutationFn: ({ id, on }: { id: string; on: boolean }) =>
      unwrap(api.PUT('/v1/admin/teams/{id}/byoc', { params: { path: { id } }, body: { is_byoc: on } })),
    onSettled: async () => {
      await queries.invalidateQueries({ queryKey: ['admin-teams'] });
      await queries.invalidateQueries({ queryKey: ['me'] });
    },
  });

  return (
    <>
      <header className="page-head">
        <h1>Teams</h1>
      </header>
      {byoc.error && <ErrorState error={byoc.error} />}
      <QueryView query={teams} what="teams" empty={<Empty title="No teams." />}>
        {(data) => (
          <div className="table-wrap">
            <table className="table" aria-label="Teams">
              <TableHead columns={['Team', 'Members', 'Sandboxes', 'Created', 'Brings its own hosts']} />
              <tbody>
                {data.map((t) => (
                  <tr key={t.id}>
                    <td>{t.name}</td>
                    <td>{t.member_count}</td>
                    <td>{t.sandbox_count}</td>
                    <td>{age(t.created_at)} ago</td>
                    <td>
                      <button
                        type="button"
                        role="switch"
                        className="switch"
                        aria-checked={t.is_byoc}
                        aria-label={`BYOC: ${t.name}`}
                        disabled={byoc.isPending}
                        onClick={() => byoc.mutate({ id: t.id, on: !t.is_byoc })}
                      >
                        <span className="switch-track" aria-hidden="true" />
                        {t.is_byoc ? 'BYOC' : 'platform'}
                      </button>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </QueryView>
    </>
  );
}
