import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useState, type FormEvent } from 'react';
import { api, unwrap } from '../api/client.js';
import { useSession } from '../api/session.js';
import { age, Empty, ErrorState, QueryView } from '../ui/states.js';
import { TableHead } from '../ui/TableHead.js';
import { DangerButton } from '../ui/DangerButton.js';

/** The team's API keys: a new one is shown once (with copy), any can be revoked. */
export function ApiKeys() {
  const teamId = useSession()?.teamId ?? '';
  const path = { params: { path: { teamId } } };
  const queries = useQueryClient();
  const [name, setName] = useState('');
  const [created, setCreated] = useState<{ name: string; key: string }>();
  const [copied, setCopied] = useState(false);
  const keys = useQuery({
    queryKey: ['api-keys', teamId],
    queryFn: async () => (await unwrap(api.GET('/v1/teams/{teamId}/api-keys', path))).api_keys,
  });
  const refresh = () => queries.invalidateQueries({ queryKey: ['api-keys', teamId] });
  const create = useMutation({
    mutationFn: () => unwrap(api.POST('/v1/teams/{teamId}/api-keys', { ...path, body: { name } })),
    onSuccess: async (key) => {
      setCreated({ name: key.name, key: key.key });
      setCopied(false);
      setName('');
      await refresh();
    },
  });
  const revoke = useMutation({
    mutationFn: (keyId: string) =>
      unwrap(api.DELETE('/v1/teams/{teamId}/api-keys/{keyId}', { params: { path: { teamId, keyId } } })),
    onSuccess: refresh,
  });

  function submit(event: FormEvent) {
    event.preventDefault();
    create.mutate();
  }

  return (
    <>
      <header className="page-head">
        <h1>API keys</h1>
      </header>
      <form className="toolbar" onSubmit={submit}>
        <label className="field field-inline">
          <span>Key name</span>
          <input required maxLength={100} value={name} onChange={(e) => setName(e.target.value)} />
        </label>
        <button type="submit" className="button button-primary" disabled={create.isPending}>
          {create.isPending ? 'Creating…' : 'Create key'}
        </button>
      </form>
      {create.error && <ErrorState error={create.error} />}
      {created && (
        <section className="card" aria-labelledby="new-key">
          <h2 id="new-key">New key “{created.name}”</h2>
          <p className="muted">Copy it now: it is shown this once and never again.</p>
          <div className="toolbar">
            <code className="mono secret" aria-label="New API key">
              {created.key}
            </code>
            <button
              type="button"
              className="button"
              onClick={() => void navigator.clipboard?.writeText(created.key).then(() => setCopied(true))}
            >
              {copied ? 'Copied' : 'Copy'}
            </button>
            <button type="button" className="link" onClick={() => setCreated(undefined)}>
              Done
            </button>
          </div>
        </section>
      )}
      {revoke.error && <ErrorState error={revoke.error} />}
      <QueryView
        query={keys}
        what="API keys"
        empty={
          <Empty title="No API keys yet.">
            <p className="muted">Programs and SDKs use a key to act for the team.</p>
          </Empty>
        }
      >
        {(data) => (
          <div className="table-wrap">
            <table className="table">
              <TableHead columns={['Name', 'Key', 'Created', 'Last used']} actions />
              <tbody>
                {data.map((k) => (
                  <tr key={k.id}>
                    <td>{k.name}</td>
                    <td className="mono">{k.prefix}…</td>
                    <td>{age(k.created_at)} ago</td>
                    <td>{k.last_used_at ? `${age(k.last_used_at)} ago` : 'never'}</td>
                    <td>
                      <DangerButton
                        label={`Revoke ${k.name}`}
                        disabled={revoke.isPending}
                        onClick={() => revoke.mutate(k.id)}
                      >
                        Revoke
                      </DangerButton>
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </QueryView>
    </>
  );
}
