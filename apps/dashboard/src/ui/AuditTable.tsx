import type { InfiniteData, UseInfiniteQueryResult } from '@tanstack/react-query';
import type { Schemas } from '../api/client.js';
import { age, Empty, NextPageButton, QueryView } from './states.js';
import { TableHead } from './TableHead.js';

type Entry = Schemas['AuditEntry'];

/** Entries of the audit log, newest first (a team's or, for admins, every team's). */
export function AuditTable({ entries, showTeam = false }: { entries: Entry[]; showTeam?: boolean }) {
  if (entries.length === 0) return <Empty title="Nothing in the audit log yet." />;
  return (
    <div className="table-wrap">
      <table className="table">
        <TableHead columns={['When', 'Action', 'Result', 'Target', 'By', showTeam && 'Team', 'Address']} />
        <tbody>
          {entries.map((e) => (
            <tr key={e.id}>
              <td title={e.at}>{age(e.at)} ago</td>
              <td className="mono">{e.action}</td>
              <td>{e.result}</td>
              <td className="mono">{e.target ?? '—'}</td>
              <td className="mono muted">
                {e.actor_user_id
                  ? `user ${e.actor_user_id.slice(0, 8)}`
                  : e.actor_api_key_id
                    ? `key ${e.actor_api_key_id.slice(0, 8)}`
                    : 'system'}
              </td>
              {showTeam && <td className="mono muted">{e.team_id?.slice(0, 8) ?? 'platform'}</td>}
              <td className="mono muted">{e.ip ?? '—'}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** An audit log read a page at a time (an infinite query over an audit route): its states, its entries, "Older entries". */
export function AuditLog({
  audit,
  showTeam = false,
}: {
  audit: UseInfiniteQueryResult<InfiniteData<{ entries: Entry[] }>>;
  showTeam?: boolean;
}) {
  return (
    <QueryView query={audit} what="the audit log">
      {(data) => (
        <>
          <AuditTable entries={data.pages.flatMap((p) => p.entries)} showTeam={showTeam} />
          <NextPageButton query={audit}>Older entries</NextPageButton>
        </>
      )}
    </QueryView>
  );
}
