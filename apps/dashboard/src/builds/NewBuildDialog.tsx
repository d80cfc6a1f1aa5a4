import { useMutation, useQueryClient } from '@tanstack/react-query';
import { useState } from 'react';
import { FormDialog } from '../ui/FormDialog.js';
import { buildApi, type Build, type BuildScope } from './build-api.js';

const SIZE_DEFAULTS = { vcpus: 2, memory_mb: 1024, disk_mb: 4096 };

/**
 * "New build": a template name, its recipe (one instruction a line, as the builds API takes it:
 * `RUN`, `COPY`, `ENV`, `WORKDIR`, `USER`; a bare line is a RUN), a healthcheck, sizes and kind.
 */
export function NewBuildDialog({ scope, onCreated }: { scope: BuildScope; onCreated: (b: Build) => void }) {
  const [template, setTemplate] = useState('');
  const [from, setFrom] = useState('base');
  const [recipe, setRecipe] = useState('');
  const [healthcheck, setHealthcheck] = useState('');
  const [startCmd, setStartCmd] = useState('');
  const [kind, setKind] = useState<'snapshot' | 'image'>('snapshot');
  const [sizes, setSizes] = useState(SIZE_DEFAULTS);
  const queries = useQueryClient();
  const create = useMutation({
    mutationFn: () =>
      buildApi.create(scope, {
        template: template.trim(),
        from: from.trim() || 'base',
        recipe: recipe.split('\n').filter((line) => line.trim() !== ''),
        ...(healthcheck.trim() ? { healthcheck: healthcheck.trim() } : {}),
        ...(startCmd.trim() ? { start_cmd: startCmd.trim() } : {}),
        kind,
        ...sizes,
        skip_cache: false,
      }),
    onSuccess: async (build) => {
      await queries.invalidateQueries({ queryKey: ['builds', scope] });
      setRecipe('');
      onCreated(build);
    },
  });

  const sizeField = (key: keyof typeof SIZE_DEFAULTS, label: string, min: number, max: number) => (
    <label className="field">
      <span>{label}</span>
      <input
        type="number"
        min={min}
        max={max}
        required
        value={sizes[key]}
        onChange={(e) => setSizes({ ...sizes, [key]: Number(e.target.value) })}
      />
    </label>
  );

  return (
    <FormDialog
      trigger="New build"
      primary
      wide
      title="New build"
      description={`${scope === 'team' ? 'Builds one of the team’s templates' : 'Builds a platform template'} from a recipe; it is queued and its log shows here as it runs.`}
      busy={create.isPending}
      busyLabel="Queuing…"
      submitLabel="Build"
      error={create.error}
      onOpen={() => create.reset()}
      submit={() => create.mutateAsync()}
    >
      <label className="field">
        <span>Template name</span>
        <input required autoComplete="off" value={template} onChange={(e) => setTemplate(e.target.value)} />
      </label>
      <label className="field">
        <span>From template</span>
        <input value={from} onChange={(e) => setFrom(e.target.value)} />
      </label>
      <label className="field">
        <span>Recipe</span>
        <textarea
          className="mono"
          aria-describedby="recipe-hint"
          placeholder={'apt-get install -y jq\nENV STAGE=prod\nWORKDIR /opt/app'}
          value={recipe}
          onChange={(e) => setRecipe(e.target.value)}
        />
        <small id="recipe-hint" className="muted">
          One instruction a line: RUN, COPY, ENV, WORKDIR, USER; a line without one is a shell command (RUN).
        </small>
      </label>
      <label className="field">
        <span>Healthcheck</span>
        <input
          className="mono"
          placeholder="must exit 0 before the snapshot"
          value={healthcheck}
          onChange={(e) => setHealthcheck(e.target.value)}
        />
      </label>
      <label className="field">
        <span>Start command</span>
        <input
          className="mono"
          placeholder="left running in a snapshot"
          value={startCmd}
          onChange={(e) => setStartCmd(e.target.value)}
        />
      </label>
      <div className="field-row">
        {sizeField('vcpus', 'vCPUs', 1, 64)}
        {sizeField('memory_mb', 'Memory (MB)', 128, 262_144)}
        {sizeField('disk_mb', 'Disk (MB)', 256, 1_048_576)}
        <label className="field">
          <span>Kind</span>
          <select value={kind} onChange={(e) => setKind(e.target.value as 'snapshot' | 'image')}>
            <option value="snapshot">snapshot</option>
            <option value="image">image</option>
          </select>
        </label>
      </div>
    </FormDialog>
  );
}
