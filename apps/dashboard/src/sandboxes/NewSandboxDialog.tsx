import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { useLocation } from 'wouter';
import { api, unwrap } from '../api/client.js';
import { FormDialog } from '../ui/FormDialog.js';

/** "New sandbox": a template picker and the sandbox's timeout; opens the sandbox once it runs. */
export function NewSandboxDialog() {
  // The template list is asked for once the dialog has first been opened.
  const [opened, setOpened] = useState(false);
  const [template, setTemplate] = useState('base');
  const [timeoutSec, setTimeoutSec] = useState(300);
  const [, navigate] = useLocation();
  const queries = useQueryClient();
  const templates = useQuery({
    queryKey: ['templates'],
    queryFn: async () => (await unwrap(api.GET('/v1/templates'))).templates,
    enabled: opened,
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
      navigate(`/sandboxes/${sandbox.id}`);
    },
  });

  return (
    <FormDialog
      trigger="New sandbox"
      primary
      title="New sandbox"
      description="Starts a sandbox from a template; it pauses or stops after the timeout."
      busy={create.isPending}
      busyLabel="Creating…"
      submitLabel="Create"
      error={create.error}
      onOpen={() => {
        setOpened(true);
        create.reset();
      }}
      submit={() => create.mutateAsync()}
    >
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
    </FormDialog>
  );
}
