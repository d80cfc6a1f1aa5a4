import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { api, unwrap, type Schemas } from '../api/client.js';
import { FormDialog } from '../ui/FormDialog.js';
import './sandbox.css';

/** A snapshot's default name: the sandbox and the minute (template names: lowercase, digits, - and _). */
const defaultName = (sandboxId: string) =>
  `${sandboxId}-${new Date().toISOString().slice(0, 16).replace(/[-:T]/g, '')}`.slice(0, 63);

/** "Snapshot": freezes the sandbox into a named snapshot template; says what it made. */
export function SnapshotDialog({
  sandboxId,
  disabled,
  onMade,
}: {
  sandboxId: string;
  disabled: boolean;
  onMade: (snapshot: Schemas['Snapshot']) => void;
}) {
  const [name, setName] = useState('');
  const queries = useQueryClient();
  const snapshot = useMutation({
    mutationFn: () => unwrap(api.POST('/v1/snapshots', { body: { sandbox_id: sandboxId, name } })),
    onSuccess: async (made) => {
      onMade(made);
      await queries.invalidateQueries({ queryKey: ['templates'] });
    },
  });
  return (
    <FormDialog
      trigger="Snapshot"
      title="Snapshot the sandbox"
      description="Saves its memory, processes and disk as a template new sandboxes can start from. A running sandbox is paused for the copy and resumed."
      disabled={disabled}
      busy={snapshot.isPending}
      busyLabel="Snapshotting…"
      submitLabel="Create snapshot"
      error={snapshot.error}
      onOpen={() => {
        setName(defaultName(sandboxId));
        snapshot.reset();
      }}
      submit={() => snapshot.mutateAsync()}
    >
      <label className="field">
        <span>Snapshot name</span>
        <input
          required
          maxLength={63}
          pattern="[a-z0-9][a-z0-9_\-]*"
          title="Lowercase letters, digits, - or _"
          value={name}
          onChange={(e) => setName(e.target.value)}
        />
      </label>
    </FormDialog>
  );
}

/** "Timeout": the sandbox's inactivity timeout in seconds (0: never). */
export function TimeoutDialog({
  sandboxId,
  current,
  disabled,
}: {
  sandboxId: string;
  current: number;
  disabled: boolean;
}) {
  const [seconds, setSeconds] = useState(current);
  const queries = useQueryClient();
  const set = useMutation({
    mutationFn: () =>
      unwrap(
        api.PUT('/v1/sandboxes/{id}/timeout', {
          params: { path: { id: sandboxId } },
          body: { timeout_sec: seconds },
        }),
      ),
    onSuccess: () => queries.invalidateQueries({ queryKey: ['sandbox', sandboxId] }),
  });
  return (
    <FormDialog
      trigger="Timeout"
      title="Set the timeout"
      description="After this many seconds without activity the sandbox pauses or stops; 0 means never."
      disabled={disabled}
      busy={set.isPending}
      busyLabel="Saving…"
      submitLabel="Save"
      error={set.error}
      onOpen={() => {
        setSeconds(current);
        set.reset();
      }}
      submit={() => set.mutateAsync()}
    >
      <label className="field">
        <span>Timeout (seconds)</span>
        <input
          type="number"
          min={0}
          max={2_592_000}
          step={1}
          required
          value={seconds}
          onChange={(e) => setSeconds(Number(e.target.value))}
        />
      </label>
    </FormDialog>
  );
}
