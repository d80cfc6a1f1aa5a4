export * from './errors.js';
export * from './logger.js';
export * from './exec.js';
export * from './config.js';
export * from './ids.js';
export * from './undo-stack.js';
export * from './settle.js';
