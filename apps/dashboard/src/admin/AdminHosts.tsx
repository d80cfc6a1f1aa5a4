import * as Tabs from '@radix-ui/react-tabs';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { api, unwrap } from '../api/client.js';
import { RegistrationToken } from '../hosts/Hosts.js';
import { HostTable } from '../hosts/HostTable.js';
import { Empty, ErrorState, QueryView } from '../ui/states.js';
import { DangerButton } from '../ui/DangerButton.js';

const REFRESH_MS = 3000;

/** Every host, platform and BYOC in tabs; drain (and undo), add a platform host. */
export function AdminHosts() {
  const queries = useQueryClient();
  const [token, setToken] = useState<string>();
  const hosts = useQuery({
    queryKey: ['admin-hosts'],
    queryFn: async () => (await unwrap(api.GET('/v1/admin/hosts', { params: { query: {} } }))).hosts,
    refetchInterval: REFRESH_MS,
  });
  const refresh = () => queries.invalidateQueries({ queryKey: ['admin-hosts'] });
  const drain = useMutation({
    mutationFn: ({ id, on }: { id: string; on: boolean }) => {
      const params = { params: { path: { id } } };
      return on
        ? unwrap(api.POST('/v1/admin/hosts/{id}/drain', params))
        : unwrap(api.DELETE('/v1/admin/hosts/{id}/drain', params));
    },
    onSettled: refresh,
  });
  const remove = useMutation({
    mutationFn: (id: string) => unwrap(api.DELETE('/v1/hosts/{id}', { params: { path: { id }, query: {} } })),
    onSettled: refresh,
  });
  const add = useMutation({
    mutationFn: () => unwrap(api.POST('/v1/hosts', { body: {} })),
    onSuccess: async (made) => {
      setToken(made.registration_token);
      await refresh();
    },
  });

  const table = (kind: 'platform' | 'byoc') => {
    if (!hosts.data) return null;
    const rows = hosts.data.filter((h) => h.kind === kind);
    if (rows.length === 0)
      return <Empty title={kind === 'platform' ? 'No platform hosts.' : 'No BYOC hosts.'} />;
    return (
      <HostTable
        hosts={rows}
        label={kind === 'platform' ? 'Platform hosts' : 'BYOC hosts'}
        showTeam={kind === 'byoc'}
        actions={(h) =>
          h.is_static || h.status === 'deleted' ? null : (
            <>
              {h.status !== 'pending' && (
                <button
                  type="button"
                  className="button"
                  aria-label={`${h.draining ? 'Undrain' : 'Drain'} host ${h.id.slice(0, 8)}`}
                  disabled={drain.isPending}
                  onClick={() => drain.mutate({ id: h.id, on: !h.draining })}
                >
                  {h.draining ? 'Undrain' : 'Drain'}
                </button>
              )}
              <DangerButton
                label={`Delete host ${h.id.slice(0, 8)}`}
                disabled={remove.isPending}
                confirm={`Delete host ${h.id.slice(0, 8)}? Its sandboxes must be gone first.`}
                onClick={() => remove.mutate(h.id)}
              >
                Delete
              </DangerButton>
            </>
          )
        }
      />
    );
  };

  return (
    <>
      <header className="page-head">
        <h1>Hosts</h1>
        <button type="button" className="button" disabled={add.isPending} onClick={() => add.mutate()}>
          Add platform host
        </button>
      </header>
      {add.error && <ErrorState error={add.error} />}
      {token && <RegistrationToken token={token} onDone={() => setToken(undefined)} />}
      {drain.error && <ErrorState error={drain.error} />}
      {remove.error && <ErrorState error={remove.error} />}
      {drain.data && (
        <p role="status" className="muted">
          Drained: {drain.data.moved.length} sandbox(es) moved
          {drain.data.failed.length
            ? `; stayed: ${drain.data.failed.map((f) => `${f.sandbox_id} (${f.message})`).join(', ')}`
            : ''}
          .
        </p>
      )}
      <QueryView query={hosts} what="hosts">
        {() => (
          <Tabs.Root defaultValue="platform">
            <Tabs.List className="tab-list" aria-label="Kind of host">
              <Tabs.Trigger className="tab" value="platform">
                Platform
              </Tabs.Trigger>
              <Tabs.Trigger className="tab" value="byoc">
                BYOC
              </Tabs.Trigger>
            </Tabs.List>
            <Tabs.Content value="platform">{table('platform')}</Tabs.Content>
            <Tabs.Content value="byoc">{table('byoc')}</Tabs.Content>
          </Tabs.Root>
        )}
      </QueryView>
    </>
  );
}
