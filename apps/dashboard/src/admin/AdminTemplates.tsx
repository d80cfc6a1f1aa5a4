import { useQuery } from '@tanstack/react-query';
import { api, unwrap } from '../api/client.js';
import { size } from '../templates/Templates.js';
import { age, Empty, QueryView } from '../ui/states.js';
import { TableHead } from '../ui/TableHead.js';

/** Every template: the platform's (what every team sees) and every team's. */
export function AdminTemplates() {
  const templates = useQuery({
    queryKey: ['admin-templates'],
    queryFn: async () => (await unwrap(api.GET('/v1/admin/templates'))).templates,
  });
  return (
    <>
      <header className="page-head">
        <h1>Templates</h1>
      </header>
      <QueryView
        query={templates}
        what="templates"
        empty={
          <Empty title="No templates recorded yet.">
            <p className="muted">Platform builds and teams’ snapshots and builds make them.</p>
          </Empty>
        }
      >
        {(data) => (
          <div className="table-wrap">
            <table className="table" aria-label="Templates">
              <TableHead columns={['Name', 'Owner', 'Kind', 'Resources', 'Size', 'Created']} />
              <tbody>
                {data.map((t) => (
                  <tr key={t.id}>
                    <td>{t.name}</td>
                    <td className={t.team_id ? 'mono muted' : undefined}>
                      {t.team_id ? `team ${t.team_id.slice(0, 8)}` : 'platform'}
                    </td>
                    <td>{t.kind}</td>
                    <td>
                      {t.vcpus} vCPU, {t.memory_mb} MB, {t.disk_mb} MB disk
                    </td>
                    <td>{size(t.size_bytes)}</td>
                    <td>{age(t.created_at)} ago</td>
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
