import type { ReactNode } from 'react';
import type { Schemas } from '../api/client.js';
import { age } from '../ui/states.js';
import '../ui/pages.css';
import { TableHead } from '../ui/TableHead.js';

type Host = Schemas['Host'] & { team_name?: string | null };

const DOT: Record<string, string> = {
  online: 'dot dot-online',
  pending: 'dot dot-busy',
  unreachable: 'dot dot-bad',
};

/** A host's status: a pulsing dot while it is online (still when motion is reduced). */
export function HostStatus({ status, draining }: { status: string; draining?: boolean }) {
  return (
    <span>
      <span className={DOT[status] ?? 'dot'} aria-hidden="true" />
      {status}
      {draining ? ', draining' : ''}
    </span>
  );
}

/** Hosts with status, address, capacity, load and sandboxes; `actions` adds a cell per host. */
export function HostTable({
  hosts,
  label,
  showTeam = false,
  actions,
}: {
  hosts: Host[];
  label: string;
  showTeam?: boolean;
  actions?: (host: Host) => ReactNode;
}) {
  return (
    <div className="table-wrap">
      <table className="table" aria-label={label}>
        <TableHead
          columns={[
            'Host',
            'Status',
            showTeam && 'Team',
            'Address',
            'Capacity',
            'Load',
            'Sandboxes',
            'Last heartbeat',
          ]}
          actions={actions !== undefined}
        />
        <tbody>
          {hosts.map((h) => (
            <tr key={h.id} aria-label={`Host ${h.id}`}>
              <td className="mono">{h.id.slice(0, 8)}</td>
              <td>
                <HostStatus status={h.status} draining={h.draining} />
              </td>
              {showTeam && <td>{h.team_name ?? '—'}</td>}
              <td className="mono">{h.address ?? '—'}</td>
              <td>
                {h.capacity
                  ? `${h.capacity.cpu_cores} cores, ${Math.round(h.capacity.memory_mb / 1024)} GB`
                  : '—'}
              </td>
              <td>
                {h.load
                  ? `${Math.round(h.load.cpu_pct)} % CPU, ${Math.round(h.load.memory_used_mb)} MB`
                  : '—'}
              </td>
              <td>
                {h.running_count} running, {h.paused_count} paused
              </td>
              <td>{h.last_heartbeat_at ? `${age(h.last_heartbeat_at)} ago` : 'never'}</td>
              {actions && (
                <td>
                  <span className="actions">{actions(h)}</span>
                </td>
              )}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}
