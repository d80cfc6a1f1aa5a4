/**
 * What the host told envd through POST /init: sandbox-wide env vars, the access token, and the
 * default user and working directory. One instance per envd, read by every request.
 */
export class SandboxDefaults {
  envVars: Record<string, string> = {};
  accessToken: string | undefined;
  defaultUser: string | undefined;
  defaultWorkdir: string | undefined;

  constructor(
    /** ENVD_DEFAULT_USER, used until /init names a default user. */
    readonly configuredDefaultUser?: string,
  ) {}
}
