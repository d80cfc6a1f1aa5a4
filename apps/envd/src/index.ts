export { createEnvdServer, type EnvdServer, type EnvdServerOptions } from './server.js';
export { ENVD_VERSION } from './version.js';
export { loadConfig, type EnvdConfig } from './config.js';
