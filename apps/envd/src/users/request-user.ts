import { Code, ConnectError } from '@wrenn/core';
import type { SandboxDefaults } from '../init/sandbox-defaults.js';
import { usernameFromBasicAuth } from './basic-auth.js';
import type { LinuxUser, UserDirectory } from './user-directory.js';

/** Picks the Linux user a request runs as: the one it names, else the sandbox's default user. */
export class RequestUsers {
  constructor(
    readonly directory: UserDirectory,
    private readonly defaults: SandboxDefaults,
  ) {}

  /** The user of a Connect call, from its optional Basic auth header. */
  fromHeaders(headers: Headers): Promise<LinuxUser> {
    return this.resolve(usernameFromBasicAuth(headers.get('authorization')));
  }

  /** @throws ConnectError(Unauthenticated) when the named user does not exist. */
  async resolve(username: string | undefined): Promise<LinuxUser> {
    const name = username ?? (await this.defaultUserName());
    const user = await this.directory.lookup(name);
    if (!user) throw new ConnectError(`invalid username: '${name}'`, Code.Unauthenticated);
    return user;
  }

  async defaultUserName(): Promise<string> {
    const named = this.defaults.defaultUser ?? this.defaults.configuredDefaultUser;
    if (named) return named;
    // E2B templates run commands as `user`; plain images may not have one.
    return (await this.directory.exists('user')) ? 'user' : 'root';
  }
}
