import http from 'node:http';
import { mkdir } from 'node:fs/promises';
import { isAbsolute, join, normalize } from 'node:path';
import { fromBinary, fromJson, type DescMessage, type DescMethod, type JsonValue } from '@bufbuild/protobuf';
import { filesystem as fspb, process as processpb } from '@wrenn/contracts';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startEnvd, type EnvdFixture } from './testing/envd-fixture.js';

// Property-based requests against envd (issue 14; docs/testing.md, "Fuzzing"): its HTTP routes and
// every RPC of process.Process and filesystem.Filesystem, with random bytes and random JSON under
// both codecs. Nothing bad is a 5xx (nor, in Connect, `internal`/`unknown`), and envd stays up.
//
// envd runs as root here and Remove is `rm -rf`: every request that would act (one that decodes to a
// message which moves, removes, creates or writes) is kept to the test's scratch directory, so no
// generated request can touch the rest of the machine. Replay: FUZZ_SEED=<seed> (FUZZ_RUNS=<n>).
// (Over our ~500 lines on purpose: the generators, the safety filter and the judges read as one.)

const RUNS = Number(process.env.FUZZ_RUNS ?? 60);
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);
const TOKEN = 'fuzz-access-token';

let envd: EnvdFixture;
let scratch: string;
let livePid = 0;

beforeAll(async () => {
  envd = await startEnvd();
  scratch = join(envd.dir, 'scratch');
  await mkdir(join(scratch, 'sub'), { recursive: true });
  // With an access token set, requests without it are refused: both sides get fuzzed.
  const init = await send({
    method: 'POST',
    path: '/init',
    headers: json,
    body: JSON.stringify({ accessToken: TOKEN }),
  });
  expect(init.status).toBe(204);
  // A live process (cat, reading its stdin), whose pid the generated messages use now and then, so
  // the RPCs on a process get past their lookup. Its events are drained until it ends.
  const started = envd.clients(auth).process.start({ process: { cmd: '/bin/cat' }, stdin: true });
  const events = started[Symbol.asyncIterator]();
  const first = await events.next();
  const event = first.done ? undefined : first.value.event?.event;
  livePid = event?.case === 'start' ? event.value.pid : 0;
  expect(livePid).toBeGreaterThan(0);
  void (async () => {
    for (;;) if ((await events.next()).done) return;
  })().catch(() => undefined);
});

afterAll(async () => {
  await envd?.close();
});

const json = { 'content-type': 'application/json' };
const auth = { 'x-access-token': TOKEN };

interface Request {
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string | Buffer;
}
interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** A stream that was still sending when we stopped reading (a valid streaming call). */
  streaming?: boolean;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });

/**
 * Sends the request as it is (no URL normalisation). A streaming answer that carries a message is a
 * call envd accepted: we stop reading there.
 */
function send(req: Request): Promise<Answer> {
  const headers =
    req.body === undefined
      ? req.headers
      : { ...req.headers, 'content-length': String(Buffer.byteLength(req.body)) };
  return new Promise((resolve, reject) => {
    const r = http.request(
      { host: '127.0.0.1', port: envd.port, method: req.method, path: req.path, headers, agent },
      (res) => {
        const chunks: Buffer[] = [];
        const done = (streaming?: boolean) =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks),
            streaming,
          });
        res.on('data', (c: Buffer) => {
          chunks.push(c);
          if (isStream(res.headers) && hasMessageFrame(Buffer.concat(chunks))) {
            done(true);
            r.destroy();
          }
        });
        res.on('end', () => done());
        res.on('error', reject);
      },
    );
    r.setTimeout(15_000, () => r.destroy(new Error('no answer within 15 s')));
    r.on('error', reject);
    r.end(req.body);
  });
}

/** About what the request line and headers of `req` take (a long query counts like a long header). */
const headBytes = (req: { path: string; headers: Record<string, unknown> }) =>
  req.path.length + Object.entries(req.headers).reduce((n, [k, v]) => n + k.length + String(v).length + 4, 0);

const isStream = (h: http.IncomingHttpHeaders) => /^application\/connect\+/.test(h['content-type'] ?? '');

/** Connect's envelopes: flags (0x02 = end of stream), a 4-byte length, the payload. */
function frames(buf: Buffer): { flags: number; payload: Buffer }[] {
  const out: { flags: number; payload: Buffer }[] = [];
  for (let at = 0; at + 5 <= buf.length;) {
    const length = buf.readUInt32BE(at + 1);
    if (at + 5 + length > buf.length) break;
    out.push({ flags: buf[at]!, payload: buf.subarray(at + 5, at + 5 + length) });
    at += 5 + length;
  }
  return out;
}
const hasMessageFrame = (buf: Buffer) => frames(buf).some((f) => (f.flags & 0x02) === 0);
const envelope = (payload: Buffer, flags = 0) => {
  const head = Buffer.alloc(5);
  head[0] = flags;
  head.writeUInt32BE(payload.length, 1);
  return Buffer.concat([head, payload]);
};

// ---------------------------------------------------------------------------------------------------
// Keeping the fuzz on the scratch directory.

const inScratch = (p: string) => isAbsolute(p) && normalize(p).startsWith(`${scratch}/`);

/** Whether envd, decoding `body` as `method` would, gets a request that stays off the machine. */
function harmless(method: DescMethod, body: Buffer, binary: boolean): boolean {
  const payloads = method.methodKind === 'unary' ? [body] : frames(body).map((f) => f.payload);
  return payloads.every((payload) => {
    const msg = decode(method.input, payload, binary);
    if (!msg) return true; // envd cannot decode it either
    const m = msg as unknown as Record<string, unknown>;
    switch (method.name) {
      case 'Remove':
      case 'MakeDir':
        return inScratch(m.path as string);
      case 'Move':
        return inScratch(m.source as string) && inScratch(m.destination as string);
      case 'ListDir': // a deep walk of / as root takes minutes
        return (m.depth as number) <= 1 || inScratch(m.path as string);
      case 'WatchDir':
      case 'CreateWatcher': // a recursive watch of / as well
        return !m.recursive || inScratch(m.path as string);
      case 'Start': {
        // No command runs but `true`.
        const cmd = (m.process as { cmd?: string } | undefined)?.cmd ?? '';
        return cmd === '' || cmd === 'true';
      }
      default:
        return true;
    }
  });
}

function decode(schema: DescMessage, payload: Buffer, binary: boolean): unknown {
  try {
    return binary
      ? fromBinary(schema, payload)
      : fromJson(schema, JSON.parse(payload.toString('utf8')) as JsonValue, { ignoreUnknownFields: true });
  } catch {
    return undefined;
  }
}

// ---------------------------------------------------------------------------------------------------
// Generators.

const TRAVERSAL = [
  '..',
  '../../..',
  '/etc/passwd',
  '/',
  '~',
  '~root/../..',
  '\u0000',
  '/proc/self/environ',
  'a/../../b',
];
const nastyString = fc.oneof(
  fc.constantFrom(...TRAVERSAL, '', '%zz', '\uffff', '🦀'.repeat(30)),
  fc.string({ unit: 'binary', maxLength: 30 }),
  fc.integer({ min: 1000, max: 6000 }).map((n) => 'x'.repeat(n)),
);
/** Paths the RPCs get: traversal, garbage, and places in the scratch directory (also via `..`). */
const pathArb = () =>
  fc.oneof(
    nastyString,
    fc.constantFrom('', 'sub', '../sub', 'nope/../sub', 'missing').map((p) => join(scratch, p)),
  );

/** JSON for a message: its fields (by JSON name) with values of any type, and unknown ones. */
function jsonMessage(schema: DescMessage, depth = 0): fc.Arbitrary<Record<string, unknown>> {
  const fields = schema.fields.map((f) => {
    const name = f.jsonName;
    const wild = fc.oneof(
      fc.jsonValue({ maxDepth: 2 }),
      nastyString,
      fc.constantFrom(-1, 2 ** 32, 1.5, '12', 'SIGKILL', 'SIGNAL_SIGKILL', true, null),
    );
    let value: fc.Arbitrary<unknown> = wild;
    if (/path|source|destination/i.test(name)) value = fc.oneof(pathArb(), wild);
    else if (name === 'pid') value = fc.oneof(fc.constant(livePid), wild);
    else if (f.fieldKind === 'message' && depth < 2)
      value = fc.oneof(jsonMessage(f.message, depth + 1), wild);
    return [name, value] as const;
  });
  return fc
    .tuple(
      fc.record(Object.fromEntries(fields), { requiredKeys: [] }),
      fc.dictionary(fc.string({ maxLength: 8 }), fc.jsonValue({ maxDepth: 1 }), { maxKeys: 2 }),
    )
    .map(([known, extra]) => ({ ...extra, ...known }));
}

interface RpcRequest {
  how: string;
  binary: boolean;
  body: Buffer;
  headers: Record<string, string>;
}

function rpcRequests(method: DescMethod): fc.Arbitrary<RpcRequest> {
  const streaming = method.methodKind !== 'unary';
  const type = (binary: boolean) =>
    streaming
      ? `application/connect+${binary ? 'proto' : 'json'}`
      : `application/${binary ? 'proto' : 'json'}`;
  const wrap = (payload: Buffer) => (streaming ? envelope(payload) : payload);
  const headerArb: fc.Arbitrary<Record<string, string>> = fc.oneof(
    { weight: 4, arbitrary: fc.constant(auth) },
    {
      weight: 1,
      arbitrary: fc.constantFrom<Record<string, string>>(
        {},
        { 'x-access-token': 'wrong' },
        { 'x-access-token': '' },
      ),
    },
  );
  const extraHeaders: fc.Arbitrary<Record<string, string>> = fc.oneof(
    { weight: 4, arbitrary: fc.constant({}) },
    {
      weight: 1,
      arbitrary: fc.constantFrom<Record<string, string>>(
        { authorization: 'Basic bm9ib2R5LXRoZXJlOg==' }, // a user that does not exist
        { authorization: 'Basic !!!' },
        { 'connect-timeout-ms': 'soon' },
        { 'connect-protocol-version': '7' },
        { 'content-encoding': 'gzip' },
      ),
    },
  );
  const bodies: fc.Arbitrary<{ how: string; binary: boolean; body: Buffer }>[] = [
    fc
      .uint8Array({ maxLength: 200 })
      .map((b) => ({ how: 'random bytes (proto)', binary: true, body: wrap(Buffer.from(b)) })),
    fc
      .uint8Array({ maxLength: 200 })
      .map((b) => ({ how: 'random bytes (json)', binary: false, body: wrap(Buffer.from(b)) })),
    fc
      .jsonValue({ maxDepth: 3 })
      .map((v) => ({ how: 'random JSON', binary: false, body: wrap(Buffer.from(JSON.stringify(v))) })),
    jsonMessage(method.input).map((v) => ({
      how: 'message-like JSON',
      binary: false,
      body: wrap(Buffer.from(JSON.stringify(v))),
    })),
    fc
      .string({ maxLength: 40 })
      .map((s) => ({ how: 'malformed JSON', binary: false, body: wrap(Buffer.from(`{${s}`)) })),
  ];
  if (streaming)
    // Unframed bytes, a frame longer than the body, and several frames.
    bodies.push(
      fc
        .tuple(fc.boolean(), fc.uint8Array({ maxLength: 64 }))
        .map(([binary, b]) => ({ how: 'unframed', binary, body: Buffer.from(b) })),
      fc
        .tuple(fc.boolean(), fc.integer({ min: 1, max: 2 ** 31 }), fc.uint8Array({ maxLength: 16 }))
        .map(([binary, n, b]) => {
          const frame = envelope(Buffer.from(b));
          frame.writeUInt32BE(n, 1);
          return { how: 'short frame', binary, body: frame };
        }),
      fc
        .tuple(fc.array(jsonMessage(method.input), { maxLength: 4 }), fc.integer({ min: 0, max: 255 }))
        .map(([msgs, flags]) => ({
          how: 'frames',
          binary: false,
          body: Buffer.concat(
            msgs.map((m, i) => envelope(Buffer.from(JSON.stringify(m)), i === msgs.length - 1 ? flags : 0)),
          ),
        })),
    );
  return (
    fc
      .tuple(fc.oneof(...bodies), headerArb, extraHeaders, fc.boolean())
      // Either codec: the content type (below) may name the other one.
      .filter(([b]) => harmless(method, b.body, true) && harmless(method, b.body, false))
      .map(([b, h, extra, rightType]): RpcRequest => ({
        ...b,
        headers: { ...h, ...extra, 'content-type': rightType ? type(b.binary) : type(!b.binary) },
      }))
  );
}

/**
 * One request per RPC that envd must accept, run before the generated ones: the positive control
 * (auth, codecs and the judge let a good call through) holds whatever the seed draws.
 */
function validRequest(method: DescMethod): RpcRequest | undefined {
  const messages: Record<string, object> = {
    'process.Process/List': {},
    'process.Process/Start': { process: { cmd: 'true' } },
    'filesystem.Filesystem/Stat': { path: scratch },
    'filesystem.Filesystem/ListDir': { path: scratch, depth: 1 },
    'filesystem.Filesystem/MakeDir': { path: join(scratch, 'made-by-the-control') },
    'filesystem.Filesystem/CreateWatcher': { path: scratch },
  };
  const message = messages[`${method.parent.typeName}/${method.name}`];
  if (!message) return undefined;
  const payload = Buffer.from(JSON.stringify(message));
  const streaming = method.methodKind !== 'unary';
  return {
    how: 'a valid call',
    binary: false,
    body: streaming ? envelope(payload) : payload,
    headers: { ...auth, 'content-type': streaming ? 'application/connect+json' : 'application/json' },
  };
}

function parseJson(buf: Buffer): { code?: unknown; message?: unknown } | undefined {
  try {
    return JSON.parse(buf.toString()) as { code?: unknown; message?: unknown };
  } catch {
    return undefined;
  }
}

const FIVE_HUNDRED_CODES = new Set(['internal', 'unknown', 'data_loss', 'unavailable', 'unimplemented']);

/**
 * SendSignal with a signal other than KILL or TERM answers `unimplemented` (501), the answer
 * docs/e2b-wire.md records for E2B's envd: a wire-compatibility decision, not counted here.
 */
const isE2bSignalAnswer = (rpc: string, error: { code?: unknown; message?: unknown } | undefined) =>
  rpc === 'process.Process/SendSignal' &&
  error?.code === 'unimplemented' &&
  typeof error.message === 'string' &&
  error.message.startsWith('invalid signal: ');

/** Why a Connect answer is wrong, or undefined. */
function judgeRpc(rpc: string, res: Answer): string | undefined {
  if (res.status === 501 && isE2bSignalAnswer(rpc, parseJson(res.body))) return undefined;
  if (res.status >= 500) return `${res.status}: ${res.body.toString().slice(0, 300)}`;
  if (res.streaming) return undefined; // accepted: a valid call
  let error: { code?: unknown; message?: unknown } | undefined;
  if (isStream(res.headers) && res.status === 200) {
    const end = frames(res.body).find((f) => f.flags & 0x02);
    if (!end) return `a stream without its end: ${res.body.toString().slice(0, 200)}`;
    error = (JSON.parse(end.payload.toString()) as { error?: typeof error }).error;
    if (!error) return undefined; // ended well (a valid call)
  } else if (res.status >= 400) {
    try {
      error = JSON.parse(res.body.toString()) as typeof error;
    } catch {
      return `${res.status} without a JSON body: ${res.body.toString().slice(0, 200)}`;
    }
  } else return undefined;
  if (typeof error?.code !== 'string' && typeof error?.code !== 'number')
    return `an error without a code: ${JSON.stringify(error)}`;
  if (FIVE_HUNDRED_CODES.has(error.code as string)) return `${String(error.code)}: ${String(error.message)}`;
  return undefined;
}

/** Why an HTTP answer is wrong (envd's REST errors are `{code: <status>, message}`), or undefined. */
function judgeHttp(req: Request, res: Answer): string | undefined {
  if (res.status >= 500) return `${res.status}: ${res.body.toString().slice(0, 300)}`;
  if (res.status < 400 || req.method === 'HEAD') return undefined; // a HEAD answer has no body
  // Paths shaped like an RPC (`/pkg.Service/Method`) answer as Connect does: `{code: "<name>", …}`.
  const rpcShaped = /^\/[A-Za-z_][\w.]*\.[A-Za-z_]\w*\/[A-Za-z_]\w*$/.test(req.path.split('?')[0]!);
  try {
    const body = JSON.parse(res.body.toString()) as { code?: unknown; message?: unknown };
    const codeOk = rpcShaped ? typeof body.code === 'string' : body.code === res.status;
    if (codeOk && typeof body.message === 'string') return undefined;
  } catch {
    // below
  }
  return `${res.status} without envd's error body: ${res.body.toString().slice(0, 200)}`;
}

async function check<T>(
  arb: fc.Arbitrary<T>,
  run: (x: T) => Promise<string | undefined>,
  label: string,
  numRuns = RUNS,
  examples: T[] = [],
): Promise<string | undefined> {
  const result = await fc.check(
    fc.asyncProperty(arb, async (x) => {
      const why = await run(x);
      if (why) throw new Error(why);
    }),
    { numRuns, seed: SEED, endOnFailure: true, examples: examples.map((x): [T] => [x]) },
  );
  return result.failed
    ? `${label}: ${String(result.errorInstance)}\n  counterexample: ${JSON.stringify(result.counterexample)?.slice(0, 400)}\n  replay: FUZZ_SEED=${SEED}`
    : undefined;
}

const enc = (s: string) =>
  [...Buffer.from(s)]
    .map((b) =>
      /[A-Za-z0-9\-_.~/]/.test(String.fromCharCode(b))
        ? String.fromCharCode(b)
        : `%${b.toString(16).padStart(2, '0')}`,
    )
    .join('');

describe('fuzzing envd', () => {
  it('answers random bodies to every RPC without a 5xx or an internal error', async () => {
    const failures: string[] = [];
    /** RPCs that took at least one generated request as valid (a positive control). */
    const accepting = new Set<string>();
    for (const service of [processpb.Process, fspb.Filesystem])
      for (const method of service.methods) {
        const rpc = `${service.typeName}/${method.name}`;
        const failed = await check(
          rpcRequests(method),
          async (req) => {
            const res = await send({ method: 'POST', path: `/${rpc}`, headers: req.headers, body: req.body });
            const why = judgeRpc(rpc, res);
            if (!why && (res.streaming || (res.status === 200 && !isStream(res.headers)))) accepting.add(rpc);
            return why;
          },
          rpc,
          RUNS,
          [validRequest(method)].filter((r) => r !== undefined),
        );
        if (failed) failures.push(failed);
      }
    expect(failures, `seed ${SEED}`).toEqual([]);
    console.info(`seed ${SEED}; RPCs that took a valid request: ${[...accepting].join(', ')}`);
    expect(accepting.size).toBeGreaterThan(5);
    expect((await send({ method: 'GET', path: '/health', headers: {} })).status).toBe(204);
  }, 300_000);

  it('answers bad requests to its HTTP routes with a 4xx and its error body', async () => {
    const failures: string[] = [];
    const tokenArb: fc.Arbitrary<Record<string, string>> = fc.oneof(
      { weight: 3, arbitrary: fc.constant(auth) },
      { weight: 1, arbitrary: fc.constantFrom<Record<string, string>>({}, { 'x-access-token': 'nope' }) },
    );
    const query = fc
      .record(
        {
          path: pathArb(),
          username: fc.oneof(fc.constantFrom('root', 'nobody', 'no-such-user'), nastyString),
          signature: fc.oneof(fc.constant('v1_'), nastyString),
          signature_expiration: fc.oneof(
            fc.constantFrom('-1', '0', '99999999999999999999', 'soon'),
            nastyString,
          ),
        },
        { requiredKeys: [] },
      )
      .map((q) =>
        Object.entries(q)
          .map(([k, v]) => `${k}=${enc(v)}`)
          .join('&'),
      );
    const routes: [string, fc.Arbitrary<Request>][] = [
      [
        'GET /files',
        fc.tuple(query, tokenArb).map(([q, h]) => ({ method: 'GET', path: `/files?${q}`, headers: h })),
      ],
      [
        // Writes go to the scratch directory only (`path` is always there; a part's own name is
        // never used when the query names a path).
        'POST /files',
        fc
          .tuple(
            fc.constantFrom('', 'sub', 'sub/x', 'new/dir/y', 'sub/../z').map((p) => join(scratch, p)),
            tokenArb,
            fc.constantFrom(
              'application/octet-stream',
              'multipart/form-data; boundary=x',
              'multipart/form-data',
              'text/plain',
              'application/json',
            ),
            fc.oneof(
              fc.constant({}),
              fc.constant({ 'content-encoding': 'gzip' }),
              fc.constant({ 'content-encoding': 'br' }),
            ),
            fc.oneof(
              fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
              fc
                .string({ maxLength: 40 })
                .map((s) =>
                  Buffer.from(
                    `--x\r\nContent-Disposition: form-data; name="file"; filename="${s}"\r\n\r\nhi\r\n--x`,
                  ),
                ),
            ),
          )
          .map(([p, h, type, encoding, body]) => ({
            method: 'POST',
            path: `/files?path=${enc(p)}`,
            headers: { ...h, ...encoding, 'content-type': type },
            body,
          })),
      ],
      [
        'other methods and paths',
        fc
          .tuple(
            fc.constantFrom('GET', 'PUT', 'DELETE', 'PATCH', 'POST', 'OPTIONS', 'HEAD'),
            fc.oneof(
              fc.constantFrom(
                '/health',
                '/envs',
                '/metrics',
                '/files',
                '/init',
                '/process.Process/Nope',
                '/x.Y/Z',
                '/..',
                '/%2e%2e/etc/passwd',
                '//',
                '/health?x=%zz',
              ),
              nastyString.map((s) => `/${enc(s)}`),
            ),
            tokenArb,
          )
          .filter(([m, p]) => !(m === 'POST' && p === '/init'))
          .map(([method, path, h]) => ({ method, path, headers: h })),
      ],
      [
        'huge headers',
        fc.integer({ min: 1, max: 64 }).map((k) => ({
          method: 'GET',
          path: '/envs',
          headers: { ...auth, 'x-filler': 'y'.repeat(k * 1024) },
        })),
      ],
      [
        // Last: a valid init may change the defaults (not the token: it is sent only as it is).
        'POST /init',
        fc
          .tuple(
            tokenArb,
            fc.oneof(
              fc.jsonValue({ maxDepth: 3 }).map((v) => JSON.stringify(v)),
              fc.string({ maxLength: 40 }).map((s) => `{${s}`),
              fc
                .record(
                  {
                    envVars: fc.oneof(
                      fc.dictionary(fc.string({ maxLength: 5 }), fc.string({ maxLength: 5 }), { maxKeys: 2 }),
                      fc.jsonValue({ maxDepth: 1 }),
                    ),
                    accessToken: fc.oneof(fc.constant(TOKEN), fc.constantFrom('', 'other', 1, null)),
                    defaultUser: fc.oneof(fc.constantFrom('root', '', 1), nastyString),
                    defaultWorkdir: fc.oneof(fc.constant(scratch), fc.constantFrom('', 1, null), nastyString),
                    timestamp: fc.jsonValue({ maxDepth: 1 }),
                  },
                  { requiredKeys: [] },
                )
                .map((v) => JSON.stringify(v)),
            ),
            fc.constantFrom('application/json', 'text/plain'),
          )
          .map(([h, body, type]) => ({
            method: 'POST',
            path: '/init',
            headers: { ...h, 'content-type': type },
            body,
          })),
      ],
    ];
    for (const [label, arb] of routes) {
      const failed = await check(
        arb,
        async (req) => {
          let res: Answer;
          try {
            res = await send(req);
          } catch (err) {
            // Headers past Node's limit (16 KiB) never reach envd: the parser drops the connection
            // (server.ts, 'clientError'). That is the one request answered by a closed socket.
            if (label === 'huge headers' || headBytes(req) > 16 * 1024 - 512) return undefined;
            return `no answer: ${String(err)}`;
          }
          return judgeHttp(req, res);
        },
        label,
        RUNS * 4, // cheap: more of them
      );
      if (failed) failures.push(failed);
    }
    expect(failures, `seed ${SEED}`).toEqual([]);
    expect((await send({ method: 'GET', path: '/health', headers: {} })).status).toBe(204);
  }, 300_000);
});
