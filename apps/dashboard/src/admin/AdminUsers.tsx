import { useInfiniteQuery } from '@tanstack/react-query';
import { api, unwrap } from '../api/client.js';
import { age, Empty, NextPageButton, QueryView } from '../ui/states.js';
import { TableHead } from '../ui/TableHead.js';

const PAGE = 100;

/** Every user, by email, a page at a time. */
export function AdminUsers() {
  const users = useInfiniteQuery({
    queryKey: ['admin-users'],
    initialPageParam: undefined as string | undefined,
    queryFn: ({ pageParam }) =>
      unwrap(
        api.GET('/v1/admin/users', {
          params: { query: { limit: PAGE, ...(pageParam ? { after: pageParam } : {}) } },
        }),
      ),
    getNextPageParam: (last) => last.next_after ?? undefined,
  });
  const rows = users.data?.pages.flatMap((p) => p.users) ?? [];
  return (
    <>
      <header className="page-head">
        <h1>Users</h1>
      </header>
      <QueryView
        query={users}
        what="users"
        empty={<Empty title="No users." />}
        isEmpty={() => rows.length === 0}
      >
        {() => (
          <>
            <div className="table-wrap">
              <table className="table" aria-label="Users">
                <TableHead columns={['Email', 'Administrator', 'Teams', 'Signed up']} />
                <tbody>
                  {rows.map((u) => (
                    <tr key={u.id}>
                      <td>{u.email}</td>
                      <td>{u.is_admin ? 'yes' : 'no'}</td>
                      <td>{u.team_count}</td>
                      <td>{age(u.created_at)} ago</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </div>
            <NextPageButton query={users}>More users</NextPageButton>
          </>
        )}
      </QueryView>
    </>
  );
}
