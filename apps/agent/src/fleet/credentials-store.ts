import { chmod, mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { errorMessage } from '@wrenn/core';
import type { TlsMaterial } from '@wrenn/pki';
import { z } from 'zod';

/** What a registered host keeps (docs/fleet.md): who it is, its key and certificates, its tokens. */
export interface HostCredentials {
  hostId: string;
  /** The control plane that registered this host. */
  controlPlaneUrl: string;
  keyPem: string;
  certPem: string;
  caPem: string;
  accessToken: string;
  refreshToken: string;
}

export interface Tokens {
  accessToken: string;
  refreshToken: string;
}

const hostFile = z.object({ host_id: z.string().min(1), control_plane_url: z.string().min(1) });
const tokensFile = z.object({ access_token: z.string().min(1), refresh_token: z.string().min(1) });

const FILES = {
  host: 'host.json',
  key: 'key.pem',
  cert: 'cert.pem',
  ca: 'ca.pem',
  tokens: 'tokens.json',
} as const;

/**
 * `<WRENN_DIR>/credentials/`: one file per part, each 0600, each written beside its final name and
 * renamed over it, so a crash leaves the old file or the new one, never half of one. `host.json` is
 * written last at registration: its presence means the rest is there.
 */
export class CredentialsStore {
  constructor(readonly dir: string) {}

  static in(dataDir: string): CredentialsStore {
    return new CredentialsStore(path.join(dataDir, 'credentials'));
  }

  /** The stored credentials, or undefined when this host was never registered. */
  async load(): Promise<HostCredentials | undefined> {
    const hostText = await this.read(FILES.host).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    if (hostText === undefined) return undefined;
    try {
      const host = hostFile.parse(JSON.parse(hostText));
      const tokens = tokensFile.parse(JSON.parse(await this.read(FILES.tokens)));
      return {
        hostId: host.host_id,
        controlPlaneUrl: host.control_plane_url,
        keyPem: await this.read(FILES.key),
        certPem: await this.read(FILES.cert),
        caPem: await this.read(FILES.ca),
        accessToken: tokens.access_token,
        refreshToken: tokens.refresh_token,
      };
    } catch (err) {
      throw new Error(
        `the credentials in ${this.dir} are incomplete (${errorMessage(err)}): remove the directory and register the host again`,
      );
    }
  }

  async save(credentials: HostCredentials): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 });
    await chmod(this.dir, 0o700);
    await this.write(FILES.key, credentials.keyPem);
    await this.write(FILES.cert, credentials.certPem);
    await this.write(FILES.ca, credentials.caPem);
    await this.saveTokens(credentials);
    await this.write(
      FILES.host,
      JSON.stringify(
        { host_id: credentials.hostId, control_plane_url: credentials.controlPlaneUrl },
        null,
        1,
      ),
    );
  }

  /** After a refresh: the new refresh token must be on disk before it is the only valid one. */
  async saveTokens(tokens: Tokens): Promise<void> {
    await this.write(
      FILES.tokens,
      JSON.stringify({ access_token: tokens.accessToken, refresh_token: tokens.refreshToken }, null, 1),
    );
  }

  async saveCertificate(certPem: string): Promise<void> {
    await this.write(FILES.cert, certPem);
  }

  /**
   * Moves the credentials aside (to `credentials.replaced-<time>`), so the host registers anew; kept,
   * not removed, in case the control plane that forgot them was the wrong one.
   */
  async setAside(): Promise<string> {
    const to = `${this.dir}.replaced-${new Date().toISOString().replace(/[:.]/g, '-')}`;
    await rename(this.dir, to);
    return to;
  }

  private read(name: string): Promise<string> {
    return readFile(path.join(this.dir, name), 'utf8');
  }

  private async write(name: string, text: string): Promise<void> {
    const file = path.join(this.dir, name);
    const tmp = `${file}.tmp`;
    await writeFile(tmp, text, { mode: 0o600 });
    // writeFile's mode applies only when it creates the file: a tmp left by a crash keeps its own.
    await chmod(tmp, 0o600);
    await rename(tmp, file);
  }
}

export function tlsMaterialOf(credentials: HostCredentials): TlsMaterial {
  return { keyPem: credentials.keyPem, certPem: credentials.certPem, caPem: credentials.caPem };
}
