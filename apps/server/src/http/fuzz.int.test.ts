import http from 'node:http';
import fc from 'fast-check';
import { expect, it } from 'vitest';
import { isE2bApiPath } from '../e2b/api.js';
import { describeOnBackends, testBackends, useTestServer } from '../testing/api.js';
import { startFakeHost, type FakeHost } from '../testing/fake-host.js';

// Property-based requests against every route (issue 14; docs/testing.md, "Fuzzing"): /v1 as its live
// /openapi.json declares it, and E2B's API (listed below: it is not in that document). Every bad
// request is a 4xx with the API's error body, never a 5xx, and the server answers afterwards.
//
// (Longer than our ~500 lines on purpose: the generators, the judge and the run read as one.)
//
// Replay: FUZZ_SEED=<seed printed by a failure> (FUZZ_ROUTE='POST /v1/sandboxes' to run one route,
// FUZZ_RUNS=<n> for more or fewer runs per route).

const RUNS = Number(process.env.FUZZ_RUNS ?? 50);
const SEED = Number(process.env.FUZZ_SEED ?? Date.now() % 2 ** 31);
const ONLY = process.env.FUZZ_ROUTE;

const backends = await testBackends();

// ---------------------------------------------------------------------------------------------------
// The OpenAPI document, as far as generation needs it.

type Schema = {
  $ref?: string;
  type?: string | string[];
  enum?: unknown[];
  const?: unknown;
  format?: string;
  pattern?: string;
  minLength?: number;
  maxLength?: number;
  minimum?: number;
  maximum?: number;
  exclusiveMinimum?: number;
  exclusiveMaximum?: number;
  minItems?: number;
  maxItems?: number;
  items?: Schema;
  properties?: Record<string, Schema>;
  required?: string[];
  additionalProperties?: boolean | Schema;
  anyOf?: Schema[];
  oneOf?: Schema[];
  allOf?: Schema[];
};
interface Parameter {
  name: string;
  in: 'path' | 'query' | 'header';
  required?: boolean;
  schema?: Schema;
}
interface Operation {
  security?: Record<string, string[]>[];
  parameters?: Parameter[];
  requestBody?: { required?: boolean; content: Record<string, { schema?: Schema }> };
}
interface Doc {
  paths: Record<string, Record<string, Operation>>;
  components?: { schemas?: Record<string, Schema> };
}

/** A route to fuzz: its method and path template, and what it takes. */
interface Route {
  method: string;
  path: string;
  /** `v1` answers `{code: string, message}`, `e2b` answers `{code: <status>, message}`. */
  api: 'v1' | 'e2b';
  auth: 'bearer' | 'admin' | 'apiKey' | 'hostToken' | 'none';
  params: Parameter[];
  /** The JSON body's schema, when it takes one. */
  body?: Schema;
  bodyRequired: boolean;
}

function deref(doc: Doc, schema: Schema | undefined): Schema {
  if (!schema) return {};
  if (schema.$ref) return deref(doc, doc.components?.schemas?.[schema.$ref.split('/').pop()!]);
  if (schema.allOf?.length === 1) return deref(doc, schema.allOf[0]);
  return schema;
}

/** Dereferences every nested `$ref` (the document has no recursive schemas). */
function resolved(doc: Doc, schema: Schema | undefined): Schema {
  const s = deref(doc, schema);
  return {
    ...s,
    items: s.items && resolved(doc, s.items),
    properties:
      s.properties && Object.fromEntries(Object.entries(s.properties).map(([k, v]) => [k, resolved(doc, v)])),
    additionalProperties:
      typeof s.additionalProperties === 'object'
        ? resolved(doc, s.additionalProperties)
        : s.additionalProperties,
    anyOf: s.anyOf?.map((x) => resolved(doc, x)),
    oneOf: s.oneOf?.map((x) => resolved(doc, x)),
  };
}

function routesOf(doc: Doc): Route[] {
  const routes: Route[] = [];
  for (const [path, item] of Object.entries(doc.paths))
    for (const [method, op] of Object.entries(item)) {
      const schemes = (op.security ?? []).flatMap((s) => Object.keys(s));
      const auth = schemes.includes('apiKey')
        ? 'apiKey'
        : schemes.includes('hostToken')
          ? 'hostToken'
          : schemes.includes('bearer')
            ? path.startsWith('/v1/admin/')
              ? 'admin'
              : 'bearer'
            : 'none';
      const content = op.requestBody?.content ?? {};
      routes.push({
        method: method.toUpperCase(),
        path,
        api: 'v1',
        auth,
        params: (op.parameters ?? []).map((p) => ({ ...p, schema: resolved(doc, p.schema) })),
        body: content['application/json'] ? resolved(doc, content['application/json'].schema) : undefined,
        bodyRequired: op.requestBody?.required === true,
      });
    }
  return routes;
}

// E2B's routes (apps/server/src/e2b/*.ts) with the fields their handlers read; bodies are parsed by
// zod in the handlers (optionalJsonBody: an empty body is no body).
const E2B_FIELDS = {
  sandbox: [
    'templateID',
    'timeout',
    'metadata',
    'envVars',
    'secure',
    'autoPause',
    'autoResume',
    'allow_internet_access',
    'network',
  ],
  network: ['allowOut', 'denyOut', 'allow_internet_access', 'egressProxy', 'rules'],
  timeout: ['timeout'],
  fork: ['count', 'timeout'],
  snapshot: ['name'],
  template: ['name', 'alias', 'tags', 'cpuCount', 'memoryMB', 'minFreeDiskMb'],
  build: ['fromImage', 'fromTemplate', 'steps', 'startCmd', 'readyCmd', 'force', 'fromImageRegistry'],
  tags: ['target', 'name', 'tags'],
} as const;
const E2B_ROUTES: [string, string, keyof typeof E2B_FIELDS | undefined, string[]][] = [
  ['POST', '/sandboxes', 'sandbox', []],
  ['POST', '/v2/sandboxes', 'sandbox', []],
  ['POST', '/sandboxes/{id}/connect', 'timeout', []],
  ['POST', '/v2/sandboxes/{id}/connect', 'timeout', []],
  ['POST', '/sandboxes/{id}/resume', 'timeout', []],
  ['DELETE', '/sandboxes/{id}', undefined, []],
  ['POST', '/sandboxes/{id}/timeout', 'timeout', []],
  ['POST', '/sandboxes/{id}/pause', undefined, []],
  ['PUT', '/sandboxes/{id}/network', 'network', []],
  ['GET', '/sandboxes/{id}', undefined, []],
  ['GET', '/v2/sandboxes', undefined, ['state', 'metadata', 'limit', 'nextToken', 'order']],
  ['GET', '/sandboxes/{id}/metrics', undefined, ['start', 'end']],
  ['POST', '/sandboxes/{id}/snapshots', 'snapshot', []],
  ['POST', '/sandboxes/{id}/fork', 'fork', []],
  ['GET', '/snapshots', undefined, ['sandboxID', 'name', 'limit', 'nextToken']],
  ['POST', '/v3/templates', 'template', []],
  ['GET', '/templates/{templateID}/files/{hash}', undefined, []],
  ['POST', '/v2/templates/{templateID}/builds/{buildID}', 'build', []],
  ['GET', '/templates/{templateID}/builds/{buildID}/status', undefined, ['logsOffset', 'limit', 'level']],
  [
    'GET',
    '/templates/{templateID}/builds/{buildID}/logs',
    undefined,
    ['cursor', 'limit', 'direction', 'level', 'source'],
  ],
  ['POST', '/templates/tags', 'tags', []],
  ['DELETE', '/templates/tags', 'tags', []],
  ['GET', '/templates/{templateID}/tags', undefined, []],
  ['GET', '/templates/aliases/{alias}', undefined, []],
  ['GET', '/templates', undefined, []],
  ['GET', '/v2/templates', undefined, []],
  ['GET', '/templates/{templateID}', undefined, ['limit', 'nextToken']],
  ['DELETE', '/templates/{templateID}', undefined, []],
  ['PUT', '/build-uploads/{token}', undefined, []],
];

function e2bRoutes(): Route[] {
  return E2B_ROUTES.map(([method, path, fields, query]) => ({
    method,
    path,
    api: 'e2b' as const,
    auth: path.startsWith('/build-uploads/') ? ('none' as const) : ('apiKey' as const),
    params: [
      ...[...path.matchAll(/\{(\w+)\}/g)].map((m) => ({ name: m[1]!, in: 'path' as const, required: true })),
      ...query.map((name) => ({ name, in: 'query' as const })),
    ],
    // No schema is published for E2B's bodies: objects of the fields the handler reads, any values.
    body: fields && {
      type: 'object',
      properties: Object.fromEntries(E2B_FIELDS[fields].map((f) => [f, {}])),
    },
    bodyRequired: false,
  }));
}

// ---------------------------------------------------------------------------------------------------
// Values: plausible ones from a schema, and bad ones for it.

const typesOf = (s: Schema): string[] =>
  s.type === undefined ? [] : Array.isArray(s.type) ? s.type : [s.type];

/** A value the schema may accept (a starting point: mutations make it bad). */
function plausible(s: Schema, depth = 0): fc.Arbitrary<unknown> {
  if (s.const !== undefined) return fc.constant(s.const);
  if (s.enum) return fc.constantFrom(...s.enum);
  const alternatives = s.anyOf ?? s.oneOf;
  if (alternatives?.length) return fc.oneof(...alternatives.map((a) => plausible(a, depth)));
  const type = typesOf(s).find((t) => t !== 'null') ?? (s.properties ? 'object' : 'any');
  switch (type) {
    case 'string':
      if (s.format === 'email') return fc.emailAddress();
      if (s.format === 'uuid') return fc.uuid();
      if (s.pattern) {
        try {
          return fc.stringMatching(new RegExp(s.pattern)).map((v) => v.slice(0, s.maxLength ?? 256));
        } catch {
          // a pattern fast-check cannot generate from: any string
        }
      }
      return fc.string({ minLength: s.minLength ?? 0, maxLength: Math.min(s.maxLength ?? 24, 24) });
    case 'integer':
      return fc.integer({ min: s.minimum ?? -1000, max: s.maximum ?? 100_000 });
    case 'number':
      return fc.double({ min: s.minimum ?? -1000, max: s.maximum ?? 100_000, noNaN: true });
    case 'boolean':
      return fc.boolean();
    case 'array':
      return depth > 3
        ? fc.constant([])
        : fc.array(plausible(s.items ?? {}, depth + 1), { minLength: s.minItems ?? 0, maxLength: 3 });
    case 'object': {
      if (depth > 3) return fc.constant({});
      const props = s.properties ?? {};
      const fixed = fc.record(
        Object.fromEntries(Object.entries(props).map(([k, v]) => [k, plausible(v, depth + 1)])),
        { requiredKeys: (s.required ?? []).filter((k) => k in props) },
      );
      if (typeof s.additionalProperties !== 'object') return fixed;
      const extra = fc.dictionary(
        fc.string({ minLength: 1, maxLength: 8 }),
        plausible(s.additionalProperties, depth + 1),
        {
          maxKeys: 3,
        },
      );
      return fc.tuple(extra, fixed).map(([a, b]) => ({ ...a, ...b }));
    }
    default:
      return fc.jsonValue({ maxDepth: 2 });
  }
}

const TRAVERSAL = [
  '..',
  '../..',
  '../../etc/passwd',
  '/etc/passwd',
  '%2e%2e%2f%2e%2e',
  '..%5c..',
  '\u0000',
  '%00',
  '~root',
];
const HUGE = fc.integer({ min: 1000, max: 8000 }).map((n) => 'x'.repeat(n));
/** Strings meant to upset a parser, a path or a database. */
const nastyString = fc.oneof(
  fc.constantFrom(
    ...TRAVERSAL,
    '',
    ' ',
    "'; drop table users; --",
    '%',
    '%zz',
    '\uffff',
    '\ud800',
    '🦀'.repeat(40),
  ),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  HUGE,
);

interface Bad {
  value: unknown;
  /** Whether the schema surely refuses it (else it may be valid after all). */
  refused: boolean;
}

/** A value of a type the schema does not take, or out of its bounds. */
function badFor(s: Schema): fc.Arbitrary<Bad> {
  const types = typesOf(s);
  const open = types.length === 0 || s.anyOf !== undefined || s.oneOf !== undefined;
  const wrong = (v: unknown): Bad => {
    const t = v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v === 'number' ? 'number' : typeof v;
    const accepted =
      types.includes(t) || (t === 'number' && types.includes('integer') && Number.isInteger(v));
    return { value: v, refused: !open && !accepted && s.enum === undefined };
  };
  const options: fc.Arbitrary<Bad>[] = [
    fc
      .oneof(
        fc.constantFrom('12', 1.5, -1, 0, true, null, [], {}, [1, 'a'], { a: { b: 1 } }),
        fc.jsonValue({ maxDepth: 2 }),
        nastyString,
      )
      .map(wrong),
  ];
  const refused = (value: unknown): Bad => ({ value, refused: !open });
  if (types.includes('integer') || types.includes('number')) {
    const edges: unknown[] = [2 ** 53 + 2, -(2 ** 53) - 2, 1e308, -1e308, 5e-324];
    if (s.minimum !== undefined) edges.push(s.minimum - 1);
    if (s.maximum !== undefined) edges.push(s.maximum + 1);
    if (types.includes('integer')) edges.push(1.5, -0.25);
    options.push(
      fc.constantFrom(...edges).map((v) => ({
        value: v,
        refused:
          !open &&
          ((s.minimum !== undefined && (v as number) < s.minimum) ||
            (s.maximum !== undefined && (v as number) > s.maximum) ||
            (types.includes('integer') && !Number.isInteger(v))),
      })),
    );
  }
  if (types.includes('string')) {
    if (s.maxLength !== undefined && s.maxLength < 100_000)
      options.push(fc.constant(refused('a'.repeat(s.maxLength + 1))));
    if (s.minLength) options.push(fc.constant(refused('a'.repeat(s.minLength - 1))));
    if (s.enum) options.push(fc.constant(refused('not-one-of-them')));
    if (s.format === 'uuid') options.push(nastyString.map((v) => ({ value: v, refused: !open })));
    options.push(nastyString.map((value) => ({ value, refused: false })));
  }
  if (types.includes('array')) {
    if (s.maxItems !== undefined && s.maxItems < 1000)
      options.push(
        plausible(s.items ?? {}).map((v) => refused(Array.from({ length: s.maxItems! + 1 }, () => v))),
      );
    if (s.items) options.push(badFor(s.items).map((b) => ({ value: [b.value], refused: b.refused })));
  }
  if (types.includes('object') && s.properties)
    options.push(badBody(s).map((b) => ({ value: b.body, refused: b.refused && !open })));
  return fc.oneof(...options);
}

/** An object body made bad in one place: a property's type or range, a required one gone, one too many. */
function badBody(s: Schema): fc.Arbitrary<{ body: unknown; refused: boolean; how: string }> {
  const props = Object.entries(s.properties ?? {});
  const required = (s.required ?? []).filter((k) => s.properties?.[k]);
  const base = plausible(s).map((v) => (typeof v === 'object' && v && !Array.isArray(v) ? v : {}));
  const options: fc.Arbitrary<{ body: unknown; refused: boolean; how: string }>[] = [];
  if (props.length)
    options.push(
      fc
        .tuple(
          base,
          fc.constantFrom(...props).chain(([k, v]) => badFor(v).map((b) => [k, b] as const)),
        )
        .map(([body, [k, b]]) => ({ body: { ...body, [k]: b.value }, refused: b.refused, how: `bad ${k}` })),
    );
  if (required.length)
    options.push(
      fc.tuple(base, fc.constantFrom(...required)).map(([body, k]) => {
        const { [k]: _gone, ...rest } = body as Record<string, unknown>;
        return { body: rest, refused: true, how: `without ${k}` };
      }),
    );
  options.push(
    fc
      .tuple(base, fc.string({ minLength: 1, maxLength: 20 }), fc.jsonValue({ maxDepth: 1 }))
      .filter(([, k]) => !(k in (s.properties ?? {})) && k !== '__proto__')
      .map(([body, k, v]) => ({
        body: { ...body, [k]: v },
        refused: s.additionalProperties === false,
        how: `unknown ${k}`,
      })),
  );
  options.push(
    fc
      .oneof(
        fc.constantFrom(null, [], 'x', 42, true),
        fc.array(fc.jsonValue({ maxDepth: 1 }), { maxLength: 3 }),
      )
      .map((body) => ({
        body,
        refused: typesOf(s).includes('object') || s.properties !== undefined,
        how: 'not an object',
      })),
  );
  return fc.oneof(...options);
}

// ---------------------------------------------------------------------------------------------------
// Requests.

interface FuzzRequest {
  how: string;
  /** Surely refused (a 2xx would be a validation gap), or perhaps valid after all. */
  refused: boolean;
  method: string;
  path: string;
  headers: Record<string, string>;
  body?: string | Buffer;
}

interface Fixtures {
  credentials: Record<Route['auth'], Record<string, string>>;
  /** Real ids a path parameter may take, by route prefix: so handlers past the lookup run too. */
  realIds: (route: Route, param: string) => string[];
}

/** Percent-encodes the UTF-8 of `s` (lone surrogates as U+FFFD, where encodeURIComponent throws). */
const enc = (s: string) =>
  [...Buffer.from(s)]
    .map((b) =>
      /[A-Za-z0-9\-_.~]/.test(String.fromCharCode(b))
        ? String.fromCharCode(b)
        : `%${b.toString(16).padStart(2, '0')}`,
    )
    .join('');

/** A path parameter as it goes into the path: encoded, but raw traversal sometimes. */
const pathValue = (real: string[]) =>
  fc.oneof(
    { weight: 3, arbitrary: real.length ? fc.constantFrom(...real) : fc.uuid() },
    { weight: 1, arbitrary: fc.uuid() },
    { weight: 3, arbitrary: nastyString.map(enc) },
    { weight: 1, arbitrary: fc.constantFrom('..', '.', '%2e%2e', '..%2f..%2fetc', '%zz', '%00', 'a%2fb') },
  );

const asText = (v: unknown) => (typeof v === 'string' ? v : (JSON.stringify(v) ?? ''));

/**
 * Query values are text, read as numbers where the schema says so (`Number(text)`, as zod's
 * coercion does): a "wrong type" is surely refused only where that number is not one the schema takes.
 */
function numberRefused(s: Schema, text: string): boolean {
  const types = typesOf(s);
  if (!types.includes('integer') && !types.includes('number')) return false;
  if (text.trim() === '') return false;
  const n = Number(text);
  return (
    Number.isNaN(n) ||
    (types.includes('integer') && !Number.isInteger(n)) ||
    (s.minimum !== undefined && n < s.minimum) ||
    (s.maximum !== undefined && n > s.maximum)
  );
}

/** Query values: declared parameters with bad or plausible values, and unknown ones. */
function queryOf(route: Route): fc.Arbitrary<{ qs: string; refused: boolean }> {
  const declared = route.params.filter((p) => p.in === 'query');
  const one = (p: Parameter): fc.Arbitrary<[string, string, boolean]> =>
    fc.oneof(
      plausible(p.schema ?? {}).map((v): [string, string, boolean] => [p.name, asText(v), false]),
      badFor(p.schema ?? {}).map((b): [string, string, boolean] => {
        const text = asText(b.value);
        return [p.name, text, b.refused && numberRefused(p.schema ?? {}, text)];
      }),
    );
  return fc
    .tuple(
      fc.subarray(declared).chain((ps) => fc.tuple(...ps.map(one))),
      fc.array(fc.tuple(fc.string({ maxLength: 10 }), nastyString), { maxLength: 2 }),
    )
    .map(([known, unknown]) => {
      const pairs = [...known.map(([k, v]) => [k, v] as const), ...unknown];
      const qs = pairs.map(([k, v]) => `${enc(k)}=${enc(v)}`).join('&');
      const missing = declared.some((p) => p.required && !known.some(([k]) => k === p.name));
      return { qs: qs && `?${qs}`, refused: known.some(([, , r]) => r) || missing };
    });
}

function requests(route: Route, fx: Fixtures): fc.Arbitrary<FuzzRequest> {
  const pathParams = route.params.filter((p) => p.in === 'path');
  const path = fc
    .tuple(...pathParams.map((p) => pathValue(fx.realIds(route, p.name))))
    .map((values) => pathParams.reduce((acc, p, i) => acc.replace(`{${p.name}}`, values[i]!), route.path));
  const good = fx.credentials[route.auth];
  const json = { 'content-type': 'application/json' };
  const plausibleBody = route.body
    ? plausible(route.body).map((b) => JSON.stringify(b))
    : fc.constant(undefined);
  const make =
    (how: string, refused: boolean, headers: Record<string, string>, body?: string | Buffer) =>
    ([p, q]: [string, { qs: string; refused: boolean }]): FuzzRequest => ({
      how,
      refused: refused || q.refused,
      method: route.method,
      path: p + q.qs,
      headers,
      body,
    });
  const target = fc.tuple(path, queryOf(route));
  const kinds: fc.Arbitrary<FuzzRequest>[] = [
    // Path and query values, with a plausible body: perhaps valid.
    fc.tuple(target, plausibleBody).map(([t, b]) => make('params', false, { ...good, ...json }, b)(t)),
  ];
  if (route.auth !== 'none') {
    const garbage = fc.oneof(
      fc.constant({}),
      fc.string({ maxLength: 60 }).map((s) => ({ authorization: `Bearer ${s}` })),
      fc.string({ maxLength: 60 }).map((s) => ({ 'x-api-key': s })),
      fc.string({ maxLength: 60 }).map((s) => ({ 'x-api-key': `wrn_${s}` })),
      fc.constantFrom(
        { authorization: 'Bearer' },
        { authorization: 'Basic YWRtaW46YWRtaW4=' },
        { authorization: 'Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.' },
        // Another scheme's credentials: an API key where a bearer is wanted and the other way.
        route.auth === 'apiKey' ? fx.credentials.bearer : fx.credentials.apiKey,
      ),
    );
    kinds.push(
      fc
        .tuple(target, garbage, plausibleBody)
        .map(([t, h, b]) => make('auth', true, { ...sanitize(h), ...json }, b)(t)),
    );
  }
  if (route.body) {
    const bodyRefused = route.api === 'v1' || route.body.properties !== undefined;
    kinds.push(
      fc
        .tuple(target, badBody(route.body))
        .map(([t, b]) =>
          make(
            `body ${b.how}`,
            b.refused && route.api === 'v1',
            { ...good, ...json },
            JSON.stringify(b.body),
          )(t),
        ),
      fc
        .tuple(
          target,
          fc
            .oneof(
              fc.constantFrom(
                '{',
                '{"a":',
                '[1,',
                'nul',
                '{"a":1}}',
                "{'a':1}",
                '\u0000{}',
                'NaN',
                '{"a":1,}',
              ),
              fc.string({ minLength: 1, maxLength: 50 }),
            )
            .filter((s) => s.trim() !== '' && !parses(s)),
        )
        .map(([t, s]) => make('malformed JSON', bodyRefused, { ...good, ...json }, s)(t)),
      // A plausible body under another content type: refused or read as no body, never a 500.
      fc
        .tuple(
          target,
          plausibleBody,
          fc.constantFrom(
            'text/plain',
            'application/x-www-form-urlencoded',
            'multipart/form-data; boundary=x',
            'application/octet-stream',
            'application/json; charset=utf-16',
            'garbage',
          ),
        )
        .map(([t, b, type]) => make('content type', false, { ...good, 'content-type': type }, b)(t)),
    );
  } else {
    // Routes without a JSON body (files, uploads, reads) get bytes anyway.
    kinds.push(
      fc
        .tuple(
          target,
          fc.uint8Array({ maxLength: 512 }),
          fc.constantFrom(
            'application/octet-stream',
            'application/json',
            'multipart/form-data; boundary=x',
            'text/plain',
          ),
        )
        .map(([t, bytes, type]) =>
          make('bytes', false, { ...good, 'content-type': type }, Buffer.from(bytes))(t),
        ),
    );
  }
  return fc.oneof(...kinds);
}

function parses(s: string): boolean {
  try {
    JSON.parse(s);
    return true;
  } catch {
    return false;
  }
}

/** Header values Node's client would refuse to send (outside latin-1, CR/LF) are dropped. */
function sanitize(h: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(h).filter(([, v]) => /^[\t\x20-\x7e\x80-\xff]*$/.test(v)));
}

interface Answer {
  status: number;
  text: string;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: 4 });

/** Sends the request as it is (node:http: no URL normalisation, so `..` reaches the server). */
function send(base: string, req: FuzzRequest): Promise<Answer> {
  const url = new URL(base);
  // Node's client frames no body of a GET or DELETE by itself: its length goes with it.
  const headers =
    req.body === undefined
      ? req.headers
      : { ...req.headers, 'content-length': String(Buffer.byteLength(req.body)) };
  return new Promise((resolve, reject) => {
    const r = http.request(
      { host: url.hostname, port: url.port, method: req.method, path: req.path, headers, agent },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() });
        });
        res.on('error', reject);
      },
    );
    r.setTimeout(20_000, () => r.destroy(new Error('no answer within 20 s')));
    r.on('error', reject);
    r.end(req.body);
  });
}

/** Why the answer is wrong, or undefined when it is right. */
function judge(route: Route, req: FuzzRequest, res: Answer): string | undefined {
  if (res.status >= 500) return `${res.status}: ${res.text.slice(0, 300)}`;
  let body: unknown;
  try {
    body = JSON.parse(res.text);
  } catch {
    body = undefined;
  }
  if (res.status < 400)
    return req.refused ? `accepted (${res.status}) a request it should refuse` : undefined;
  if (route.path === '/v1/sandboxes/{id}/exec/ws' && res.status === 426) return undefined;
  // A request line and headers over Node's 16 KiB never reach the app: Node's parser answers 431
  // with no body and closes the connection.
  if (res.status === 431 && res.text === '') return undefined;
  const shape = body as { code?: unknown; message?: unknown } | undefined;
  // The API that answers is the one of the path as the server resolves it (`/sandboxes/%2e%2e/x`
  // is `/x`, one of /v1's paths).
  const e2b = isE2bApiPath(new URL(req.path, 'http://server').pathname);
  const codeOk = e2b ? shape?.code === res.status : typeof shape?.code === 'string';
  if (!codeOk || typeof shape?.message !== 'string')
    return `${res.status} without the ${e2b ? 'E2B' : '/v1'} error body: ${res.text.slice(0, 300)}`;
  return undefined;
}

describeOnBackends('fuzzing every route', backends, (backend) => {
  const api = useTestServer(backend);

  it('answers every bad request with a 4xx and its error body, never a 5xx', async () => {
    const admin = await api.admin('fuzz-admin@example.com');
    const user = await api.user('fuzz-user@example.com');
    // A fake platform host (as withFakeHosts, with room for every sandbox a valid request makes).
    await api.db.updateTable('hosts').set({ status: 'deleted' }).where('is_static', '=', true).execute();
    const host: FakeHost = await startFakeHost(api.call, {
      auth: admin.auth,
      capacity: { cpu_cores: 4096, memory_mb: 100_000_000, disk_mb: 1_000_000_000 },
    });
    try {
      expect((await host.heartbeat()).status).toBe(200);
      const created = await api.call('POST', '/v1/sandboxes', {
        body: { template: 'base' },
        headers: user.key,
      });
      expect(created.status).toBe(201);
      const sandboxId = created.body.id as string;
      const doc = (await api.call('GET', '/openapi.json')).body as unknown as Doc;
      const routes = [...routesOf(doc), ...e2bRoutes()].filter(
        (r) => !ONLY || `${r.method} ${r.path}` === ONLY,
      );
      expect(routes.length).toBeGreaterThan(ONLY ? 0 : 80);
      console.info(`fuzzing ${routes.length} routes, ${RUNS} requests each, seed ${SEED}`);
      const fx: Fixtures = {
        credentials: {
          bearer: user.auth,
          admin: admin.auth,
          apiKey: user.key,
          hostToken: { authorization: `Bearer ${host.accessToken}` },
          none: {},
        },
        // Real ids go into the routes of their own objects, never into a DELETE (which would take
        // the fixtures away from the runs after it) nor into a host's (a drained host takes no
        // sandbox: a valid create would then be 503).
        realIds: (route, param) => {
          if (route.method === 'DELETE') return [];
          if (/^\/(v1\/|v2\/)?sandboxes\/\{id\}/.test(route.path) && param === 'id') return [sandboxId];
          if (param === 'teamId') return [user.team.id];
          if (param === 'userId') return [user.user.id];
          if (param === 'templateID' || param === 'template' || param === 'alias') return ['base'];
          return [];
        },
      };
      const failures: string[] = [];
      /** Answers by class (2xx, 4xx…), and the routes that took at least one request as valid. */
      const classes = new Map<string, number>();
      const accepting = new Set<string>();
      for (const route of routes) {
        const result = await fc.check(
          fc.asyncProperty(requests(route, fx), async (req) => {
            const res = await send(api.base, req);
            if (res.status < 300) accepting.add(`${route.method} ${route.path}`);
            const why = judge(route, req, res);
            const cls = `${Math.floor(res.status / 100)}xx`;
            classes.set(cls, (classes.get(cls) ?? 0) + 1);
            if (why) throw new Error(`${req.how}: ${req.method} ${req.path.slice(0, 200)} → ${why}`);
          }),
          { numRuns: RUNS, seed: SEED, endOnFailure: true },
        );
        // A heartbeat the fuzz sent in the host's name may have reported other capacity or
        // sandboxes: the host reports its own again.
        await host.heartbeat();
        if (result.failed)
          failures.push(
            `${route.method} ${route.path}: ${String(result.errorInstance)}\n  replay: FUZZ_SEED=${SEED} FUZZ_ROUTE='${route.method} ${route.path}'`,
          );
      }
      expect(failures, `seed ${SEED}`).toEqual([]);
      console.info(
        `answers: ${JSON.stringify(Object.fromEntries(classes))}; ${accepting.size} routes took a valid one`,
      );
      // Positive controls: most requests are refused, and yet valid ones got through to the handlers
      // and to the fake agent (what a valid create makes there).
      if (!ONLY) {
        expect(classes.get('4xx') ?? 0).toBeGreaterThan((classes.get('2xx') ?? 0) * 2);
        expect(accepting.size).toBeGreaterThan(20);
      }
      // And a valid create still reaches the agent after all of it (whether the seed made one or not).
      const createdBefore = host.created.length;
      const again = await api.call('POST', '/v1/sandboxes', {
        body: { template: 'base' },
        headers: user.key,
      });
      expect(again.status).toBe(201);
      expect(host.created.length).toBe(createdBefore + 1);
      // Still up, and still serving its document.
      expect((await api.call('GET', '/openapi.json')).status).toBe(200);
    } finally {
      await host.stop();
    }
  }, 600_000);
});
