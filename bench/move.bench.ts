// The time to move a paused sandbox between hosts, per GiB (docs/fleet.md, "Moving work"): one
// control plane (its own process, on a fresh database of the test PostgreSQL) and two dev hosts
// (scripts/dev-host.sh: real agents in network namespaces of their own), the Fleet harness of the
// e2e tests. For each size a sandbox (memory_mb 1536) holds N MiB of random bytes in a Python
// process and 128 MiB of random bytes on its disk, is paused, and is moved back and forth with
// `POST /v1/admin/sandboxes/{id}/move`. In the same run, on the same paused files, the floor of what
// this disk does: `tar --sparse -cf - | sha256sum` (what one end of a move does alone) and
// `cp --sparse=always -r` to a temp dir; and the export alone (the source agent's ExportArtifact
// drained by this process), so what is left of a move is the relay and the import side.
// Starts agents and a server and uses the test PostgreSQL: on a shared machine run it under the
// lock the e2e tests take. Usage: npm run bench:move [-- --rounds 6 --sizes 256,512,1024]
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { hostagent } from '@wrenn/contracts';
import { exec } from '@wrenn/core';
import { Fleet, waitFor, type DevHost } from '../test/e2e/support/fleet.js';
import { percentiles, printPercentiles, timed } from './stats.js';
import { createBenchDatabase } from './database.js';

const arg = (name: string, fallback: string) => {
  const at = process.argv.indexOf(name);
  return at < 0 ? fallback : (process.argv[at + 1] ?? fallback);
};
const ROUNDS = Number(arg('--rounds', '6')) || 6;
const SIZES_MIB = arg('--sizes', '256,512,1024').split(',').map(Number);
const DISK_MIB = 128;
const EXPORT_ROUNDS = Math.max(2, Math.ceil(ROUNDS / 3));
/** Names no e2e test or other bench uses (`dev-host.sh rm` removes what a failed run left). */
const HOST_NAMES = ['va', 'vb'];
/** What a move carries (apps/agent/src/sandbox/transfer.ts, PAUSED_ENTRIES). */
const PAUSED_ENTRIES = ['sandbox.json', 'checkpoint', 'disk.ext4', 'resolv.conf', 'hosts'];
const GIB = 1024 ** 3;
const MIB = 1024 ** 2;

let interrupted = false;
for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => (interrupted = true));
const checkInterrupted = () => {
  if (interrupted) throw new Error('interrupted');
};

const sh = async (script: string) =>
  (await exec(['bash', '-c', `set -o pipefail; ${script}`], { timeoutMs: 600_000 })).stdout;
const q = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

/** Allocated bytes (`du --block-size=1`) and apparent bytes of what a move carries, and its tar. */
async function sizes(dir: string) {
  const entries = PAUSED_ENTRIES.map(q).join(' ');
  const allocated = Number(
    (await sh(`cd ${q(dir)} && du -s -c --block-size=1 ${entries} | tail -1`)).split('\t')[0],
  );
  const apparent = Number(
    (await sh(`cd ${q(dir)} && du -s -c --apparent-size --block-size=1 ${entries} | tail -1`)).split('\t')[0],
  );
  const checkpoint = Number(
    (await sh(`du -s --block-size=1 ${q(path.join(dir, 'checkpoint'))}`)).split('\t')[0],
  );
  const tar = Number(await sh(`tar --sparse -cf - -C ${q(dir)} -- ${entries} | wc -c`));
  return { allocated, apparent, checkpoint, tar };
}

/** Pino lines of a log that carry `msg` and sandbox `id`, parsed. */
function logLines(log: string, msg: string, id: string): Record<string, unknown>[] {
  return log
    .split('\n')
    .filter((l) => l.includes(msg) && l.includes(id))
    .flatMap((l) => {
      try {
        return [JSON.parse(l.slice(l.indexOf('{'))) as Record<string, unknown>];
      } catch {
        return [];
      }
    });
}

interface SizeResult {
  mib: number;
  bytes: Awaited<ReturnType<typeof sizes>>;
  move: number[];
  serverMs: number[];
  /** From the move's request to the target agent's "moved in" line (export, relay, unpack, adopt). */
  importDone: number[];
  /** From that line to the answer (the row updated, the old copy destroyed). */
  afterImport: number[];
  exportAlone: number[];
  tarSha: number[];
  cp: number[];
}

async function main() {
  const db = await createBenchDatabase();
  // Fleet wants a TestPostgres: a url and drop(), which is what this is.
  const fleet = await Fleet.start(db, {
    // No paused replicas: a move to the host of a copy carries nothing, which is not what is timed.
    serverEnv: { WRENN_HEARTBEAT_SEC: '5', WRENN_HOST_STALE_SEC: '60', WRENN_PAUSED_REPLICA_AFTER_SEC: '0' },
    agentEnv: { WRENN_HEARTBEAT_SEC: '5', WRENN_SANDBOX_NAMESERVERS: '' },
  });
  const results: SizeResult[] = [];
  try {
    const replica = await fleet.addReplica('a');
    fleet.front.route([replica.url]);
    const hosts: { id: string; dev: DevHost }[] = [];
    for (const name of HOST_NAMES) hosts.push(await fleet.addHost(name));
    const { key } = await fleet.signup(`bench-move-${Date.now()}@example.com`);
    const hostOf = (id: string) => hosts.find((h) => h.id === id)!;
    const other = (id: string) => hosts.find((h) => h.id !== id)!;
    const scratch = await mkdtemp(path.join(os.tmpdir(), 'wrenn-bench-move-'));
    try {
      for (const mib of SIZES_MIB) {
        checkInterrupted();
        // Each size's table as soon as it is done: a run cut short still says what it measured.
        const result = await benchSize(fleet, key, mib, scratch, hostOf, other);
        results.push(result);
        report([result]);
      }
    } finally {
      await rm(scratch, { recursive: true, force: true });
    }
  } finally {
    await fleet.close();
  }
  printMachine();
}

async function benchSize(
  fleet: Fleet,
  key: string,
  mib: number,
  scratch: string,
  hostOf: (id: string) => { id: string; dev: DevHost },
  other: (id: string) => { id: string; dev: DevHost },
): Promise<SizeResult> {
  const created = await fleet.call('POST', '/v1/sandboxes', {
    key,
    body: { timeout_sec: 0, memory_mb: 1536 },
  });
  if (created.status !== 201)
    throw new Error(`POST /v1/sandboxes: ${created.status} ${JSON.stringify(created.body)}`);
  const id = created.body.id as string;
  let hostId = created.body.host_id as string;
  const result: SizeResult = {
    mib,
    bytes: { allocated: 0, apparent: 0, checkpoint: 0, tar: 0 },
    move: [],
    serverMs: [],
    importDone: [],
    afterImport: [],
    exportAlone: [],
    tarSha: [],
    cp: [],
  };
  try {
    // Random bytes, so nothing compresses: in memory (1 MiB at a time, so the peak is N MiB) and on
    // the sandbox's disk.
    const fill = `import os, time\nb = [os.urandom(1 << 20) for _ in range(${mib})]\nopen("/tmp/ready", "w").close()\ntime.sleep(864000)`;
    const started = await fleet.exec(
      key,
      id,
      `head -c ${DISK_MIB}M /dev/urandom > /home/user/data && sha256sum /home/user/data > /home/user/data.sha && (setsid python3 -c ${q(fill)} >/dev/null 2>&1 </dev/null & echo $! > /tmp/fill.pid) && cat /tmp/fill.pid`,
    );
    if ((started.body as { exit_code?: number }).exit_code !== 0)
      throw new Error(`filling sandbox ${id}: ${JSON.stringify(started.body)}`);
    const pid = (started.body as { stdout: string }).stdout.trim();
    await waitFor(
      `sandbox ${id} holding ${mib} MiB`,
      async () => ((await fleet.exec(key, id, 'test -f /tmp/ready')).body.exit_code === 0 ? true : undefined),
      180_000,
    );
    const paused = await fleet.call('POST', `/v1/sandboxes/${id}/pause`, { key });
    if (paused.status !== 200) throw new Error(`pause: ${paused.status} ${JSON.stringify(paused.body)}`);
    const dirOf = (h: string) => path.join(hostOf(h).dev.dir, 'sandboxes', id);
    // A pause answers before its teardown is done: the disk image is still being unmounted (tar
    // saw it change). An export waits for the teardown, so one drained export settles it.
    await drainExport(fleet, hostId, hostOf(hostId).dev.address, id);
    result.bytes = await sizes(dirOf(hostId));
    console.log(
      `${mib} MiB in memory: checkpoint ${(result.bytes.checkpoint / MIB).toFixed(0)} MiB, moved ${(result.bytes.allocated / MIB).toFixed(0)} MiB allocated (${(result.bytes.apparent / MIB).toFixed(0)} MiB apparent, tar ${(result.bytes.tar / MIB).toFixed(0)} MiB)`,
    );

    for (let r = 0; r < ROUNDS; r++) {
      checkInterrupted();
      const dir = dirOf(hostId);
      // The floors, on the same files, between moves.
      result.tarSha.push(
        (
          await timed(() =>
            sh(`tar --sparse -cf - -C ${q(dir)} -- ${PAUSED_ENTRIES.map(q).join(' ')} | sha256sum`),
          )
        )[1],
      );
      const copy = path.join(scratch, `cp${r}`);
      result.cp.push((await timed(() => sh(`cp --sparse=always -r ${q(dir)} ${q(copy)}`)))[1]);
      await rm(copy, { recursive: true, force: true });
      if (r < EXPORT_ROUNDS) {
        const [drained, ms] = await timed(() => drainExport(fleet, hostId, hostOf(hostId).dev.address, id));
        if (drained !== result.bytes.tar)
          console.log(`  export alone carried ${drained} bytes, tar ${result.bytes.tar}`);
        result.exportAlone.push(ms);
      }

      const to = other(hostId);
      const t0 = Date.now();
      const [moved, ms] = await timed(() =>
        fleet.call('POST', `/v1/admin/sandboxes/${id}/move`, {
          bearer: fleet.adminToken,
          body: { host_id: to.id },
        }),
      );
      if (moved.status !== 200 || moved.body.host_id !== to.id)
        throw new Error(`move ${r} of ${id} to ${to.id}: ${moved.status} ${JSON.stringify(moved.body)}`);
      result.move.push(ms);
      // This move's line (the r-th of this sandbox): the server's log may reach us a moment late.
      const serverLine = await waitFor(
        `the server's log line of move ${r}`,
        () => logLines(fleet.replicas[0]!.logs(), 'paused sandbox moved to another host', id)[r],
        5_000,
      ).catch(() => undefined);
      if (typeof serverLine?.ms === 'number') result.serverMs.push(serverLine.ms);
      const agentLine = logLines(await to.dev.log(), 'sandbox moved in from another host', id).at(-1);
      if (typeof agentLine?.time === 'number' && agentLine.time >= t0) {
        result.importDone.push(agentLine.time - t0);
        result.afterImport.push(t0 + ms - agentLine.time);
      }
      const arrived = await sizes(dirOf(to.id));
      if (arrived.allocated !== result.bytes.allocated || arrived.tar !== result.bytes.tar)
        console.log(
          `  round ${r}: arrived ${JSON.stringify(arrived)} (left ${JSON.stringify(result.bytes)})`,
        );
      hostId = to.id;
      console.log(`  round ${r}: move ${ms.toFixed(0)} ms (server ${String(serverLine?.ms)} ms)`);
    }

    // What moved still works: the same process, the same disk bytes.
    const resumed = await fleet.call('POST', `/v1/sandboxes/${id}/resume`, { key, body: {} });
    if (resumed.status !== 200) throw new Error(`resume: ${resumed.status} ${JSON.stringify(resumed.body)}`);
    const alive = await fleet.exec(key, id, `kill -0 ${pid} && sha256sum -c /home/user/data.sha`);
    if ((alive.body as { exit_code?: number }).exit_code !== 0)
      throw new Error(
        `after ${ROUNDS} moves, sandbox ${id} lost its process or data: ${JSON.stringify(alive.body)}`,
      );
  } finally {
    await fleet.destroy(key, [id]);
  }
  return result;
}

/** The host's ExportArtifact of sandbox `id`, read to its end here; the bytes it carried. */
async function drainExport(fleet: Fleet, hostId: string, address: string, id: string): Promise<number> {
  const agent = await fleet.agent(hostId, address);
  let n = 0;
  for await (const m of agent.exportArtifact({
    artifact: { kind: hostagent.ArtifactKind.SANDBOX, name: id },
  }))
    if (m.part?.part.case === 'chunk') n += m.part.part.value.byteLength;
  return n;
}

function report(results: SizeResult[]) {
  for (const r of results) {
    const gib = r.bytes.allocated / GIB;
    const perGib = (ms: number[]) => ms.map((m) => m / 1000 / gib);
    printPercentiles(
      `${r.mib} MiB touched: ${(r.bytes.allocated / MIB).toFixed(0)} MiB moved (allocated; checkpoint ${(r.bytes.checkpoint / MIB).toFixed(0)} MiB, tar stream ${(r.bytes.tar / MIB).toFixed(0)} MiB)`,
      [
        ['move (POST .../move, answered)', r.move, 'ms'],
        ['  server log ms', r.serverMs, 'ms'],
        ['  request → target agent "moved in" (export+relay+import)', r.importDone, 'ms'],
        ['  "moved in" → answer (row, old copy destroyed)', r.afterImport, 'ms'],
        ['export alone (ExportArtifact drained by the bench)', r.exportAlone, 'ms'],
        ['floor: tar --sparse | sha256sum', r.tarSha, 'ms'],
        ['floor: cp --sparse=always -r', r.cp, 'ms'],
        ['move per GiB moved', perGib(r.move), 's/GiB'],
        ['export alone per GiB', perGib(r.exportAlone), 's/GiB'],
        ['tar | sha256sum per GiB', perGib(r.tarSha), 's/GiB'],
        ['cp per GiB', perGib(r.cp), 's/GiB'],
      ],
    );
    const ratio = (a: number[], b: number[]) => (percentiles(a).p50 / percentiles(b).p50).toFixed(2);
    console.log(
      `  move p50 = ${ratio(r.move, r.tarSha)} × tar|sha256sum, ${ratio(r.move, r.cp)} × cp; export alone = ${ratio(r.exportAlone, r.tarSha)} × tar|sha256sum`,
    );
  }
}

function printMachine() {
  console.log(
    `\n${os.cpus().length} cores, ${(os.totalmem() / GIB).toFixed(0)} GiB; load average ${os
      .loadavg()
      .map((l) => l.toFixed(2))
      .join(' ')} at the end`,
  );
}

await main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
// Agents' HTTP/2 sessions may linger; everything of the run is removed by now.
process.exit();
