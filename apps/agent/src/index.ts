export { startAgent, type RunningAgent } from './agent.js';
export { loadAgentConfig, type AgentConfig } from './config.js';
export { CredentialsStore } from './fleet/credentials-store.js';
export { buildOciSpec } from './runtime/oci-spec.js';
