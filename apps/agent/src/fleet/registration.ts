import type { Logger } from '@wrenn/core';
import { generateKeyPair } from '@wrenn/pki';
import { ControlPlaneRefusal, type ControlPlaneApi, type HostFacts } from './control-plane-client.js';
import type { CredentialsStore, HostCredentials } from './credentials-store.js';

export interface RegistrationInput {
  /** From the config; undefined: the one the stored credentials name. */
  controlPlaneUrl: string | undefined;
  registrationToken: string | undefined;
  /** host:port the control plane is to dial. */
  address: string;
  agentVersion: string;
  facts: HostFacts;
}

/**
 * The host's credentials: the stored ones, else a registration with the token. A restart needs no
 * token; a token given while credentials exist is ignored (it is spent or meant for another host,
 * and registering again would make this a new host, orphaning its sandboxes on the control plane).
 * Undefined: no credentials and nothing to register with (the agent runs unregistered).
 */
export async function loadOrRegister(
  input: RegistrationInput,
  store: CredentialsStore,
  apiFor: (url: string) => Pick<ControlPlaneApi, 'register'>,
  logger: Logger,
): Promise<HostCredentials | undefined> {
  const stored = await store.load();
  if (stored) {
    if (input.registrationToken)
      logger.warn(
        { hostId: stored.hostId, credentials: store.dir },
        'WRENN_REGISTRATION_TOKEN ignored: this host is already registered (remove its credentials directory to register it anew)',
      );
    const controlPlaneUrl = input.controlPlaneUrl ?? stored.controlPlaneUrl;
    return { ...stored, controlPlaneUrl };
  }
  if (!input.controlPlaneUrl) {
    if (input.registrationToken) throw new Error('WRENN_REGISTRATION_TOKEN needs WRENN_CONTROL_PLANE_URL');
    return undefined;
  }
  if (!input.registrationToken)
    throw new Error(
      `this host is not registered yet: start it once with WRENN_REGISTRATION_TOKEN (from POST /v1/hosts on ${input.controlPlaneUrl})`,
    );
  const keys = await generateKeyPair();
  const answer = await apiFor(input.controlPlaneUrl)
    .register({
      registration_token: input.registrationToken,
      ...input.facts,
      address: input.address,
      public_key: keys.publicKeyPem,
      agent_version: input.agentVersion,
    })
    .catch((err: unknown) => {
      if (!(err instanceof ControlPlaneRefusal)) throw err;
      throw new ControlPlaneRefusal(
        err.status,
        `${input.controlPlaneUrl} refused the registration token (${err.message}): a token works once, for an hour; ask for a new one (POST /v1/hosts)`,
      );
    });
  const credentials: HostCredentials = {
    hostId: answer.host_id,
    controlPlaneUrl: input.controlPlaneUrl,
    keyPem: keys.privateKeyPem,
    certPem: answer.certificate,
    caPem: answer.ca_certificate,
    accessToken: answer.access_token,
    refreshToken: answer.refresh_token,
  };
  await store.save(credentials);
  logger.info({ hostId: credentials.hostId, controlPlane: input.controlPlaneUrl }, 'host registered');
  return credentials;
}
