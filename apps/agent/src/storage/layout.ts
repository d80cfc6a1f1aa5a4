import path from 'node:path';

/** Where everything of Wrenn lives under the data dir (docs/architecture.md has the picture). */
export class DataLayout {
  constructor(
    readonly root: string,
    readonly imagesDir: string = path.join(root, 'images'),
  ) {}

  imageRootfs(template: string): string {
    return path.join(this.imagesDir, template, 'rootfs');
  }
  get sandboxesDir(): string {
    return path.join(this.root, 'sandboxes');
  }
  sandboxDir(id: string): string {
    return path.join(this.sandboxesDir, id);
  }
  /** Templates this agent made: snapshots, and images flattened from sandboxes. */
  get templatesDir(): string {
    return path.join(this.root, 'templates');
  }
  templateDir(name: string): string {
    return path.join(this.templatesDir, name);
  }
  /** Paused sandboxes arriving from another host, unpacked here before they take their place. */
  get importsDir(): string {
    return path.join(this.root, 'imports');
  }
  /** The Node.js runtime (node + its shared libraries) envd starts on in imported images. */
  get envdRuntimeDir(): string {
    return path.join(this.root, 'envd-runtime');
  }
  /** runsc's state directory (its --root). */
  get runscRoot(): string {
    return path.join(this.root, 'run', 'runsc');
  }
}

export interface SandboxPaths {
  dir: string;
  diskImage: string;
  diskMount: string;
  upper: string;
  /** The sandbox's /tmp: on its disk image, outside the overlay (so no symlink in the layer redirects it). */
  tmp: string;
  work: string;
  rootfs: string;
  bundle: string;
  runtimeLog: string;
  resolvConf: string;
  hosts: string;
  /** The memory image of a paused sandbox (complete only once renamed here from `checkpointPartial`). */
  checkpoint: string;
  checkpointPartial: string;
  /** What the sandbox needs to come back after an agent restart, running or paused. */
  stateFile: string;
  /** The operation under way on the sandbox (pause, resume, snapshot, flatten), for the next agent. */
  operationFile: string;
}

export function sandboxPaths(layout: DataLayout, id: string): SandboxPaths {
  const dir = layout.sandboxDir(id);
  const diskMount = path.join(dir, 'disk');
  return {
    dir,
    diskImage: path.join(dir, 'disk.ext4'),
    diskMount,
    upper: path.join(diskMount, 'upper'),
    tmp: path.join(diskMount, 'tmp'),
    work: path.join(diskMount, 'work'),
    rootfs: path.join(dir, 'rootfs'),
    bundle: path.join(dir, 'bundle'),
    runtimeLog: path.join(dir, 'runtime.log'),
    resolvConf: path.join(dir, 'resolv.conf'),
    hosts: path.join(dir, 'hosts'),
    checkpoint: path.join(dir, 'checkpoint'),
    checkpointPartial: path.join(dir, 'checkpoint.partial'),
    stateFile: path.join(dir, 'sandbox.json'),
    operationFile: path.join(dir, 'operation.json'),
  };
}
