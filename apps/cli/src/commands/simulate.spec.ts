import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { strategyNames } from '@confide/federated';
import { captureIo, cliEnv, runCli } from '../../../../test/support/cli';
import { main } from '../main';

// Real simulations: WDBC, real tfjs training in the worker pool (shared by the runs of this file).

interface Report {
  rounds: {
    round: number;
    accuracy: number;
    auc: number;
    loss: number;
    sites: number;
    durationMs: number;
  }[];
  final: { accuracy: number; auc: number; loss: number };
}

async function cli(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const io = captureIo();
  const code = await main(['simulate', ...argv], io);
  return { code, stdout: io.stdout(), stderr: io.stderr() };
}

async function simulate(...argv: string[]): Promise<Report> {
  const r = await cli(...argv, '--json');
  if (r.code !== 0) throw new Error(`confide simulate ${argv.join(' ')}: ${r.code}\n${r.stderr}`);
  return JSON.parse(r.stdout) as Report;
}

/** A failed run's one-line error (after any progress lines on stderr). */
async function failure(...argv: string[]): Promise<{ code: number; line: string }> {
  const r = await cli(...argv, '--json');
  const line = r.stderr.split('\n').find((l) => l.startsWith('confide simulate: '));
  return { code: r.code, line: line ?? r.stderr };
}

let dir: string;
beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'confide-simulate-'));
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('confide simulate', () => {
  it('prints one JSON object: each round on the held-out test set, and the final model', async () => {
    const r = await cli('--rounds', '3', '--json');
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as Report;
    expect(Object.keys(report)).toEqual(['rounds', 'final']);
    expect(report.rounds.map((x) => x.round)).toEqual([1, 2, 3]);
    for (const round of report.rounds) {
      expect(Object.keys(round)).toEqual([
        'round',
        'accuracy',
        'auc',
        'loss',
        'sites',
        'durationMs',
      ]);
      expect(round.sites).toBe(10);
      expect(round.durationMs).toBeGreaterThan(0);
    }
    const last = report.rounds[2]!;
    expect(report.final).toEqual({ accuracy: last.accuracy, auc: last.auc, loss: last.loss });
    // WDBC is easy: three FedAvg rounds of the default MLP reach what central training does.
    expect(report.final.accuracy).toBeGreaterThan(0.9);
    expect(report.final.auc).toBeGreaterThan(0.95);
    expect(report.rounds[2]!.loss).toBeLessThan(report.rounds[0]!.loss);
    // Progress went to stderr: the setup, then a line per round.
    expect(r.stderr).toContain('455 train / 114 test');
    expect(r.stderr).toMatch(/round 3\/3: accuracy 0\.\d{4}/);
  });

  it('the same seed gives the same run; another seed another', async () => {
    const args = ['--rounds', '2', '--sites', '5', '--partition', 'dirichlet'];
    const a = await simulate(...args, '--seed', '4');
    const b = await simulate(...args, '--seed', '4');
    const c = await simulate(...args, '--seed', '5');
    expect(b.rounds.map((r) => r.loss)).toEqual(a.rounds.map((r) => r.loss));
    expect(c.rounds.map((r) => r.loss)).not.toEqual(a.rounds.map((r) => r.loss));
  });

  it('runs every registered strategy', async () => {
    for (const strategy of strategyNames()) {
      const report = await simulate('--strategy', strategy, '--sites', '5', '--rounds', '2');
      expect(
        report.rounds.map((r) => r.sites),
        strategy,
      ).toEqual([5, 5]);
      expect(report.final.accuracy, strategy).toBeGreaterThan(0.8);
    }
  });

  it("FedProx's mu reaches the sites' training", async () => {
    const fedavg = await simulate('--rounds', '1');
    const loose = await simulate('--rounds', '1', '--strategy', 'fedprox');
    const tight = await simulate(
      '--rounds',
      '1',
      '--strategy',
      'fedprox',
      '--strategy-config',
      '{"proximalMu":1000}',
    );
    // A small mu trains nearly as FedAvg; a huge one holds the sites at the global model.
    expect(Math.abs(loose.final.loss - fedavg.final.loss)).toBeLessThan(0.01);
    expect(loose.final.loss).not.toBe(fedavg.final.loss);
    expect(tight.final.loss).toBeGreaterThan(fedavg.final.loss + 0.2);
  });

  it("two x100-scaling sites ruin FedAvg's model but not the median's", async () => {
    const setting = ['--rounds', '5', '--seed', '1'];
    const attack = ['--byzantine', '2', '--attack', 'scale'];
    const honest = await simulate(...setting);
    const fedavg = await simulate(...setting, ...attack);
    const median = await simulate(...setting, ...attack, '--strategy', 'median');
    expect(honest.final.accuracy).toBeGreaterThan(0.95);
    expect(honest.final.loss).toBeLessThan(0.1);
    // The scaled update still points downhill on WDBC, so FedAvg's accuracy suffers less than its
    // test loss, which the overshoots multiply.
    expect(fedavg.final.loss).toBeGreaterThan(0.4);
    expect(Math.max(...fedavg.rounds.map((r) => r.loss))).toBeGreaterThan(3);
    expect(fedavg.final.accuracy).toBeLessThan(honest.final.accuracy);
    expect(median.final.loss).toBeLessThan(0.1);
    expect(median.final.accuracy).toBeGreaterThan(0.95);
  });

  it('keeps rounds in --data-dir and continues them exactly', async () => {
    const data = join(dir, 'run');
    const args = ['--sites', '5', '--strategy', 'fedadam', '--partition', 'shards'];
    const first = await simulate(...args, '--rounds', '2', '--data-dir', data);
    // As if stopped after round 2's commit, before its report line was written.
    await writeFile(
      join(data, 'report.json'),
      JSON.stringify({ rounds: first.rounds.slice(0, 1), final: {} }),
    );
    const resumed = await simulate(...args, '--rounds', '3', '--data-dir', data);
    const whole = await simulate(...args, '--rounds', '3');
    expect(resumed.rounds[0]).toEqual(first.rounds[0]);
    const { durationMs: _, ...round2 } = first.rounds[1]!;
    expect(resumed.rounds[1]).toMatchObject(round2);
    expect(resumed.rounds.map((r) => r.loss)).toEqual(whole.rounds.map((r) => r.loss));
    const index = JSON.parse(await readFile(join(data, 'rounds.json'), 'utf8')) as {
      head: { round: number; strategyState: { strategy: string } };
    };
    expect(index.head.round).toBe(3);
    expect(index.head.strategyState.strategy).toBe('fedadam');
    const other = await failure(...args, '--rounds', '4', '--seed', '9', '--data-dir', data);
    expect(other.code).toBe(2);
    expect(other.line).toContain('holds a simulation with other settings (seed)');
  });

  it('sites whose policy requires secure aggregation decline a robust strategy, and the run says why', async () => {
    const policy = join(dir, 'strict-policy.json');
    await writeFile(policy, JSON.stringify({ secureAggregation: { required: true } }));
    const r = await failure('--strategy', 'median', '--policy', policy, '--sites', '5');
    expect(r.code).toBe(2);
    expect(r.line).toContain('round 1 was aborted: only 0 update(s) arrived');
    expect(r.line).toContain(
      '5 site(s) declined: the training round runs without secure aggregation',
    );
    expect(r.line).toContain("this site's policy requires secure aggregation");
    expect(r.line).toContain('Strategy "median" needs each site\'s update');
  });

  it('refuses bad options with a one-line error and exit code 2', async () => {
    const cases: [string[], string][] = [
      [['--strategy', 'bogus'], 'unknown strategy "bogus"; the strategies are fedavg, fedavgm'],
      [
        ['--strategy', 'krum', '--strategy-config', '{"byzantine":-1}'],
        'invalid configuration for strategy "krum": byzantine',
      ],
      [['--partition', 'bogus'], '--partition must be one of iid, dirichlet, shards; got "bogus"'],
      [['--partition', 'dirichlet', '--alpha=-1'], '--alpha must be a positive number; got -1'],
      [
        ['--byzantine', '11', '--attack', 'scale'],
        '--byzantine 11 is more than the 10 sites (--sites)',
      ],
      [['--byzantine', '2'], '--byzantine needs --attack scale, sign-flip or noise'],
      [['--attack', 'sign-flip'], '--attack sign-flip needs --byzantine N'],
      [['--model', '{"kind":'], '--model must be JSON'],
      [['--model', '{"kind":"mlp","inputDim":30}'], '--model: spec.hidden'],
      [['--model', '{"kind":"logistic","inputDim":12}'], '--model: inputDim is 12 but'],
      [
        ['--data', join(dir, 'missing.csv')],
        `--data: cannot read data file ${join(dir, 'missing.csv')}: no such file`,
      ],
      [
        ['--sites', '50'],
        '--sites 50: the 455 training rows cannot give every site at least 10 rows',
      ],
      [['--fraction', '0'], '--fraction must be in (0, 1]; got 0'],
      [['--policy', join(dir, 'nope.json')], '--policy: site policy'],
    ];
    for (const [argv, message] of cases) {
      const r = await failure(...argv);
      expect(r.code, argv.join(' ')).toBe(2);
      expect(r.line, argv.join(' ')).toContain(message);
      expect(r.line).toMatch(/^confide simulate: /);
    }
  });

  it('runs as the confide command: stdout holds the report alone', async () => {
    const r = await runCli(
      ['simulate', '--rounds', '1', '--sites', '4', '--json'],
      cliEnv(),
      60_000,
    );
    expect(r.code).toBe(0);
    const report = JSON.parse(r.stdout) as Report;
    expect(report.rounds).toHaveLength(1);
    expect(report.final.accuracy).toBeGreaterThan(0.8);
  });
});
