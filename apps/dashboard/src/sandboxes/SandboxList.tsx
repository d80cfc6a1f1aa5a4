import { useQuery } from '@tanstack/react-query';
import { useVirtualizer } from '@tanstack/react-virtual';
import { useRef, useState } from 'react';
import { Link } from 'wouter';
import { api, unwrap, type Schemas } from '../api/client.js';
import { age, Empty, StatusBadge, QueryView } from '../ui/states.js';
import { NewSandboxDialog } from './NewSandboxDialog.js';
import './sandbox.css';

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
      <QueryView
        query={sandboxes}
        what="sandboxes"
        empty={
          <Empty title={metadata ? 'No sandbox has that metadata.' : 'No sandboxes yet.'}>
            {!metadata && <p className="muted">“New sandbox” starts one from a template.</p>}
          </Empty>
        }
        isEmpty={(data) => data.sandboxes.length === 0}
      >
        {(data) => <SandboxTable sandboxes={data.sandboxes} />}
      </QueryView>
    </>
  );
}

/** A row's height before it is measured (one line of text and a badge). */
const ROW_HEIGHT = 41;

/**
 * The rows in a scrolling box, only those near the view in the DOM (a team may have thousands). It
 * stays a table: rows and cells keep their roles, `aria-rowcount`/`aria-rowindex` say where a row
 * is, and spacer rows (hidden from assistive technology) keep the scroll height. Tabbing onto a
 * row past the window scrolls it into view, which brings the next rows in.
 */
function SandboxTable({ sandboxes }: { sandboxes: Schemas['Sandbox'][] }) {
  const box = useRef<HTMLDivElement>(null);
  const rows = useVirtualizer({
    count: sandboxes.length,
    getScrollElement: () => box.current,
    estimateSize: () => ROW_HEIGHT,
    overscan: 8,
    getItemKey: (i) => sandboxes[i]!.id,
  });
  const items = rows.getVirtualItems();
  const before = items[0]?.start ?? 0;
  const after = rows.getTotalSize() - (items.at(-1)?.end ?? 0);
  return (
    <>
      <div ref={box} className="table-wrap virtual-table-wrap" data-testid="sandbox-table">
        <table className="table" aria-rowcount={sandboxes.length + 1}>
          <thead>
            <tr aria-rowindex={1}>
              <th scope="col">Sandbox</th>
              <th scope="col">Status</th>
              <th scope="col">Template</th>
              <th scope="col">Host</th>
              <th scope="col">Age</th>
            </tr>
          </thead>
          <tbody>
            {before > 0 && (
              <tr className="spacer" aria-hidden="true" style={{ height: before }}>
                <td colSpan={5} />
              </tr>
            )}
            {items.map((item) => {
              const s = sandboxes[item.index]!;
              return (
                <tr
                  key={item.key}
                  data-index={item.index}
                  ref={rows.measureElement}
                  aria-rowindex={item.index + 2}
                >
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
              );
            })}
            {after > 0 && (
              <tr className="spacer" aria-hidden="true" style={{ height: after }}>
                <td colSpan={5} />
              </tr>
            )}
          </tbody>
        </table>
      </div>
      <p className="muted list-count">
        {sandboxes.length} {sandboxes.length === 1 ? 'sandbox' : 'sandboxes'}
      </p>
    </>
  );
}
