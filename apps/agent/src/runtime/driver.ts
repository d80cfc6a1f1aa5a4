/** What the agent asks of a sandbox runtime; one implementation per technology (gVisor now). */
export interface RuntimeDriver {
  readonly name: string;
  /** Starts the sandbox from a prepared bundle; resolves once the runtime reports it running. */
  create(spec: RuntimeSandboxSpec, signal?: AbortSignal): Promise<{ pid: number }>;
  /** Why a sandbox whose host process is gone stopped, in words for its owner. Call before destroy. */
  exitReason(id: string): Promise<string>;
  /** Whether the sandbox's first process has exited (the sandbox's host process may linger). */
  hasExited(id: string): Promise<boolean>;
  /** Whether the host killed any of the sandbox's processes for memory (the sandbox is then broken). */
  wasOomKilled(id: string): Promise<boolean>;
  /** Starts a sandbox from a checkpoint; the spec may differ from the original in its netns and paths. */
  restore(spec: RuntimeSandboxSpec, imageDir: string, signal?: AbortSignal): Promise<{ pid: number }>;
  /** Undefined when `checkpoint` works here; otherwise why not and how to get a runtime that can. */
  checkpointSupport(): Promise<string | undefined>;
  /** Saves the whole sandbox (memory, processes, sockets) into imageDir; the sandbox stops with it. */
  checkpoint(id: string, imageDir: string, signal?: AbortSignal): Promise<void>;
  /** Sends a signal to the sandbox's first process. */
  signal(id: string, signal: NodeJS.Signals): Promise<void>;
  /** Stops every process of the sandbox in place (no checkpoint) until `thaw`. */
  freeze(id: string): Promise<void>;
  thaw(id: string): Promise<void>;
  /** Cumulative CPU time and memory in use, from the host's view of the sandbox. */
  stats(id: string): Promise<RuntimeStats>;
  /** Holds the sandbox to `vcpus` cores from now on (it starts without a limit: oci-spec.ts). */
  limitCpu(id: string, vcpus: number): Promise<void>;
  /**
   * Memory containment (docs/gvisor.md, "Memory limits"): the host lets the sandbox's charge grow to
   * `memoryMb + headroomMb` (the guest still sees `memoryMb`), and `onCross` is called whenever its
   * charge crosses `memoryMb`, either way, and when the sandbox goes. Replaces an earlier watch of the
   * sandbox; resolves once both are in force.
   */
  watchMemory(id: string, memoryMb: number, headroomMb: number, onCross: () => void): Promise<void>;
  /** Ends `watchMemory`'s calls. Idempotent. */
  unwatchMemory(id: string): Promise<void>;
  /** The sandbox's memory as the host charges it; undefined when the sandbox is gone. */
  memory(id: string): Promise<RuntimeMemory | undefined>;
  /** Drops the file cache charged to the sandbox (what the host could reclaim anyway). */
  reclaimCache(id: string): Promise<void>;
  /** Stops and removes the sandbox and every runtime resource it holds. Idempotent. */
  destroy(id: string): Promise<void>;
  /** Ids of the sandboxes the runtime knows about (including ones a crashed agent left). */
  list(): Promise<string[]>;
  /**
   * What the runtime says of a sandbox a previous agent left (start-up): running, frozen (`paused`,
   * a flatten cut short) or stopped, with its host pid; undefined when it does not know it.
   */
  inspect(id: string): Promise<RuntimeSandboxState | undefined>;
  /**
   * Waits until no control command of a previous agent (a checkpoint or restore it started and did
   * not live to see end) works on the sandbox any more; false if one still runs after `timeoutMs`.
   */
  waitForCommands(id: string, timeoutMs: number): Promise<boolean>;
  /**
   * Removes whatever the runtime left behind that `destroy` could not reach (start-up cleanup),
   * except the sandboxes in `keep` (adopted by this agent) and what belongs to them.
   */
  removeLeftovers(keep?: ReadonlySet<string>): Promise<void>;
}

export interface RuntimeSandboxSpec {
  id: string;
  rootfs: string;
  bundleDir: string;
  logFile: string;
  netnsPath: string;
  vcpus: number;
  memoryMb: number;
  pidsLimit: number;
  hostname: string;
  /** Host files/dirs made visible inside the sandbox. */
  mounts: { source: string; destination: string; readonly: boolean }[];
  /** The sandbox's first process (argv), its environment and working directory. */
  init: { args: string[]; env: string[]; cwd: string };
}

export interface RuntimeSandboxState {
  status: 'running' | 'paused' | 'stopped' | 'created';
  pid: number;
  /** The sandbox's network namespace, as its spec gave it. */
  netnsPath?: string;
}

export interface RuntimeStats {
  /** CPU time consumed since the sandbox started, in nanoseconds. */
  cpuNs: number;
  memUsedBytes: number;
}

export interface RuntimeMemory {
  /** Everything charged, file cache included. */
  chargedBytes: number;
  /** What the host cannot take back: charged minus file cache (gVisor's memory file counts). */
  inUseBytes: number;
}
