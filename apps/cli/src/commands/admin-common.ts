import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { ApiClient } from '../api-client';
import { caOption, readCaOption } from '../ca-option';
import type { Command, OptionSpec, ParsedOptions } from '../command';
import { str, UsageError } from '../command';

// What every `confide admin ...` command shares: the aggregator it talks to, with which token, and
// how it prints.

const connection: Record<string, OptionSpec> = {
  server: {
    type: 'string',
    value: 'URL',
    description: 'aggregator URL',
    required: true,
    env: 'CONFIDE_SERVER',
  },
  token: {
    type: 'string',
    value: 'TOKEN',
    description: 'admin API token',
    required: true,
    env: 'CONFIDE_TOKEN',
  },
  ...caOption,
  json: { type: 'boolean', description: 'print the API response as JSON' },
};
export const federationOpt: Record<string, OptionSpec> = {
  federation: {
    type: 'string',
    value: 'ID',
    description: 'federation id',
    required: true,
    env: 'CONFIDE_FEDERATION',
  },
};

export function client(opts: ParsedOptions): ApiClient {
  const ca = readCaOption(opts);
  return new ApiClient(str(opts, 'server'), str(opts, 'token'), ca ? { ca } : {});
}

export function print(
  opts: ParsedOptions,
  io: { out: (s: string) => void },
  value: unknown,
  human: () => string,
): void {
  io.out(opts['json'] ? JSON.stringify(value, null, 2) : human());
}

export function admin(
  path: string[],
  summary: string,
  options: Record<string, OptionSpec>,
  run: Command['run'],
  examples: string[] = [],
): Command {
  return {
    path: ['admin', ...path],
    summary,
    options: { ...connection, ...options },
    run,
    examples,
  };
}

/** Like jsonOption, for an option whose JSON may come from a file (`@file.json`). */
export async function jsonOrFileOption(
  opts: ParsedOptions,
  name: string,
  key: string,
): Promise<Record<string, unknown>> {
  const raw = opts[name];
  if (typeof raw !== 'string') return {};
  let text = raw;
  if (raw.startsWith('@')) {
    try {
      text = await readFile(resolve(raw.slice(1)), 'utf8');
    } catch (e) {
      throw new UsageError(`--${name} ${raw}: ${(e as Error).message}`);
    }
  }
  try {
    return { [key]: JSON.parse(text) as unknown };
  } catch (e) {
    throw new UsageError(`--${name} must be JSON or @file.json: ${(e as Error).message}`);
  }
}

/** `{ [key]: parsed JSON }` for a JSON-valued option, `{}` when absent; a usage error when not JSON. */
export function jsonOption(opts: ParsedOptions, name: string, key = name): Record<string, unknown> {
  const raw = opts[name];
  if (raw === undefined) return {};
  try {
    return { [key]: JSON.parse(String(raw)) as unknown };
  } catch (e) {
    throw new UsageError(`--${name} must be JSON: ${(e as Error).message}`);
  }
}
