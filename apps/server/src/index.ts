export { loadServerConfig, type ServerConfig } from './config.js';
export { startServer, type RunningServer } from './server.js';
export { buildApp } from './http/app.js';
export { openDatabase } from './db/database.js';
export { renderOpenApiDocument } from './http/openapi-document.js';
