import { useMutation, useQuery, useQueryClient } from '@tanstack/react-query';
import { useState, type DragEvent } from 'react';
import { api, unwrap, type Schemas } from '../api/client.js';
import { age, Empty, ErrorState, QueryView } from '../ui/states.js';
import './sandbox.css';
import { TableHead } from '../ui/TableHead.js';

type Entry = Schemas['DirEntry'];

const HOME = '/home/user';

const join = (dir: string, name: string) => (dir === '/' ? `/${name}` : `${dir}/${name}`);
const parent = (dir: string) => dir.slice(0, dir.lastIndexOf('/')) || '/';

/** 1.2 KB, 3.4 MB: a size to read at a glance (the exact bytes are in the cell's title). */
export function size(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

/**
 * The sandbox's files: a directory's entries (a directory opens on click), upload by picking or
 * dropping files (streamed to the API, never read into the page), download by fetching with the
 * session's headers and saving the blob.
 */
export default function FilesTab({ sandboxId }: { sandboxId: string }) {
  const [dir, setDir] = useState(HOME);
  const [dragging, setDragging] = useState(false);
  const [notice, setNotice] = useState<string>();
  const queries = useQueryClient();
  const id = { id: sandboxId };
  const listing = useQuery({
    queryKey: ['dir', sandboxId, dir],
    queryFn: () => unwrap(api.GET('/v1/sandboxes/{id}/dir', { params: { path: id, query: { path: dir } } })),
  });

  const upload = useMutation({
    mutationFn: async (files: File[]) => {
      const done: string[] = [];
      for (const file of files) {
        // The File itself is the body: the browser streams it from disk.
        const uploaded = await unwrap(
          api.POST('/v1/sandboxes/{id}/files', {
            params: { path: id, query: { path: join(dir, file.name) } },
            body: file as unknown as string,
            bodySerializer: (body: unknown) => body as BodyInit,
            headers: { 'content-type': 'application/octet-stream' },
          }),
        );
        done.push(`${file.name} (${size(uploaded.bytes)})`);
      }
      return done;
    },
    onSuccess: (done) => setNotice(`Uploaded ${done.join(', ')}`),
    onSettled: () => queries.invalidateQueries({ queryKey: ['dir', sandboxId, dir] }),
  });

  const download = useMutation({
    mutationFn: async (entry: Entry) => {
      const blob = await unwrap(
        api.GET('/v1/sandboxes/{id}/files', {
          params: { path: id, query: { path: entry.path } },
          parseAs: 'blob',
        }),
      );
      const url = URL.createObjectURL(blob);
      const link = document.createElement('a');
      link.href = url;
      link.download = entry.name;
      link.click();
      // Revoked after the click has handed the blob to the download.
      setTimeout(() => URL.revokeObjectURL(url), 60_000);
      return entry.name;
    },
    onSuccess: (name) => setNotice(`Downloaded ${name}`),
  });

  function open(next: string) {
    setDir(next);
    setNotice(undefined);
    upload.reset();
    download.reset();
  }

  function drop(event: DragEvent) {
    event.preventDefault();
    setDragging(false);
    const files = [...event.dataTransfer.files];
    if (files.length > 0) upload.mutate(files);
  }

  const segments = dir.split('/').filter(Boolean);
  const entries = [...(listing.data?.entries ?? [])].sort(
    (a, b) => Number(b.type === 'dir') - Number(a.type === 'dir') || a.name.localeCompare(b.name),
  );

  return (
    <section aria-label="Files">
      <div className="files-bar">
        <nav aria-label="Path" className="crumbs mono">
          <ol>
            <li>
              <button
                type="button"
                className="link-button"
                aria-current={dir === '/' ? 'location' : undefined}
                onClick={() => open('/')}
              >
                /
              </button>
            </li>
            {segments.map((name, i) => {
              const path = `/${segments.slice(0, i + 1).join('/')}`;
              return (
                <li key={path}>
                  <button
                    type="button"
                    className="link-button"
                    aria-current={path === dir ? 'location' : undefined}
                    onClick={() => open(path)}
                  >
                    {name}
                  </button>
                </li>
              );
            })}
          </ol>
        </nav>
        <button type="button" className="button" disabled={dir === '/'} onClick={() => open(parent(dir))}>
          Up
        </button>
        <button type="button" className="button" onClick={() => void listing.refetch()}>
          Refresh
        </button>
      </div>
      <div
        className={`drop-zone${dragging ? ' drop-zone-over' : ''}`}
        onDragOver={(e) => {
          e.preventDefault();
          setDragging(true);
        }}
        onDragLeave={() => setDragging(false)}
        onDrop={drop}
        data-testid="drop-zone"
      >
        <label className="field field-inline">
          <span>Upload files</span>
          <input
            type="file"
            multiple
            disabled={upload.isPending}
            onChange={(e) => {
              const files = [...(e.target.files ?? [])];
              e.target.value = '';
              if (files.length > 0) upload.mutate(files);
            }}
          />
        </label>
        <span className="muted">or drop them here, into {dir}</span>
      </div>
      <div aria-live="polite">
        {upload.isPending && <p role="status">Uploading…</p>}
        {notice && (
          <p role="status" className="notice">
            {notice}
          </p>
        )}
      </div>
      {upload.error && <ErrorState error={upload.error} />}
      {download.error && <ErrorState error={download.error} />}
      <QueryView
        query={listing}
        what={dir}
        empty={<Empty title={`${dir} is empty.`} />}
        isEmpty={() => entries.length === 0}
      >
        {(data) => (
          <div className="table-wrap">
            <table className="table files-table" aria-label={`Files in ${dir}`}>
              <TableHead columns={['Name', 'Type', 'Size', 'Modified']} actions />
              <tbody>
                {entries.map((e) => (
                  <tr key={e.path}>
                    <td className="mono">
                      {e.type === 'dir' ? (
                        <button type="button" className="link-button" onClick={() => open(e.path)}>
                          {e.name}/
                        </button>
                      ) : (
                        e.name
                      )}
                      {e.symlink_target && <span className="muted"> → {e.symlink_target}</span>}
                    </td>
                    <td>{e.type === 'dir' ? 'directory' : e.type}</td>
                    <td className="num" title={`${e.size} bytes`}>
                      {e.type === 'dir' ? '—' : size(e.size)}
                    </td>
                    <td>
                      {e.modified_at ? (
                        <time dateTime={e.modified_at} title={e.modified_at}>
                          {age(e.modified_at)} ago
                        </time>
                      ) : (
                        '—'
                      )}
                    </td>
                    <td>
                      {e.type === 'file' && (
                        <button
                          type="button"
                          className="button"
                          aria-label={`Download ${e.name}`}
                          disabled={download.isPending}
                          onClick={() => download.mutate(e)}
                        >
                          Download
                        </button>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
            {data.truncated && <p className="muted">Only the first 10,000 entries are shown.</p>}
          </div>
        )}
      </QueryView>
    </section>
  );
}
