import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { Fragment, useEffect, useRef, useState } from 'react';
import { useSession } from '../api/session.js';
import { age, Empty, ErrorState, Loading, QueryView, StatusBadge } from '../ui/states.js';
import { buildApi, isRunning, type Build, type BuildLogEntry, type BuildScope } from './build-api.js';
import { NewBuildDialog } from './NewBuildDialog.js';
import '../ui/pages.css';
import { TableHead } from '../ui/TableHead.js';
import { DangerButton } from '../ui/DangerButton.js';

/** How often a running build (and the list, while any runs) is asked again. */
const REFRESH_MS = 3000;

/** Builds (a team's or the platform's): status, progress, a row opens its per-step log; cancel. */
export function Builds({ scope }: { scope: BuildScope }) {
  const teamId = useSession()?.teamId;
  const [openId, setOpenId] = useState<string>();
  const builds = useQuery({
    queryKey: ['builds', scope, scope === 'team' ? teamId : null],
    queryFn: () => buildApi.list(scope),
    refetchInterval: (query) => (query.state.data?.some(isRunning) ? REFRESH_MS : false),
  });

  return (
    <>
      <header className="page-head">
        <h1>{scope === 'team' ? 'Builds' : 'Platform builds'}</h1>
        <NewBuildDialog scope={scope} onCreated={(b) => setOpenId(b.id)} />
      </header>
      <QueryView
        query={builds}
        what="builds"
        empty={
          <Empty title="No builds yet.">
            <p className="muted">“New build” makes a template from a recipe.</p>
          </Empty>
        }
      >
        {(list) => (
          <div className="table-wrap">
            <table className="table" aria-label="Builds">
              <TableHead columns={['Template', 'Status', 'Progress', 'Kind', 'Started']} actions />
              <tbody>
                {list.map((b) => (
                  <BuildRow
                    key={b.id}
                    build={b}
                    scope={scope}
                    open={openId === b.id}
                    toggle={() => setOpenId(openId === b.id ? undefined : b.id)}
                  />
                ))}
              </tbody>
            </table>
          </div>
        )}
      </QueryView>
    </>
  );
}

function BuildRow({
  build,
  scope,
  open,
  toggle,
}: {
  build: Build;
  scope: BuildScope;
  open: boolean;
  toggle: () => void;
}) {
  const queries = useQueryClient();
  const name = build.template ?? build.template_id.slice(0, 8);
  const cancel = useMutation({
    mutationFn: () => buildApi.cancel(scope, build.id),
    onSuccess: () => queries.invalidateQueries({ queryKey: ['builds', scope] }),
  });
  const { steps, done } = build.progress;
  const detailId = `build-${build.id}`;
  return (
    <Fragment>
      <tr>
        <td>
          <button
            type="button"
            className="link"
            aria-expanded={open}
            aria-controls={detailId}
            aria-label={`Build of ${name}, ${build.status}: ${open ? 'hide' : 'show'} its log`}
            onClick={toggle}
          >
            {open ? '▾' : '▸'} {name}
          </button>
        </td>
        <td>
          <StatusBadge status={build.status} />
        </td>
        <td>
          <progress
            className="progress"
            max={Math.max(steps, 1)}
            value={build.status === 'ready' ? Math.max(steps, 1) : done}
            aria-label={`Progress of ${name}`}
          />
          <span className="progress-label">
            {done}/{steps}
            {build.progress.cached ? `, ${build.progress.cached} cached` : ''}
            {isRunning(build) && build.progress.current ? ` · ${build.progress.current}` : ''}
          </span>
        </td>
        <td>{build.kind}</td>
        <td>{age(build.started_at ?? build.created_at)} ago</td>
        <td>
          {isRunning(build) && (
            <DangerButton
              label={`Cancel the build of ${name}`}
              disabled={cancel.isPending}
              onClick={() => cancel.mutate()}
            >
              Cancel
            </DangerButton>
          )}
        </td>
      </tr>
      {open && (
        <tr className="build-detail" id={detailId}>
          <td colSpan={6}>
            {cancel.error && <ErrorState error={cancel.error} />}
            {build.reason && (
              <p className="form-error" role="alert">
                Step {build.reason.step} failed: {build.reason.message}
              </p>
            )}
            <BuildLog build={build} scope={scope} />
          </td>
        </tr>
      )}
    </Fragment>
  );
}

interface LogState {
  lines: BuildLogEntry[];
  next: number;
}

/** The build's log, grouped by step; new lines are asked for from where the last page ended. */
function BuildLog({ build, scope }: { build: Build; scope: BuildScope }) {
  const queries = useQueryClient();
  const key = ['build-logs', scope, build.id];
  const running = isRunning(build);
  const logs = useQuery({
    queryKey: key,
    queryFn: async (): Promise<LogState> => {
      const before = queries.getQueryData<LogState>(key) ?? { lines: [], next: 0 };
      const page = await buildApi.logs(scope, build.id, before.next);
      return { lines: [...before.lines, ...page.logs], next: page.next_offset };
    },
    refetchInterval: running ? REFRESH_MS : false,
  });
  // One more read when the build ends, for the lines written after the last poll.
  const wasRunning = useRef(running);
  const { refetch } = logs;
  useEffect(() => {
    if (wasRunning.current && !running) void refetch();
    wasRunning.current = running;
  }, [running, refetch]);

  if (logs.isPending) return <Loading what="the build's log" />;
  if (logs.error) return <ErrorState error={logs.error} retry={() => void logs.refetch()} />;
  if (logs.data.lines.length === 0)
    return <p className="muted">{running ? 'Waiting for the first lines…' : 'No log lines.'}</p>;
  const steps: { step: string; lines: BuildLogEntry[] }[] = [];
  for (const line of logs.data.lines) {
    const step = line.step ?? 'build';
    const last = steps.at(-1);
    if (last?.step === step) last.lines.push(line);
    else steps.push({ step, lines: [line] });
  }
  return (
    <div className="logs" aria-label={`Log of the build of ${build.template ?? build.id}`} role="region">
      {steps.map((s, i) => (
        <details key={`${s.step}-${i}`} className="log-step" open>
          <summary>{/^\d+$/.test(s.step) ? `Step ${s.step}` : s.step}</summary>
          <pre className="log-lines mono">
            {s.lines.map((l, j) => (
              <span
                key={j}
                className={l.level === 'error' ? 'log-error' : l.level === 'warn' ? 'log-warn' : undefined}
              >
                {l.message}
                {'\n'}
              </span>
            ))}
          </pre>
        </details>
      ))}
    </div>
  );
}
