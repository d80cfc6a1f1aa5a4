// Generated message types and service descriptors, one namespace per protobuf package.
export * as process from './gen/process/process_pb.js';
export * as filesystem from './gen/filesystem/filesystem_pb.js';
export * as hostagent from './gen/wrenn/hostagent/v1/hostagent_pb.js';

/** envd's port inside every sandbox (E2B's). */
export const ENVD_PORT = 49983;
