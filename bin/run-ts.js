#!/usr/bin/env node
// Runs a TypeScript entry point (benchmarks, scripts) through tsx's ESM hooks, which follow the root
// tsconfig.json (paths, decorators): `node bin/run-ts.js bench/round/round.bench.ts --reps 5`.
// The script sees itself as process.argv[1] and its own arguments from process.argv[2] on.
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { register } from 'tsx/esm/api';

const script = process.argv[2];
if (!script || script === '--help' || script === '-h') {
  console.error('usage: node bin/run-ts.js <script.ts> [args...]');
  process.exit(script ? 0 : 2);
}
const path = resolve(script);
process.argv.splice(1, 2, path);
register();
await import(pathToFileURL(path).href);
