import type { ReactNode } from 'react';
import { useMe } from '../api/me.js';
import { Empty, ErrorState, Loading } from '../ui/states.js';

/**
 * The admin area's pages render only for administrators; anyone else sees that there is no such page
 * (and the API would refuse them anyway: /v1/admin answers 403).
 */
export function AdminOnly({ children }: { children: ReactNode }) {
  const me = useMe();
  if (me.isPending) return <Loading what="your account" />;
  if (me.error) return <ErrorState error={me.error} retry={() => void me.refetch()} />;
  if (!me.data.is_admin)
    return (
      <Empty title="There is no such page.">
        <p className="muted">“Sandboxes” in the sidebar leads back.</p>
      </Empty>
    );
  return <>{children}</>;
}
