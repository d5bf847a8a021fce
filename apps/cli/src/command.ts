import { parseArgs } from 'node:util';

/** A bad invocation: shown with the command's usage, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** A failure the operator can act on: its message is printed as is, exit code 1. */
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode = 1,
  ) {
    super(message);
    this.name = 'CliError';
  }
}

export interface OptionSpec {
  type: 'string' | 'boolean';
  description: string;
  short?: string;
  /** Shown in usage as --name VALUE. */
  value?: string;
  default?: string | boolean;
  required?: boolean;
  /** Environment variable that supplies the value when the option is absent. */
  env?: string;
}

export type ParsedOptions = Record<string, string | boolean | undefined>;

/** Where a command writes: stdout for results, stderr for progress and messages. */
export interface Io {
  out: (text: string) => void;
  err: (text: string) => void;
}

export interface Command {
  /** Words after `confide`, e.g. ['node', 'join']. */
  path: string[];
  summary: string;
  description?: string;
  options: Record<string, OptionSpec>;
  positionals?: { name: string; description: string; required?: boolean }[];
  examples?: string[];
  run(opts: ParsedOptions, positionals: string[], io: Io): Promise<number | void>;
}

/** Usage text of one command. */
export function usage(cmd: Command): string {
  const pos = (cmd.positionals ?? [])
    .map((p) => (p.required ? ` <${p.name}>` : ` [${p.name}]`))
    .join('');
  const lines = [
    `Usage: confide ${cmd.path.join(' ')} [options]${pos}`,
    '',
    cmd.description ?? cmd.summary,
    '',
  ];
  const entries = Object.entries(cmd.options);
  lines.push('Options:');
  const rows = entries.map(([name, o]) => {
    const flag = `${o.short ? `-${o.short}, ` : '    '}--${name}${o.type === 'string' ? ` ${o.value ?? 'VALUE'}` : ''}`;
    const extra = [
      o.required ? 'required' : '',
      o.default !== undefined && o.default !== false ? `default: ${String(o.default)}` : '',
      o.env ? `env: ${o.env}` : '',
    ]
      .filter(Boolean)
      .join('; ');
    return [flag, `${o.description}${extra ? ` (${extra})` : ''}`] as const;
  });
  rows.push(['-h, --help', 'show this help']);
  const w = Math.max(...rows.map((r) => r[0].length)) + 2;
  for (const [f, d] of rows) lines.push(`  ${f.padEnd(w)}${d}`);
  for (const p of cmd.positionals ?? []) lines.push(`  <${p.name}>`.padEnd(w + 2) + p.description);
  if (cmd.examples?.length) {
    lines.push('', 'Examples:');
    for (const e of cmd.examples) lines.push(`  ${e}`);
  }
  return lines.join('\n');
}

/** Parses argv for a command: unknown options, missing values and missing required options are usage errors. */
export function parseCommandArgs(
  cmd: Command,
  argv: string[],
): { opts: ParsedOptions; positionals: string[] } {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = {};
  for (const [name, o] of Object.entries(cmd.options))
    options[name] = { type: o.type, ...(o.short ? { short: o.short } : {}) };
  let parsed;
  try {
    parsed = parseArgs({ args: argv, options, allowPositionals: true, strict: true });
  } catch (e) {
    throw new UsageError((e as Error).message.replace(/^TypeError \[[A-Z_]+\]: /, ''));
  }
  const opts: ParsedOptions = { ...parsed.values };
  for (const [name, o] of Object.entries(cmd.options)) {
    if (
      opts[name] === undefined &&
      o.env &&
      process.env[o.env] !== undefined &&
      process.env[o.env] !== ''
    ) {
      opts[name] =
        o.type === 'boolean'
          ? process.env[o.env] === '1' || process.env[o.env] === 'true'
          : process.env[o.env];
    }
    if (opts[name] === undefined && o.default !== undefined) opts[name] = o.default;
    if (o.required && (opts[name] === undefined || opts[name] === '')) {
      throw new UsageError(`--${name} is required${o.env ? ` (or set ${o.env})` : ''}`);
    }
  }
  const maxPos = cmd.positionals?.length ?? 0;
  if (parsed.positionals.length > maxPos) {
    throw new UsageError(`unexpected argument "${parsed.positionals[maxPos]}"`);
  }
  for (const [i, p] of (cmd.positionals ?? []).entries()) {
    if (p.required && parsed.positionals[i] === undefined)
      throw new UsageError(`<${p.name}> is required`);
  }
  return { opts, positionals: parsed.positionals };
}

/** Reads a string option as a number within bounds; a usage error otherwise. */
export function numberOption(
  opts: ParsedOptions,
  name: string,
  { min, max, integer }: { min?: number; max?: number; integer?: boolean } = {},
): number | undefined {
  const raw = opts[name];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  if (typeof raw !== 'string' || raw.trim() === '' || !Number.isFinite(n)) {
    throw new UsageError(`--${name} must be a number; got "${String(raw)}"`);
  }
  if (integer && !Number.isInteger(n))
    throw new UsageError(`--${name} must be an integer; got ${raw}`);
  if (min !== undefined && n < min)
    throw new UsageError(`--${name} must be at least ${min}; got ${raw}`);
  if (max !== undefined && n > max)
    throw new UsageError(`--${name} must be at most ${max}; got ${raw}`);
  return n;
}

/** A string option that must be one of `choices`. */
export function choiceOption<T extends string>(
  opts: ParsedOptions,
  name: string,
  choices: readonly T[],
): T | undefined {
  const raw = opts[name];
  if (raw === undefined) return undefined;
  if (typeof raw !== 'string' || !choices.includes(raw as T)) {
    throw new UsageError(`--${name} must be one of ${choices.join(', ')}; got "${String(raw)}"`);
  }
  return raw as T;
}

/** A required string option (already checked present by the parser). */
export function str(opts: ParsedOptions, name: string): string {
  const v = opts[name];
  if (typeof v !== 'string') throw new UsageError(`--${name} is required`);
  return v;
}
