import { Gauge, Histogram, OPERATION_BUCKETS, REQUEST_BUCKETS, Registry } from '@wrenn/core/metrics';
import type { SandboxManager } from '../sandbox/manager.js';
import { TRANSITIONS, type SandboxState } from '../sandbox/state.js';

/** The RPCs that change a sandbox's life, by the operation name their histogram carries. */
const OPERATIONS: Readonly<Record<string, string>> = {
  CreateSandbox: 'create',
  PauseSandbox: 'pause',
  ResumeSandbox: 'resume',
  CreateSnapshot: 'snapshot',
  DestroySandbox: 'destroy',
  FlattenRootfs: 'flatten',
};

// Every state but `destroyed` (a destroyed sandbox has left the registry): always exported, zero
// included, so a state's series never vanishes between scrapes.
const STATES = (Object.keys(TRANSITIONS) as SandboxState[]).filter((s) => s !== 'destroyed');

/**
 * The agent's Prometheus metrics (docs/observability.md): RPC latency, sandbox operation latency by
 * outcome, and, read at scrape time from the manager, sandboxes by state and warm pool sizes.
 */
export class AgentMetrics {
  readonly registry = new Registry();
  private readonly rpcSeconds: Histogram<'method' | 'code'>;
  private readonly operationSeconds: Histogram<'operation' | 'outcome'>;

  constructor(manager: SandboxManager) {
    const registers = [this.registry];
    this.rpcSeconds = new Histogram({
      name: 'wrenn_agent_rpc_duration_seconds',
      help: 'Connect RPCs served, by method and outcome (ok or the Connect code); streams until they end',
      labelNames: ['method', 'code'],
      buckets: REQUEST_BUCKETS,
      registers,
    });
    this.operationSeconds = new Histogram({
      name: 'wrenn_agent_sandbox_operation_duration_seconds',
      help: 'Sandbox lifecycle operations (create, pause, resume, snapshot, destroy, flatten) by outcome',
      labelNames: ['operation', 'outcome'],
      buckets: OPERATION_BUCKETS,
      registers,
    });
    new Gauge({
      name: 'wrenn_agent_sandboxes',
      help: "Sandboxes this agent holds, by state (warm pools' unclaimed members not included)",
      labelNames: ['state'],
      registers,
      collect() {
        const counts = new Map<SandboxState, number>(STATES.map((s) => [s, 0]));
        for (const record of manager.ctx.registry.records())
          counts.set(record.state, (counts.get(record.state) ?? 0) + 1);
        for (const [state, n] of counts) this.set({ state }, n);
      },
    });
    const pools = () => manager.listWarmPools();
    new Gauge({
      name: 'wrenn_agent_warm_pool_target',
      help: 'Ready sandboxes each warm pool keeps, by template',
      labelNames: ['template'],
      registers,
      collect() {
        this.reset();
        for (const pool of pools()) this.set({ template: pool.template }, pool.size);
      },
    });
    new Gauge({
      name: 'wrenn_agent_warm_pool_ready',
      help: 'Ready sandboxes in each warm pool now, by template',
      labelNames: ['template'],
      registers,
      collect() {
        this.reset();
        for (const pool of pools()) this.set({ template: pool.template }, pool.ready);
      },
    });
  }

  /** One RPC ended (`code`: `ok` or the Connect code's name) after `seconds`. */
  observeRpc(method: string, code: string, seconds: number): void {
    this.rpcSeconds.observe({ method, code }, seconds);
    const operation = OPERATIONS[method];
    if (operation) this.operationSeconds.observe({ operation, outcome: code }, seconds);
  }
}
