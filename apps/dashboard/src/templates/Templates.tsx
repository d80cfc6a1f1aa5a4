import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { api, unwrap } from '../api/client.js';
import { useSession } from '../api/session.js';
import { age, Empty, ErrorState, QueryView } from '../ui/states.js';
import '../ui/pages.css';
import { TableHead } from '../ui/TableHead.js';
import { DangerButton } from '../ui/DangerButton.js';

/** Bytes as "12 MB". */
export function size(bytes: number): string {
  if (bytes < 1024 ** 2) return `${Math.round(bytes / 1024)} KB`;
  if (bytes < 1024 ** 3) return `${Math.round(bytes / 1024 ** 2)} MB`;
  return `${(bytes / 1024 ** 3).toFixed(1)} GB`;
}

/** The templates a sandbox can start from (the team's and the platform's) and the team's snapshots. */
export function Templates() {
  const teamId = useSession()?.teamId;
  const queries = useQueryClient();
  const templates = useQuery({
    queryKey: ['templates', teamId],
    queryFn: async () => (await unwrap(api.GET('/v1/templates'))).templates,
  });
  const snapshots = useQuery({
    queryKey: ['snapshots', teamId],
    queryFn: async () => (await unwrap(api.GET('/v1/snapshots'))).snapshots,
  });
  const remove = useMutation({
    mutationFn: (id: string) => unwrap(api.DELETE('/v1/snapshots/{id}', { params: { path: { id } } })),
    onSuccess: async () => {
      await queries.invalidateQueries({ queryKey: ['snapshots'] });
      await queries.invalidateQueries({ queryKey: ['templates'] });
    },
  });
  const own = templates.data?.filter((t) => !t.platform) ?? [];
  const platform = templates.data?.filter((t) => t.platform) ?? [];

  return (
    <>
      <header className="page-head">
        <h1>Templates</h1>
      </header>
      <QueryView query={templates} what="templates">
        {() => (
          <>
            <section aria-labelledby="team-templates">
              <h2 id="team-templates">The team’s templates</h2>
              {own.length === 0 ? (
                <Empty title="No templates of the team’s own yet.">
                  <p className="muted">Builds and snapshots make them.</p>
                </Empty>
              ) : (
                <TemplateTable rows={own} label="The team’s templates" />
              )}
            </section>
            <section aria-labelledby="platform-templates">
              <h2 id="platform-templates">Platform templates</h2>
              {platform.length === 0 ? (
                <Empty title="No platform templates." />
              ) : (
                <TemplateTable rows={platform} label="Platform templates" />
              )}
            </section>
          </>
        )}
      </QueryView>
      <section aria-labelledby="snapshots">
        <h2 id="snapshots">Snapshots</h2>
        {remove.error && <ErrorState error={remove.error} />}
        <QueryView
          query={snapshots}
          what="snapshots"
          empty={
            <Empty title="No snapshots yet.">
              <p className="muted">A snapshot keeps a sandbox’s memory, processes and disk.</p>
            </Empty>
          }
        >
          {(data) => (
            <div className="table-wrap">
              <table className="table" aria-label="Snapshots">
                <TableHead columns={['Name', 'From sandbox', 'Resources', 'Size', 'Created']} actions />
                <tbody>
                  {data.map((s) => (
                    <tr key={s.id}>
                      <td>{s.name}</td>
                      <td className="mono muted">{s.source_sandbox_id ?? '—'}</td>
                      <td>
                        {s.vcpus} vCPU, {s.memory_mb} MB, {s.disk_mb} MB disk
                      </td>
                      <td>{size(s.size_bytes)}</td>
                      <td>{age(s.created_at)} ago</td>
                      <td>
                        <DangerButton
                          label={`Delete snapshot ${s.name}`}
                          disabled={remove.isPending}
                          confirm={`Delete snapshot ${s.name} and its files?`}
                          onClick={() => remove.mutate(s.id)}
                        >
                          Delete
                        </DangerButton>
                      </td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
          )}
        </QueryView>
      </section>
    </>
  );
}

function TemplateTable({
  rows,
  label,
}: {
  rows: { name: string; kind: string; id: string | null }[];
  label: string;
}) {
  return (
    <div className="table-wrap">
      <table className="table" aria-label={label}>
        <TableHead columns={['Name', 'Kind']} />
        <tbody>
          {rows.map((t) => (
            <tr key={`${t.name}:${t.id ?? ''}`}>
              <td>{t.name}</td>
              <td>{t.kind}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
