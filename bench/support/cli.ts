/**
 * Command-line handling shared by the benchmarks: strict flags, whole-number options with a range,
 * and a main that prints the usage text on --help and on a bad command line (exit code 2).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** A bad command line: its message is printed above the usage text, and the exit code is 2. */
export class UsageError extends Error {}

type Flags = NonNullable<ParseArgsConfig['options']>;

/**
 * Parses `args` strictly (unknown flags and positionals are errors) into the values of `options`;
 * parseArgs' errors become UsageErrors.
 *
 * @example
 * const values = parseFlags(argv, { reps: { type: 'string' }, json: { type: 'boolean', default: false } });
 */
export function parseFlags<O extends Flags>(args: string[], options: O) {
  try {
    return parseArgs({ args, options, strict: true, allowPositionals: false }).values;
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}

/**
 * A whole-number option in [min, max] (`_` separators allowed), `def` when absent.
 *
 * @example
 * intOption('reps', values.reps, 5, 1, 100); // 5 without --reps
 */
export function intOption(
  name: string,
  raw: string | undefined,
  def: number,
  min: number,
  max: number,
): number {
  if (raw === undefined) return def;
  const digits = raw.replace(/_/g, '');
  if (!/^\d+$/.test(digits)) throw new UsageError(`--${name} must be a whole number, got "${raw}"`);
  const n = Number(digits);
  if (n < min || n > max) throw new UsageError(`--${name} must be from ${min} to ${max}, got ${n}`);
  return n;
}

/**
 * A benchmark's main: parses process.argv with `parse`, prints `usage` for --help ('help') or,
 * with the message and exit code 2, for a UsageError; otherwise runs the benchmark.
 *
 * @example
 * await runBenchmark(USAGE, parseOptions, (opts) => measure(opts));
 */
export async function runBenchmark<T>(
  usage: string,
  parse: (argv: string[]) => T | 'help',
  run: (opts: T) => unknown,
): Promise<void> {
  let opts: T | 'help';
  try {
    opts = parse(process.argv.slice(2));
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(`${e.message}\n\n${usage}`);
    process.exitCode = 2;
    return;
  }
  if (opts === 'help') {
    process.stdout.write(usage);
    return;
  }
  await run(opts);
}
