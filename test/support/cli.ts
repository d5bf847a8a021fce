import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Io } from '../../apps/cli/src/command';

/** The repository root: the CLI's processes run there. */
export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
/** bin/confide.js, the `confide` command. */
export const CONFIDE_BIN = fileURLToPath(new URL('../../bin/confide.js', import.meta.url));

/** An {@link Io} that records what a command writes. */
export function captureIo(): Io & { stdout: () => string; stderr: () => string } {
  const out: string[] = [];
  const err: string[] = [];
  return {
    out: (t) => out.push(t),
    err: (t) => err.push(t),
    stdout: () => out.join('\n'),
    stderr: () => err.join('\n'),
  };
}

/** The environment of a spawned CLI: the test's own, less anything that would steer it elsewhere. */
export function cliEnv(extra: Record<string, string | undefined> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env };
  for (const k of [
    'DATABASE_URL',
    'DATABASE_OWNER_URL',
    'CONFIDE_SERVER',
    'CONFIDE_TOKEN',
    'CONFIDE_FEDERATION',
    'CONFIDE_KEY_DIR',
    'CONFIDE_PORT',
    'CONFIDE_HOST',
    'CONFIDE_METRICS_TOKEN',
    'CONFIDE_TRUSTED_PROXIES',
    'CONFIDE_DEBUG',
    // vitest's own markers: the child is a plain CLI run, not a test worker.
    'VITEST',
    'VITEST_POOL_ID',
    'VITEST_WORKER_ID',
  ])
    delete env[k];
  for (const [k, v] of Object.entries(extra)) {
    if (v === undefined) delete env[k];
    else env[k] = v;
  }
  return env;
}

/** A running `confide` process whose output is recorded as it comes. */
export class CliProcess {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  /** Resolves with the exit code (null when killed by a signal) and the signal. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private exit: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  private waiters: Array<() => void> = [];

  constructor(
    readonly args: string[],
    env: NodeJS.ProcessEnv,
  ) {
    this.child = spawn(process.execPath, [CONFIDE_BIN, ...args], {
      cwd: REPO_ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout!.setEncoding('utf8').on('data', (d: string) => {
      this.stdout += d;
      this.wake();
    });
    this.child.stderr!.setEncoding('utf8').on('data', (d: string) => {
      this.stderr += d;
      this.wake();
    });
    this.exited = new Promise((resolve) => {
      this.child.on('close', (code, signal) => {
        this.exit = { code, signal };
        resolve(this.exit);
        this.wake();
      });
    });
  }

  get running(): boolean {
    return this.exit === null;
  }

  /** Waits until `pattern` appears on stdout or stderr; fails if the process exits first or after `timeoutMs`. */
  waitForOutput(
    pattern: RegExp,
    timeoutMs: number,
    stream: 'stdout' | 'stderr' = 'stderr',
  ): Promise<RegExpMatchArray> {
    const end = Date.now() + timeoutMs;
    return new Promise((resolve, reject) => {
      const check = (): void => {
        const m = this[stream].match(pattern);
        if (m) return resolve(m);
        const left = end - Date.now();
        if (this.exit || left <= 0) {
          return reject(
            new Error(
              `${this.describe()} ${this.exit ? `exited (${this.exit.code ?? this.exit.signal})` : `timed out after ${timeoutMs} ms`} ` +
                `before printing ${pattern} on ${stream}\n--- stdout\n${this.stdout}\n--- stderr\n${this.stderr}`,
            ),
          );
        }
        const wake = (): void => {
          clearTimeout(timer);
          this.waiters = this.waiters.filter((f) => f !== wake);
          check();
        };
        const timer = setTimeout(wake, left);
        this.waiters.push(wake);
      };
      check();
    });
  }

  /** Waits for the process to exit by itself; fails after `timeoutMs` (leaving it running). */
  async waitForExit(
    timeoutMs: number,
  ): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    let timer: NodeJS.Timeout | undefined;
    try {
      return await Promise.race([
        this.exited,
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () =>
              reject(
                new Error(
                  `${this.describe()} still running after ${timeoutMs} ms\n--- stderr\n${this.stderr}`,
                ),
              ),
            timeoutMs,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  /** Sends `signal` (if still running) and waits for the exit; SIGKILLs after `timeoutMs`. */
  async stop(
    signal: NodeJS.Signals = 'SIGTERM',
    timeoutMs = 10_000,
  ): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    if (this.running) this.child.kill(signal);
    const timer = setTimeout(() => this.child.kill('SIGKILL'), timeoutMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }

  describe(): string {
    return `confide ${this.args.join(' ')}`;
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }
}

/** Starts `confide ...args` and returns at once. */
export function spawnCli(args: string[], env: NodeJS.ProcessEnv = cliEnv()): CliProcess {
  return new CliProcess(args, env);
}

/** Runs `confide ...args` to completion: its exit code and output. */
export async function runCli(
  args: string[],
  env: NodeJS.ProcessEnv = cliEnv(),
  timeoutMs = 30_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const p = new CliProcess(args, env);
  const timer = setTimeout(() => p.child.kill('SIGKILL'), timeoutMs);
  try {
    const { code } = await p.exited;
    return { code, stdout: p.stdout, stderr: p.stderr };
  } finally {
    clearTimeout(timer);
  }
}

/** Runs `confide ...args`, expects exit code 0 and returns stdout parsed as JSON. */
export async function runCliJson<T>(args: string[], env: NodeJS.ProcessEnv = cliEnv()): Promise<T> {
  const r = await runCli(args, env);
  if (r.code !== 0) {
    throw new Error(
      `confide ${args.join(' ')} exited with ${r.code}\n--- stdout\n${r.stdout}\n--- stderr\n${r.stderr}`,
    );
  }
  try {
    return JSON.parse(r.stdout) as T;
  } catch {
    throw new Error(`confide ${args.join(' ')} printed no JSON on stdout:\n${r.stdout}`);
  }
}
