import { Readable } from 'node:stream';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { createRoute, z } from '@hono/zod-openapi';
import { timestampDate } from '@bufbuild/protobuf/wkt';
import type { MessageInitShape } from '@bufbuild/protobuf';
import busboy from 'busboy';
import type { hostagent } from '@wrenn/contracts';
import type { App, ServerDeps } from '../http/app-types.js';
import { authed } from '../http/auth.js';
import { ApiError, badRequest } from '../http/errors.js';
import { apiKey, errors, json, LINUX_USER, SandboxIdParam } from '../http/schemas.js';
import { ownedSandbox } from '../services/sandbox-access.js';

const DEFAULT_UPLOAD_MAX_BYTES = 1024 ** 3;

const FileQuery = z.object({
  path: z
    .string()
    .min(1)
    .max(4096)
    .refine((p) => !p.includes('\0'), 'must not contain NUL')
    .openapi({ description: "Absolute, or relative to the user's home" }),
  user: LINUX_USER.optional().openapi({
    description: "Linux user inside the sandbox (default: the sandbox's)",
  }),
});
const DirQuery = z.object({
  path: z
    .string()
    .min(1)
    .max(4096)
    .refine((p) => p.startsWith('/'), 'must be absolute (start with /)')
    .refine((p) => !p.includes('\0'), 'must not contain NUL')
    .openapi({ description: 'The directory, absolute', example: '/home/user' }),
  depth: z.coerce.number().int().min(1).max(10).default(1).openapi({
    description: "How many levels down: 1 (default) lists the directory's own entries",
  }),
  user: LINUX_USER.optional().openapi({
    description: "Linux user inside the sandbox (default: the sandbox's)",
  }),
});
const DirEntry = z
  .object({
    name: z.string(),
    path: z.string().openapi({ description: 'Absolute' }),
    type: z.enum(['file', 'dir', 'symlink', 'other']).openapi({
      description:
        "A symlink has its target's type (and symlink_target); `symlink` when that cannot be followed",
    }),
    size: z.number().int().openapi({ description: 'Bytes' }),
    modified_at: z.string().nullable().openapi({ format: 'date-time' }),
    permissions: z.string().openapi({ example: '-rw-r--r--' }),
    symlink_target: z.string().nullable(),
  })
  .openapi('DirEntry');
const DirListing = z
  .object({
    path: z.string(),
    entries: z.array(DirEntry).openapi({ description: 'Depth-first, in name order' }),
    truncated: z.boolean().openapi({ description: 'More than 10,000 entries: the rest are left out' }),
  })
  .openapi('DirListing');
const Uploaded = z.object({ path: z.string(), bytes: z.number().int() }).openapi('Uploaded');

const tooLarge = (max: number, size?: number) =>
  new ApiError(
    413,
    'payload_too_large',
    `body: ${size === undefined ? 'the upload' : `${size} bytes`} is over the upload limit of ${max} bytes`,
  );

/**
 * File transfer, streamed both ways: a file never sits whole in the control plane's memory. An upload
 * lands atomically (the agent writes beside the target and renames), so a refused or broken upload
 * leaves the file as it was.
 */
export function fileRoutes(app: App, deps: ServerDeps): void {
  // Longer than ~80 lines on purpose: a table of routes, each a declaration and a short handler.
  const { db, hosts } = deps;
  const max = deps.uploadMaxBytes ?? DEFAULT_UPLOAD_MAX_BYTES;

  // Declared by hand: the schema validator would read the whole body before the handler.
  app.openAPIRegistry.registerPath({
    method: 'post',
    path: '/v1/sandboxes/{id}/files',
    tags: ['files'],
    summary: 'Upload a file (streamed; multipart with a part named `file`, or a raw octet-stream body)',
    description: `Parents are created, an existing file is replaced atomically. Larger than the server's limit (WRENN_UPLOAD_MAX_BYTES) → 413.`,
    security: apiKey,
    request: {
      params: SandboxIdParam,
      query: FileQuery,
      body: {
        required: true,
        content: {
          'multipart/form-data': {
            schema: z.object({ file: z.string().openapi({ type: 'string', format: 'binary' }) }),
          },
          'application/octet-stream': { schema: z.string().openapi({ type: 'string', format: 'binary' }) },
        },
      },
    },
    responses: {
      200: json(Uploaded, 'Written'),
      ...errors,
      413: { description: 'Over the upload limit', content: errors[400].content },
    },
  });
  app.post('/v1/sandboxes/:id/files', async (c) => {
    const { id } = SandboxIdParam.parse(c.req.param());
    const query = FileQuery.parse(c.req.query());
    const row = await ownedSandbox(db, authed(c, 'teamId'), id);
    const declared = c.req.header('content-length');
    if (declared !== undefined && Number(declared) > max) throw tooLarge(max, Number(declared));
    const body = c.req.raw.body;
    if (!body) throw badRequest('body', 'is required');
    const contentType = c.req.header('content-type') ?? '';
    const stream = Readable.fromWeb(body as WebReadableStream<Uint8Array>);
    const source = /^multipart\/form-data/i.test(contentType)
      ? await multipartFile(stream, contentType)
      : stream;

    let written = 0;
    let overLimit = false;
    async function* requests(): AsyncGenerator<
      MessageInitShape<typeof hostagent.WriteFileStreamRequestSchema>
    > {
      yield {
        part: { case: 'header', value: { sandboxId: row.id, path: query.path, user: query.user ?? '' } },
      };
      for await (const chunk of source as AsyncIterable<Buffer>) {
        written += chunk.byteLength;
        if (written > max) {
          overLimit = true;
          throw tooLarge(max);
        }
        yield { part: { case: 'chunk', value: chunk } };
      }
      yield { part: { case: 'end', value: { size: BigInt(written) } } };
    }
    try {
      const agent = await hosts.agent(row.host_id);
      await agent.writeFileStream(requests(), { signal: c.req.raw.signal });
    } catch (err) {
      if (overLimit) {
        stream.destroy();
        c.header('connection', 'close');
        throw tooLarge(max);
      }
      throw err;
    }
    return c.json({ path: query.path, bytes: written }, 200);
  });

  app.openAPIRegistry.registerPath({
    method: 'get',
    path: '/v1/sandboxes/{id}/files',
    tags: ['files'],
    summary: 'Download a file (streamed)',
    security: apiKey,
    request: { params: SandboxIdParam, query: FileQuery },
    responses: {
      200: {
        description: 'The file',
        content: { 'application/octet-stream': { schema: z.string().openapi({ format: 'binary' }) } },
      },
      ...errors,
    },
  });
  app.get('/v1/sandboxes/:id/files', async (c) => {
    const { id } = SandboxIdParam.parse(c.req.param());
    const query = FileQuery.parse(c.req.query());
    const row = await ownedSandbox(db, authed(c, 'teamId'), id);
    const abort = new AbortController();
    const agent = await hosts.agent(row.host_id);
    const stream = agent.readFileStream(
      { sandboxId: row.id, path: query.path, user: query.user ?? '' },
      { signal: AbortSignal.any([abort.signal, c.req.raw.signal]) },
    );
    const chunks = stream[Symbol.asyncIterator]();
    // The first chunk (or the error: no such file, a directory…) comes before the status is sent.
    const first = await chunks.next();
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        if (first.done) controller.close();
        else controller.enqueue(first.value.chunk);
      },
      async pull(controller) {
        const next = await chunks.next();
        if (next.done) controller.close();
        else controller.enqueue(next.value.chunk);
      },
      cancel() {
        abort.abort();
      },
    });
    return new Response(body, { headers: { 'content-type': 'application/octet-stream' } });
  });

  dirRoute(app, deps);
}

/** GET /v1/sandboxes/{id}/dir: a directory's entries, through the agent and envd. */
function dirRoute(app: App, { db, hosts }: ServerDeps): void {
  app.openapi(
    createRoute({
      method: 'get',
      path: '/v1/sandboxes/{id}/dir',
      tags: ['files'],
      summary: "List a directory's entries (name, type, size, modified)",
      description: 'A missing path → 404; a file → 400; a sandbox that is not running → 409.',
      security: apiKey,
      request: { params: SandboxIdParam, query: DirQuery },
      responses: { 200: json(DirListing, 'The entries'), ...errors },
    }),
    async (c) => {
      const { id } = c.req.valid('param');
      const query = c.req.valid('query');
      const row = await ownedSandbox(db, authed(c, 'teamId'), id);
      // Only a running sandbox has an envd to ask (a paused one would be resumed by nothing here).
      if (row.status !== 'running')
        throw new ApiError(
          409,
          'failed_precondition',
          `sandbox ${JSON.stringify(id)} is ${row.status}, not running`,
        );
      const agent = await hosts.agent(row.host_id);
      const listing = await agent.listDir(
        { sandboxId: row.id, path: query.path, depth: query.depth, user: query.user ?? '' },
        { signal: c.req.raw.signal },
      );
      return c.json(
        {
          path: query.path,
          entries: listing.entries.map((e) => ({
            name: e.name,
            path: e.path,
            type: (['file', 'dir', 'symlink'].includes(e.type) ? e.type : 'other') as z.infer<
              typeof DirEntry
            >['type'],
            size: Number(e.size),
            modified_at: e.modifiedTime ? timestampDate(e.modifiedTime).toISOString() : null,
            permissions: e.permissions,
            symlink_target: e.symlinkTarget ?? null,
          })),
          truncated: listing.truncated,
        },
        200,
      );
    },
  );
}

/** The first part named `file` of a multipart body, as a stream (the rest of the body follows it). */
function multipartFile(body: Readable, contentType: string): Promise<Readable> {
  return new Promise((resolve, reject) => {
    let parser: busboy.Busboy;
    try {
      parser = busboy({ headers: { 'content-type': contentType }, limits: { files: 1 } });
    } catch (err) {
      reject(badRequest('body', `invalid multipart request: ${(err as Error).message}`));
      return;
    }
    let file: Readable | undefined;
    parser.on('file', (field, stream) => {
      if (field !== 'file' || file) {
        stream.resume();
        return;
      }
      file = stream;
      resolve(stream);
    });
    parser.on('error', (err: Error) => {
      const failure = badRequest('body', `invalid multipart body: ${err.message}`);
      if (file) file.destroy(failure);
      else reject(failure);
    });
    parser.on('close', () => {
      if (!file) reject(badRequest('file', 'the multipart body has no part named "file"'));
    });
    body.on('error', (err) => parser.destroy(err));
    body.pipe(parser);
  });
}
