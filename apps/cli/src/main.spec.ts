import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { captureIo } from '../../../test/support/cli';
import { COMMANDS, main } from './main';

/** Runs the CLI in-process; returns its exit code and what it wrote. */
async function cli(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const io = captureIo();
  const code = await main(argv, io);
  return { code, stdout: io.stdout(), stderr: io.stderr() };
}

const STACK_LINE = /^\s+at .+\(?.*:\d+:\d+\)?$/m;

describe('confide (in-process)', () => {
  beforeEach(() => {
    // Options fall back to these; the tests must see only what they pass.
    for (const k of [
      'CONFIDE_SERVER',
      'CONFIDE_TOKEN',
      'CONFIDE_FEDERATION',
      'CONFIDE_KEY_DIR',
      'CONFIDE_PORT',
      'CONFIDE_DEBUG',
    ])
      vi.stubEnv(k, undefined);
  });
  afterEach(() => {
    vi.unstubAllEnvs();
  });

  it('--help lists every command with its summary and exits 0', async () => {
    const r = await cli('--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('Usage: confide <command>');
    for (const c of COMMANDS) {
      expect(r.stdout).toContain(`${c.path.join(' ')} `);
      expect(r.stdout).toContain(c.summary);
    }
    expect(r.stderr).toBe('');
  });

  it('with no arguments shows the help and exits 2', async () => {
    const r = await cli();
    expect(r.code).toBe(2);
    expect(r.stdout).toContain('Commands:');
  });

  it('--version prints the version and exits 0', async () => {
    const r = await cli('--version');
    expect(r).toMatchObject({ code: 0, stdout: 'confide 0.1.0' });
  });

  it.each(COMMANDS.map((c) => [c.path.join(' '), c] as const))(
    '"%s --help" prints its usage with every option and exits 0',
    async (path, c) => {
      const r = await cli(...c.path, '--help');
      expect(r.code).toBe(0);
      expect(r.stdout).toContain(`Usage: confide ${path}`);
      for (const name of Object.keys(c.options)) expect(r.stdout).toContain(`--${name}`);
      expect(r.stderr).toBe('');
      // -h is the same.
      expect((await cli(...c.path, '-h')).stdout).toBe(r.stdout);
    },
  );

  it('"node policy" prints the built-in policy, and --json the effective policy as JSON', async () => {
    const r = await cli('node', 'policy');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('secure sums: at least 3 sites');
    const j = await cli('node', 'policy', '--json');
    expect(JSON.parse(j.stdout)).toMatchObject({
      secureAggregation: { required: true },
      minSitesPerSum: 3,
      dp: null,
      revealOwnMetrics: false,
    });
  });

  it.each([
    ['an unknown field', { minSitesPerSom: 3 }, 'POLICY_UNKNOWN_FIELD'],
    ['a limit out of range', { minSitesPerSum: 1 }, 'POLICY_OUT_OF_RANGE'],
    [
      'contradictory rules',
      { secureAggregation: { minThreatModel: 'semi-malicious', adversarialRate: 0.4 } },
      'POLICY_CONTRADICTION',
    ],
  ])('"node policy" refuses %s with its named error, exit 2, no stack', async (_w, doc, code) => {
    const { mkdtemp, writeFile } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const file = join(await mkdtemp(join(tmpdir(), 'confide-policy-')), 'policy.json');
    await writeFile(file, JSON.stringify(doc));
    const r = await cli('node', 'policy', '--policy', file);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(code);
    expect(r.stderr).not.toMatch(STACK_LINE);
  });

  it('an unknown command exits 2 naming it', async () => {
    const r = await cli('frobnicate');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown command "frobnicate"');
    expect(r.stdout).toBe('');
  });

  it('an unknown subcommand exits 2 naming it and lists the commands of its group', async () => {
    const r = await cli('node', 'frobnicate');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown command "node frobnicate"');
    expect(r.stderr).toContain('node keys');
    expect(r.stderr).toContain('node join');
  });

  it('"confide admin" alone lists the admin commands (exit 2, as for a bare "confide")', async () => {
    const r = await cli('admin');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('Usage: confide admin <command>');
    const adminCommands = COMMANDS.filter((c) => c.path[0] === 'admin');
    expect(adminCommands.length).toBeGreaterThan(5);
    for (const c of adminCommands) expect(r.stderr).toContain(c.path.join(' '));
    for (const c of COMMANDS.filter((c) => c.path[0] !== 'admin'))
      expect(r.stderr).not.toContain(`  ${c.path.join(' ')} `);
  });

  it('"confide admin --help" lists the admin commands on stdout and exits 0', async () => {
    const r = await cli('admin', '--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('admin federation create');
  });

  it('a missing required option exits 2 naming the option and its environment variable', async () => {
    const r = await cli('node', 'join', '--data', 'x.csv', '--label', 'y');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--server is required (or set CONFIDE_SERVER)');
    expect(r.stderr).toContain('Usage: confide node join');

    const f = await cli(
      'admin',
      'federation',
      'create',
      '--server',
      'http://127.0.0.1:1',
      '--token',
      'x',
      '--model',
      '{}',
    );
    expect(f.code).toBe(2);
    expect(f.stderr).toContain('--name is required');
  });

  it('an option without its value exits 2', async () => {
    const r = await cli('demo', '--rounds');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--rounds');
  });

  it('an unknown option exits 2 naming it', async () => {
    const r = await cli('demo', '--frobnicate');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--frobnicate');
    expect(r.stderr).toContain('Usage: confide demo');
  });

  it('an unexpected positional argument exits 2', async () => {
    const r = await cli('node', 'keys', 'extra');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unexpected argument "extra"');
  });

  it.each([
    [['demo', '--sites', 'abc'], '--sites must be a number; got "abc"'],
    [['demo', '--rounds', '0'], '--rounds must be at least 1; got 0'],
    [['demo', '--rounds', '1.5'], '--rounds must be an integer'],
    [['server', '--port', '70000'], '--port must be at most 65535'],
  ])('a bad number (%j) exits 2 with "%s"', async (argv, message) => {
    const r = await cli(...argv);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(message);
    expect(r.stderr).toContain(`Usage: confide ${argv[0]}`);
    expect(r.stdout).toBe('');
  });

  it('a bad choice exits 2 listing the choices', async () => {
    const r = await cli('demo', '--partition', 'foo');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--partition must be one of iid, dirichlet; got "foo"');
  });

  it('an admin command against an unreachable server exits 1 with a clear message and no stack trace', async () => {
    const r = await cli(
      'admin',
      'federation',
      'list',
      '--server',
      'http://127.0.0.1:1',
      '--token',
      'x',
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(
      /^confide admin federation list: UNREACHABLE: cannot reach the aggregator at http:\/\/127\.0\.0\.1:1: /,
    );
    expect(r.stderr).not.toMatch(STACK_LINE);
    expect(r.stdout).toBe('');
  });

  it('the server, token and federation can come from the environment', async () => {
    vi.stubEnv('CONFIDE_SERVER', 'http://127.0.0.1:1');
    vi.stubEnv('CONFIDE_TOKEN', 'x');
    vi.stubEnv('CONFIDE_FEDERATION', 'f');
    const r = await cli('admin', 'model', 'download', '--out', '/nonexistent/model.f32');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('confide admin model download: UNREACHABLE: cannot reach');
    expect(r.stderr).not.toMatch(STACK_LINE);
  });

  it('a --server that is not a URL exits 1 with a clear message', async () => {
    const r = await cli('admin', 'federation', 'list', '--server', 'not a url', '--token', 'x');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('--server must be a URL such as http://localhost:8080');
    expect(r.stderr).not.toMatch(STACK_LINE);
  });

  it('admin federation create rejects a --model that is not JSON (exit 2) before calling the server', async () => {
    const r = await cli(
      'admin',
      'federation',
      'create',
      '--server',
      'http://127.0.0.1:1',
      '--token',
      'x',
      '--name',
      'n',
      '--model',
      '{kind: logistic',
    );
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--model must be JSON or @file.json');
  });

  it('db reset without --yes refuses (exit 2) without touching any database', async () => {
    const r = await cli('db', 'reset', '--data-dir', '/nonexistent/confide-db');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('pass --yes to confirm');
  });
});
