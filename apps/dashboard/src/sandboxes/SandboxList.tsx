import { useQuery } from '@tanstack/react-query';
import { useState } from 'react';
import { Link } from 'wouter';
import { api, unwrap } from '../api/client.js';
import { age, Empty, ErrorState, Loading, StatusBadge } from '../ui/states.js';
import { NewSandboxDialog } from './NewSandboxDialog.js';

/** How often the list refreshes itself (live updates without a socket per page). */
const REFRESH_MS = 3000;

export function SandboxList() {
  const [filter, setFilter] = useState('');
  const metadata = /^[^:]+:.*$/.test(filter.trim()) ? filter.trim() : undefined;
  const sandboxes = useQuery({
    queryKey: ['sandboxes', metadata],
    queryFn: () => unwrap(api.GET('/v1/sandboxes', { params: { query: metadata ? { metadata } : {} } })),
    refetchInterval: REFRESH_MS,
  });

  return (
    <>
      <header className="page-head">
        <h1>Sandboxes</h1>
        <NewSandboxDialog />
      </header>
      <div className="toolbar">
        <label className="field field-inline">
          <span>Metadata filter</span>
          <input
            type="search"
            placeholder="key:value"
            value={filter}
            onChange={(e) => setFilter(e.target.value)}
            aria-describedby="filter-hint"
          />
        </label>
        <span id="filter-hint" className="muted">
          {filter && !metadata ? 'Write it as key:value' : ' '}
        </span>
      </div>
      {sandboxes.isPending ? (
        <Loading what="sandboxes" />
      ) : sandboxes.error ? (
        <ErrorState error={sandboxes.error} retry={() => void sandboxes.refetch()} />
      ) : sandboxes.data.sandboxes.length === 0 ? (
        <Empty title={metadata ? 'No sandbox has that metadata.' : 'No sandboxes yet.'}>
          {!metadata && <p className="muted">“New sandbox” starts one from a template.</p>}
        </Empty>
      ) : (
        <div className="table-wrap">
          <table className="table">
            <thead>
              <tr>
                <th scope="col">Sandbox</th>
                <th scope="col">Status</th>
                <th scope="col">Template</th>
                <th scope="col">Host</th>
                <th scope="col">Age</th>
              </tr>
            </thead>
            <tbody>
              {sandboxes.data.sandboxes.map((s) => (
                <tr key={s.id}>
                  <td>
                    <Link href={`/sandboxes/${s.id}`} className="mono">
                      {s.id}
                    </Link>
                  </td>
                  <td>
                    <StatusBadge status={s.status} />
                  </td>
                  <td>{s.template}</td>
                  <td className="mono muted">{s.host_id?.slice(0, 8) ?? '—'}</td>
                  <td>{age(s.created_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}
