import * as Dialog from '@radix-ui/react-dialog';
import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useState, type FormEvent } from 'react';
import { useLocation } from 'wouter';
import { api, unwrap } from '../api/client.js';
import { ErrorState } from '../ui/states.js';

/** "New sandbox": a template picker and the sandbox's timeout; opens the sandbox once it runs. */
export function NewSandboxDialog() {
  const [open, setOpen] = useState(false);
  const [template, setTemplate] = useState('base');
  const [timeoutSec, setTimeoutSec] = useState(300);
  const [, navigate] = useLocation();
  const queries = useQueryClient();
  const templates = useQuery({
    queryKey: ['templates'],
    queryFn: async () => (await unwrap(api.GET('/v1/templates'))).templates,
    enabled: open,
  });
  const create = useMutation({
    mutationFn: () =>
      unwrap(
        api.POST('/v1/sandboxes', {
          body: { template, timeout_sec: timeoutSec, metadata: {}, env: {} },
        }),
      ),
    onSuccess: async (sandbox) => {
      await queries.invalidateQueries({ queryKey: ['sandboxes'] });
      setOpen(false);
      navigate(`/sandboxes/${sandbox.id}`);
    },
  });

  function submit(event: FormEvent) {
    event.preventDefault();
    create.mutate();
  }

  return (
    <Dialog.Root
      open={open}
      onOpenChange={(next) => {
        setOpen(next);
        if (!next) create.reset();
      }}
    >
      <Dialog.Trigger asChild>
        <button type="button" className="button button-primary">
          New sandbox
        </button>
      </Dialog.Trigger>
      <Dialog.Portal>
        <Dialog.Overlay className="overlay" />
        <Dialog.Content className="dialog">
          <Dialog.Title>New sandbox</Dialog.Title>
          <Dialog.Description className="muted">
            Starts a sandbox from a template; it pauses or stops after the timeout.
          </Dialog.Description>
          <form onSubmit={submit}>
            <label className="field">
              <span>Template</span>
              <select value={template} onChange={(e) => setTemplate(e.target.value)}>
                {(templates.data ?? [{ name: 'base', kind: 'image', platform: true, id: null }]).map((t) => (
                  <option key={`${t.name}:${t.id ?? ''}`} value={t.name}>
                    {t.name} ({t.kind}
                    {t.platform ? ', platform' : ''})
                  </option>
                ))}
              </select>
            </label>
            <label className="field">
              <span>Timeout (seconds)</span>
              <input
                type="number"
                min={1}
                max={86_400}
                required
                value={timeoutSec}
                onChange={(e) => setTimeoutSec(Number(e.target.value))}
              />
            </label>
            {create.error && <ErrorState error={create.error} />}
            <div className="dialog-actions">
              <Dialog.Close asChild>
                <button type="button" className="button">
                  Cancel
                </button>
              </Dialog.Close>
              <button type="submit" className="button button-primary" disabled={create.isPending}>
                {create.isPending ? 'Creating…' : 'Create'}
              </button>
            </div>
          </form>
        </Dialog.Content>
      </Dialog.Portal>
    </Dialog.Root>
  );
}
