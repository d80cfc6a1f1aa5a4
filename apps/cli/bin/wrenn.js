#!/usr/bin/env node
// Runs the TypeScript sources directly (no build step for the programs that run on the host).
import { register } from 'tsx/esm/api';

register();
await import('../src/main.ts');
