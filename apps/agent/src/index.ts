export { startAgent, type RunningAgent } from './agent.js';
export { loadAgentConfig, type AgentConfig } from './config.js';
export { CredentialsStore } from './fleet/credentials-store.js';
export { buildOciSpec } from './runtime/oci-spec.js';
// The DNS wire format of the slots' resolver (network/slot-egress.ts), for tests' own DNS servers.
export { buildAnswer, buildQuery, parseAnswer, parseQuery, Rcode } from './network/dns-message.js';
