// One definition, in the contracts the control plane reads too (it reports it as `envdVersion`).
export { ENVD_VERSION } from '@wrenn/contracts';
