import { useInfiniteQuery } from '@tanstack/react-query';
import { api, unwrap } from '../api/client.js';
import { AuditLog } from '../ui/AuditTable.js';

/** Every team's audit log and the platform's own actions, newest first. */
export function AdminAudit() {
  const audit = useInfiniteQuery({
    queryKey: ['admin-audit'],
    initialPageParam: undefined as string | undefined,
    queryFn: ({ pageParam }) =>
      unwrap(
        api.GET('/v1/admin/audit', {
          params: { query: { limit: 100, ...(pageParam ? { before: pageParam } : {}) } },
        }),
      ),
    getNextPageParam: (last) => last.next_before ?? undefined,
  });
  return (
    <>
      <header className="page-head">
        <h1>Audit log</h1>
      </header>
      <AuditLog audit={audit} showTeam />
    </>
  );
}
