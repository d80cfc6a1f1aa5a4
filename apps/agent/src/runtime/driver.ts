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
  /** Stops and removes the sandbox and every runtime resource it holds. Idempotent. */
  destroy(id: string): Promise<void>;
  /** Ids of the sandboxes the runtime knows about (including ones a crashed agent left). */
  list(): Promise<string[]>;
  /** Removes whatever the runtime left behind that `destroy` could not reach (start-up cleanup). */
  removeLeftovers(): Promise<void>;
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
