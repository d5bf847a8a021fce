#!/usr/bin/env node
// The `confide` command: runs the TypeScript CLI through tsx's loader, with the repository's tsconfig
// (path aliases for the libraries) wherever the command is started from.
import { fileURLToPath, pathToFileURL } from 'node:url';
import { register } from 'tsx/esm/api';

const root = fileURLToPath(new URL('..', import.meta.url));
register({ tsconfig: `${root}tsconfig.json` });
await import(pathToFileURL(`${root}apps/cli/src/run.ts`).href);
