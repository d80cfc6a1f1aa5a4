import * as Tabs from '@radix-ui/react-tabs';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { lazy, Suspense, useState } from 'react';
import { Link, useLocation } from 'wouter';
import { api, unwrap } from '../api/client.js';
import { age, ErrorState, Loading, StatusBadge } from '../ui/states.js';
import { SnapshotDialog, TimeoutDialog } from './SandboxActions.js';
import { DangerButton } from '../ui/DangerButton.js';

// Each tab's code is loaded when it is first opened (xterm.js and uPlot are most of their weight).
const TerminalTab = lazy(() => import('./TerminalTab.js'));
const MetricsTab = lazy(() => import('./MetricsTab.js'));
const FilesTab = lazy(() => import('./FilesTab.js'));

/** One sandbox: what it is, its metrics, files and a terminal; pause, resume, snapshot, timeout, kill. */
export function SandboxPage({ id }: { id: string }) {
  const queries = useQueryClient();
  const [, navigate] = useLocation();
  const path = { params: { path: { id } } };
  const sandbox = useQuery({
    queryKey: ['sandbox', id],
    queryFn: () => unwrap(api.GET('/v1/sandboxes/{id}', path)),
    refetchInterval: 3000,
  });
  const [snapshotMade, setSnapshotMade] = useState<{ id: string; name: string }>();
  const refresh = () => queries.invalidateQueries({ queryKey: ['sandbox', id] });
  const pause = useMutation({
    mutationFn: () => unwrap(api.POST('/v1/sandboxes/{id}/pause', path)),
    onSuccess: refresh,
  });
  const resume = useMutation({
    mutationFn: () => unwrap(api.POST('/v1/sandboxes/{id}/resume', path)),
    onSuccess: refresh,
  });
  const kill = useMutation({
    mutationFn: () => unwrap(api.DELETE('/v1/sandboxes/{id}', path)),
    onSuccess: async () => {
      await queries.invalidateQueries({ queryKey: ['sandboxes'] });
      navigate('/sandboxes');
    },
  });
  const busy = pause.isPending || resume.isPending || kill.isPending;
  const failed = pause.error ?? resume.error ?? kill.error;

  if (sandbox.isPending) return <Loading what="the sandbox" />;
  if (sandbox.error) return <ErrorState error={sandbox.error} retry={() => void sandbox.refetch()} />;
  const s = sandbox.data;
  return (
    <>
      <nav aria-label="Breadcrumb" className="muted">
        <Link href="/sandboxes">Sandboxes</Link> / <span className="mono">{s.id}</span>
      </nav>
      <header className="page-head">
        <h1 className="mono">{s.id}</h1>
        <StatusBadge status={s.status} />
        <div className="actions">
          {s.status === 'running' && (
            <button type="button" className="button" disabled={busy} onClick={() => pause.mutate()}>
              {pause.isPending ? 'Pausing…' : 'Pause'}
            </button>
          )}
          {s.status === 'paused' && (
            <button type="button" className="button" disabled={busy} onClick={() => resume.mutate()}>
              {resume.isPending ? 'Resuming…' : 'Resume'}
            </button>
          )}
          <SnapshotDialog
            sandboxId={s.id}
            disabled={busy || (s.status !== 'running' && s.status !== 'paused')}
            onMade={(made) => setSnapshotMade(made)}
          />
          <TimeoutDialog sandboxId={s.id} current={s.timeout_sec} disabled={busy} />
          <DangerButton disabled={busy} onClick={() => kill.mutate()}>
            {kill.isPending ? 'Killing…' : 'Kill'}
          </DangerButton>
        </div>
      </header>
      {failed && <ErrorState error={failed} />}
      {snapshotMade && (
        <p role="status" className="notice">
          Snapshot “{snapshotMade.name}” created: <span className="mono">{snapshotMade.id}</span>. New
          sandboxes can start from it by that name.
        </p>
      )}
      <Tabs.Root defaultValue="overview" className="tabs">
        <Tabs.List aria-label="Sandbox" className="tab-list">
          <Tabs.Trigger value="overview" className="tab">
            Overview
          </Tabs.Trigger>
          <Tabs.Trigger value="metrics" className="tab">
            Metrics
          </Tabs.Trigger>
          <Tabs.Trigger value="files" className="tab" disabled={s.status !== 'running'}>
            Files
          </Tabs.Trigger>
          <Tabs.Trigger value="terminal" className="tab" disabled={s.status !== 'running'}>
            Terminal
          </Tabs.Trigger>
        </Tabs.List>
        <Tabs.Content value="overview">
          <section aria-label="Overview" className="card">
            <dl className="facts">
              <dt>Template</dt>
              <dd>{s.template}</dd>
              <dt>Resources</dt>
              <dd>
                {s.vcpus} vCPU · {s.memory_mb} MiB memory · {s.disk_mb} MiB disk
              </dd>
              <dt>Timeout</dt>
              <dd>{s.timeout_sec} s</dd>
              <dt>Host</dt>
              <dd className="mono">{s.host_id ?? '—'}</dd>
              <dt>Created</dt>
              <dd>
                <time dateTime={s.created_at}>{age(s.created_at)} ago</time>
              </dd>
              {s.status_reason && (
                <>
                  <dt>Why</dt>
                  <dd>{s.status_reason}</dd>
                </>
              )}
              <dt>Metadata</dt>
              <dd>
                {Object.keys(s.metadata).length === 0
                  ? '—'
                  : Object.entries(s.metadata).map(([k, v]) => (
                      <code key={k} className="tag">
                        {k}={v}
                      </code>
                    ))}
              </dd>
            </dl>
          </section>
        </Tabs.Content>
        <Tabs.Content value="metrics" className="card">
          <Suspense fallback={<Loading what="the metrics" />}>
            <MetricsTab sandboxId={s.id} />
          </Suspense>
        </Tabs.Content>
        <Tabs.Content value="files" className="card">
          {s.status === 'running' && (
            <Suspense fallback={<Loading what="the files" />}>
              <FilesTab sandboxId={s.id} />
            </Suspense>
          )}
        </Tabs.Content>
        <Tabs.Content value="terminal" className="card">
          {s.status === 'running' && (
            <Suspense fallback={<Loading what="the terminal" />}>
              <TerminalTab sandboxId={s.id} />
            </Suspense>
          )}
        </Tabs.Content>
      </Tabs.Root>
    </>
  );
}
