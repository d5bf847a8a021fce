import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { computeEpsilon } from '@confide/differential-privacy';
import { captureIo } from '../../../../test/support/cli';
import { main } from '../main';

async function cli(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const io = captureIo();
  const code = await main(argv, io);
  return { code, stdout: io.stdout(), stderr: io.stderr() };
}

const single = [
  '--sampling-rate',
  '0.04',
  '--noise-multiplier',
  '1.5',
  '--steps',
  '2250',
  '--delta',
  '1e-5',
];

describe('confide privacy epsilon', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'confide-privacy-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("prints { epsilon, delta, order, accountant } equal to Opacus' RDPAccountant", async () => {
    const r = await cli('privacy', 'epsilon', ...single, '--json');
    expect(r.code).toBe(0);
    const out = JSON.parse(r.stdout) as Record<string, unknown>;
    expect(Object.keys(out)).toEqual(['epsilon', 'delta', 'order', 'accountant']);
    // opacus/tests/accountants_test.py: 7.32911117143
    expect(out['epsilon']).toBeCloseTo(7.32911117143, 10);
    expect(out).toMatchObject({ delta: 1e-5, order: 3.9, accountant: 'rdp' });
  });

  it('prints a readable line without --json', async () => {
    const r = await cli('privacy', 'epsilon', ...single);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(
      /^epsilon = 7\.32911 at delta = 0\.00001 after 2250 steps at q = 0\.04/,
    );
    expect(r.stdout).toContain('RDP accountant, Balle et al. 2020 conversion, order 3.9');
  });

  it('uses the classic conversion and the PLD accountant when asked (order null for pld)', async () => {
    const classic = JSON.parse(
      (await cli('privacy', 'epsilon', ...single, '--conversion', 'classic', '--json')).stdout,
    ) as { epsilon: number };
    expect(classic.epsilon).toBeGreaterThan(7.32911117143);
    const args = [
      '--sampling-rate',
      '0.01',
      '--noise-multiplier',
      '1',
      '--steps',
      '1000',
      '--delta',
      '1e-5',
    ];
    const r = await cli('privacy', 'epsilon', ...args, '--accountant', 'pld', '--json');
    expect(r.code).toBe(0);
    const pld = JSON.parse(r.stdout) as { epsilon: number; order: null; accountant: string };
    expect(pld.order).toBeNull();
    expect(pld.accountant).toBe('pld');
    // dp_accounting's PLDAccountant gives 1.8282436455855 here (fixtures/dp-accounting-pld.json).
    expect(pld.epsilon).toBeCloseTo(1.8282436455855, 6);
  });

  it('answers a --batch file line by line, in order', async () => {
    const file = join(dir, 'queries.jsonl');
    const lines = [
      { q: 0.04, sigma: 1.5, steps: 2250, delta: 1e-5 },
      { q: 0.01, sigma: 1, steps: 1000, delta: 1e-5, accountant: 'pld' },
      { q: 1, sigma: 2, steps: 10, delta: 1e-6, conversion: 'classic' },
    ];
    await writeFile(file, lines.map((l) => JSON.stringify(l)).join('\n') + '\n\n');
    const r = await cli('privacy', 'epsilon', '--batch', file, '--json');
    expect(r.code).toBe(0);
    const out = r.stdout.split('\n').map(
      (l) =>
        JSON.parse(l) as {
          epsilon: number;
          order: number | null;
          accountant: string;
          delta: number;
        },
    );
    expect(out).toHaveLength(3);
    expect(out[0]!.epsilon).toBeCloseTo(7.32911117143, 10);
    expect(out[1]).toMatchObject({ accountant: 'pld', order: null });
    expect(out[2]!.epsilon).toBe(
      computeEpsilon({ q: 1, sigma: 2, steps: 10 }, 1e-6, { conversion: 'classic' }).epsilon,
    );
    expect(out[2]!.delta).toBe(1e-6);
  });

  it('names the bad line of a batch and exits 2 without answering any', async () => {
    const file = join(dir, 'bad.jsonl');
    await writeFile(
      file,
      [
        '{"q":0.1,"sigma":1,"steps":10,"delta":1e-5}',
        '',
        '{"q":1.5,"sigma":1,"steps":10,"delta":1e-5}',
      ].join('\n'),
    );
    const r = await cli('privacy', 'epsilon', '--batch', file, '--json');
    expect(r.code).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain('line 3: q must be in (0, 1]');
    for (const [content, message] of [
      ['not json', 'line 1: not valid JSON'],
      ['{"q":0.1,"sigma":1,"steps":10}', 'line 1: field "delta" is missing'],
      ['{"q":0.1,"sigma":1,"steps":1.5,"delta":1e-5}', 'line 1: steps must be a positive integer'],
      ['{"q":0.1,"sigma":1,"steps":10,"delta":1e-5,"sigmaa":2}', 'line 1: unknown field "sigmaa"'],
      ['{"q":"0.1","sigma":1,"steps":10,"delta":1e-5}', 'line 1: field "q" must be a number'],
      ['[1,2]', 'line 1: expected a JSON object'],
    ] as const) {
      await writeFile(file, content);
      const bad = await cli('privacy', 'epsilon', '--batch', file);
      expect(bad.code, content).toBe(2);
      expect(bad.stderr, content).toContain(message);
    }
  });

  it('refuses --batch mixed with single-setting options, and a missing file (exit 1)', async () => {
    const r = await cli('privacy', 'epsilon', '--batch', 'x.jsonl', '--delta', '1e-5');
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('drop --delta');
    const missing = await cli('privacy', 'epsilon', '--batch', join(dir, 'nope.jsonl'));
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('cannot read');
  });

  it('refuses bad or missing arguments with a clear message and exit code 2', async () => {
    const base = {
      '--sampling-rate': '0.04',
      '--noise-multiplier': '1.5',
      '--steps': '2250',
      '--delta': '1e-5',
    };
    const run = (
      patch: Record<string, string | null>,
    ): Promise<{ code: number; stderr: string }> => {
      // --name=value so that negative numbers are not read as options.
      const args = Object.entries({ ...base, ...patch }).flatMap(([k, v]) =>
        v === null ? [] : [`${k}=${v}`],
      );
      return cli('privacy', 'epsilon', ...args);
    };
    for (const [patch, message] of [
      [{ '--sampling-rate': '0' }, '--sampling-rate must be in (0, 1]'],
      [{ '--sampling-rate': '1.2' }, '--sampling-rate must be in (0, 1]'],
      [{ '--noise-multiplier': '-1' }, '--noise-multiplier must be > 0'],
      [{ '--delta': '1' }, '--delta must be in (0, 1)'],
      [{ '--delta': '0' }, '--delta must be in (0, 1)'],
      [{ '--steps': '2.5' }, '--steps must be a positive integer'],
      [{ '--steps': '0' }, '--steps must be a positive integer'],
      [{ '--steps': 'many' }, '--steps must be a number'],
      [{ '--delta': null }, '--delta is required (or give --batch FILE)'],
      [{ '--accountant': 'moments' }, '--accountant must be one of rdp, pld'],
      [
        { '--accountant': 'pld', '--conversion': 'classic' },
        '--conversion applies to the rdp accountant only',
      ],
    ] as const) {
      const r = await run(patch);
      expect(r.code, JSON.stringify(patch)).toBe(2);
      expect(r.stderr, JSON.stringify(patch)).toContain(message);
      expect(r.stderr).toContain('Usage: confide privacy epsilon');
    }
  });

  it('has --help', async () => {
    const r = await cli('privacy', 'epsilon', '--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('--batch FILE');
  });
});

describe('confide privacy noise', () => {
  it('prints the smallest noise multiplier meeting the target', async () => {
    const r = await cli(
      'privacy',
      'noise',
      '--epsilon',
      '8',
      '--delta',
      '1e-5',
      '--sampling-rate',
      '0.04',
      '--steps',
      '2250',
      '--json',
    );
    expect(r.code).toBe(0);
    const { noiseMultiplier } = JSON.parse(r.stdout) as { noiseMultiplier: number };
    expect(Object.keys(JSON.parse(r.stdout) as object)).toEqual(['noiseMultiplier']);
    // Opacus' get_noise_multiplier gives 1.425307617 with its 0.01 epsilon tolerance; ours is tighter.
    expect(noiseMultiplier).toBeLessThanOrEqual(1.425307617);
    expect(noiseMultiplier).toBeGreaterThan(1.41);
    expect(
      computeEpsilon({ q: 0.04, sigma: noiseMultiplier, steps: 2250 }, 1e-5).epsilon,
    ).toBeLessThanOrEqual(8);
    const human = await cli(
      'privacy',
      'noise',
      '--epsilon',
      '8',
      '--delta',
      '1e-5',
      '--sampling-rate',
      '0.04',
      '--steps',
      '2250',
    );
    expect(human.stdout).toMatch(/^noise multiplier 1\.41\d* gives epsilon 7\.99\d* <= 8/);
  });

  it('exits 1 when no noise multiplier can meet the target, 2 on bad input', async () => {
    const r = await cli(
      'privacy',
      'noise',
      '--epsilon',
      '1e-9',
      '--delta',
      '1e-10',
      '--sampling-rate',
      '1',
      '--steps',
      '1000000',
    );
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('no noise multiplier');
    const bad = await cli(
      'privacy',
      'noise',
      '--epsilon=-1',
      '--delta',
      '1e-5',
      '--sampling-rate',
      '0.1',
      '--steps',
      '10',
    );
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--epsilon must be > 0');
    const missing = await cli(
      'privacy',
      'noise',
      '--delta',
      '1e-5',
      '--sampling-rate',
      '0.1',
      '--steps',
      '10',
    );
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('--epsilon is required');
  });
});
