/**
 * The E2B envd version whose SDK-visible features this daemon implements. The control plane reports
 * it as `envdVersion`, and the SDKs enable code paths by comparing against it, so it must never be
 * higher than what is really here: 0.6.2 (file metadata stored as xattrs) is the first gate we do not
 * meet. See README.md for the feature list.
 */
export const ENVD_VERSION = '0.6.1';
