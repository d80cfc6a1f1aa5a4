// Generated message types and service descriptors, one namespace per protobuf package.
export * as process from './gen/process/process_pb.js';
export * as filesystem from './gen/filesystem/filesystem_pb.js';
export * as hostagent from './gen/wrenn/hostagent/v1/hostagent_pb.js';

/** envd's port inside every sandbox (E2B's). */
export const ENVD_PORT = 49983;

/**
 * The E2B envd version whose SDK-visible features envd implements. The control plane reports it as
 * `envdVersion`, and the SDKs enable code paths by comparing against it, so it must never be higher
 * than what is really there: 0.6.2 (file metadata stored as xattrs) is the first gate we do not meet.
 */
export const ENVD_VERSION = '0.6.1';
