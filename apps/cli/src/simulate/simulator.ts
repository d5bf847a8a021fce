import {
  StrategyError,
  buildStrategy,
  parseStrategyConfig,
  seededUniformRandom,
  type RoundRecord,
  type RoundStore,
  type UniformRandom,
} from '@confide/federated';
import {
  MlError,
  initialWeights,
  loadCsv,
  outputUnits,
  type Dataset,
  type ModelSpec,
} from '@confide/ml';
import { parsePolicy, type SitePolicy } from '@confide/client-node';
import { SimulationError } from './errors';
import { startFederation } from './federation';
import { TEST_FRACTION, holdOutTestSet, partitionSites } from './partition';
import type { TestMetrics } from './pool-messages';
import { reportOf, roundResult, type RoundResult, type SimulationReport } from './report';
import { REPORT_FILE, openRunDir, writeReport } from './run-dir';
import { ATTACK_DESCRIPTIONS, type AttackKind, type PartitionKind } from './settings';
import { TrainingPool } from './training-pool';
import { mix } from './virtual-site';

export type { RoundResult, SimulationReport } from './report';

/** Everything a simulation runs with (the CLI's options, checked). */
export interface SimulationOptions {
  sites: number;
  /** Client sampling: the share of the sites drawn each round. */
  fraction: number;
  rounds: number;
  strategy: string;
  /** The strategy's configuration as the user wrote it (JSON); undefined: its defaults. */
  strategyConfig?: unknown;
  partition: PartitionKind;
  alpha: number;
  /** A CSV file with a header line. */
  data: string;
  label: string;
  model: ModelSpec;
  epochs: number;
  batchSize: number;
  learningRate: number;
  /** How many sites (the first ones) send adversarial updates. */
  byzantine: number;
  attack: AttackKind | null;
  /** The virtual sites' policy; null: one that allows the plain rounds the simulator runs. */
  policy: SitePolicy | null;
  seed: number;
  /** Keep rounds and models here (resumable); null: in memory. */
  dataDir: string | null;
  /** The pool to train in; the process's shared pool by default. */
  pool?: TrainingPool;
  onProgress?: (event: SimulationProgress) => void;
}

/** Progress as the simulation runs. */
export type SimulationProgress =
  | { kind: 'setup'; lines: string[] }
  | { kind: 'round-started'; round: number; rounds: number; sites: number }
  | { kind: 'site-replied'; round: number; replied: number; sites: number }
  | { kind: 'round-ended'; rounds: number; result: RoundResult };

/** What a run used besides the report (for people and the benchmark). */
export interface SimulationSetup {
  trainRows: number;
  testRows: number;
  siteRows: number[];
  strategyConfig: unknown;
  backend: string | null;
}

/** The policy virtual sites run by default: it allows the plain (unmasked) rounds of the simulator. */
export function permissivePolicy(): SitePolicy {
  return parsePolicy(
    { secureAggregation: { required: false }, revealOwnMetrics: true },
    'simulated sites',
  );
}

/**
 * Runs a federated simulation: the data's stratified test share held out, the rest standardised
 * with its own statistics and dealt to `sites` virtual sites on the in-memory Grid, `rounds` rounds
 * of the round engine (the strategy from the registry, plain training), and after each round the
 * new model evaluated on the test set. Virtual sites train in the worker pool; with `dataDir` the
 * rounds and models persist there and a rerun with the same settings continues where it stopped.
 *
 * @example
 * const { report } = await runSimulation({ ...defaults, strategy: 'median', rounds: 20 });
 */
export async function runSimulation(
  o: SimulationOptions,
): Promise<{ report: SimulationReport; setup: SimulationSetup }> {
  checkOptions(o);
  const strategyConfig = input(() => parseStrategyConfig(o.strategy, o.strategyConfig));
  let roundRandom: UniformRandom = seededUniformRandom(o.seed);
  // One stream per round, so a run resumed from --data-dir draws what the whole run would have.
  const random: UniformRandom = () => roundRandom();
  const strategy = input(() => buildStrategy(o.strategy, o.strategyConfig, { random }));

  const all = await loadData(o);
  const { train, test } = holdOutTestSet(all, o.seed);
  const parts = partitionSites(train, {
    kind: o.partition,
    sites: o.sites,
    alpha: o.alpha,
    seed: o.seed,
  });
  const policy = o.policy ?? permissivePolicy();

  const pool = o.pool ?? TrainingPool.shared();
  const run = pool.load({ spec: o.model, sites: parts, test });
  const { store, previous } = await openRunDir(o, initialWeights(o.model, o.seed));
  const federation = startFederation({ o, pool, run, store, strategy, random, policy });
  o.onProgress?.({
    kind: 'setup',
    lines: describeSetup(o, all, train, test, parts, strategyConfig, pool),
  });
  const results = await catchUp(o, store, previous, async () =>
    pool.evaluate(run, await headWeights(store)),
  );
  while (results.length < o.rounds) {
    const started = Date.now();
    const records = await store.rounds();
    const next = Math.max((await store.head()).round, ...records.map((r) => r.round)) + 1;
    roundRandom = seededUniformRandom(mix(o.seed, next));
    const outcome = await federation.runner.runRound(federation.signal);
    const failure = federation.failure();
    if (failure !== null) throw asRunError(failure);
    if (outcome.status !== 'committed') {
      throw abortError(outcome, o, strategy.needsIndividualUpdates);
    }
    const metrics = await pool.evaluate(run, await headWeights(store));
    const result = roundResult(outcome, metrics, Date.now() - started);
    results.push(result);
    if (o.dataDir) await writeReport(o.dataDir, results);
    o.onProgress?.({ kind: 'round-ended', rounds: o.rounds, result });
  }
  return {
    report: reportOf(results),
    setup: {
      trainRows: train.numRows,
      testRows: test.numRows,
      siteRows: parts.map((p) => p.numRows),
      strategyConfig,
      backend: pool.backend,
    },
  };
}

async function headWeights(store: RoundStore): Promise<Float32Array> {
  return (await store.head()).weights;
}

/**
 * The report's rounds of a resumed run, checked against the store's: a run stopped between a
 * round's commit and its report line gets that line now (from the committed model).
 */
async function catchUp(
  o: SimulationOptions,
  store: RoundStore,
  previous: RoundResult[],
  evaluate: () => Promise<TestMetrics>,
): Promise<RoundResult[]> {
  const results = [...previous];
  const done = (await store.rounds()).filter((r) => r.status === 'committed');
  const unreported = done.at(-1);
  if (o.dataDir && unreported && done.length === results.length + 1) {
    const ms = (unreported.endedAt ?? unreported.startedAt) - unreported.startedAt;
    results.push(roundResult(unreported, await evaluate(), ms));
    await writeReport(o.dataDir, results);
  }
  if (done.length !== results.length) {
    throw new SimulationError(
      'input',
      `--data-dir ${o.dataDir}: ${REPORT_FILE} and the stored rounds disagree; use a fresh directory`,
    );
  }
  return results;
}

function checkOptions(o: SimulationOptions): void {
  const bad = (why: string): never => {
    throw new SimulationError('input', why);
  };
  const int = (name: string, v: number, min: number): void => {
    if (!Number.isSafeInteger(v) || v < min)
      bad(`--${name} must be an integer >= ${min}, got ${v}`);
  };
  int('sites', o.sites, 1);
  int('rounds', o.rounds, 1);
  int('epochs', o.epochs, 1);
  int('batch-size', o.batchSize, 1);
  int('byzantine', o.byzantine, 0);
  int('seed', o.seed, 0);
  if (!(o.fraction > 0 && o.fraction <= 1)) bad(`--fraction must be in (0, 1], got ${o.fraction}`);
  if (!(o.learningRate > 0) || !Number.isFinite(o.learningRate)) {
    bad(`--learning-rate must be a positive number, got ${o.learningRate}`);
  }
  if (o.partition === 'dirichlet' && !(o.alpha > 0 && Number.isFinite(o.alpha))) {
    bad(`--alpha must be a positive number, got ${o.alpha}`);
  }
  if (o.byzantine > o.sites) {
    bad(`--byzantine ${o.byzantine} is more than the ${o.sites} sites (--sites)`);
  }
  if (o.byzantine > 0 && o.attack === null) {
    bad('--byzantine needs --attack scale, sign-flip or noise');
  }
  if (o.byzantine === 0 && o.attack !== null) bad(`--attack ${o.attack} needs --byzantine N`);
}

/** A strategy error from the user's choices is an input error. */
function input<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof StrategyError) throw new SimulationError('input', e.message);
    throw e;
  }
}

async function loadData(o: SimulationOptions): Promise<Dataset> {
  let all: Dataset;
  try {
    all = await loadCsv(o.data, { label: o.label });
  } catch (e) {
    if (e instanceof MlError) throw new SimulationError('input', `--data: ${e.message}`);
    throw e;
  }
  if (all.numFeatures !== o.model.inputDim) {
    throw new SimulationError(
      'input',
      `--model: inputDim is ${o.model.inputDim} but ${o.data} has ${all.numFeatures} feature ` +
        `columns besides the label "${o.label}"`,
    );
  }
  const units = outputUnits(o.model);
  const classes = units === 1 ? 2 : units;
  const top = all.labels.reduce((m, l) => Math.max(m, l), 0);
  if (top >= classes) {
    throw new SimulationError(
      'input',
      `--label ${o.label}: the data has label ${top}; the model's output has ${classes} classes ` +
        `(0..${classes - 1})`,
    );
  }
  if (all.numRows < 2) throw new SimulationError('input', `--data: ${o.data} has too few rows`);
  return all;
}

function asRunError(e: unknown): SimulationError {
  return e instanceof SimulationError
    ? e
    : new SimulationError('run', e instanceof Error ? e.message : String(e));
}

/** Why the run stops at an aborted round, with the sites' reasons when they declined. */
function abortError(
  record: RoundRecord,
  o: SimulationOptions,
  needsUpdates: boolean,
): SimulationError {
  const declined = record.participants.filter((p) => p.status === 'declined');
  let why = `round ${record.round} was aborted: ${record.reason ?? 'no reason recorded'}`;
  if (declined.length === 0) return new SimulationError('run', why);
  const reasons = [...new Set(declined.map((p) => p.detail ?? 'no reason given'))];
  why += `; ${declined.length} site(s) declined: ${reasons.join('; ')}. `;
  why += needsUpdates
    ? `Strategy "${o.strategy}" needs each site's update, which secure aggregation would hide, so its sites must allow plain rounds`
    : 'The simulator runs plain rounds (no secure aggregation, no DP)';
  why += ': give --policy a policy with secureAggregation.required false and no dp';
  return new SimulationError(declined.length === record.participants.length ? 'input' : 'run', why);
}

function describeSetup(
  o: SimulationOptions,
  all: Dataset,
  train: Dataset,
  test: Dataset,
  parts: Dataset[],
  strategyConfig: unknown,
  pool: TrainingPool,
): string[] {
  const lines = [
    `data: ${all.numRows} rows x ${all.numFeatures} features from ${o.data}; ${train.numRows} ` +
      `train / ${test.numRows} test (stratified ${TEST_FRACTION * 100}%, standardised with the ` +
      "training rows' statistics)",
    `sites: ${o.sites} (${o.partition}${o.partition === 'dirichlet' ? `, alpha ${o.alpha}` : ''}` +
      `) holding ${parts.map((p) => p.numRows).join(', ')} rows` +
      (o.fraction < 1 ? `; a share of ${o.fraction} drawn each round` : ''),
    `strategy: ${o.strategy} ${JSON.stringify(strategyConfig)}; model ${JSON.stringify(o.model)}; ` +
      `${o.epochs} local epoch(s), batch ${o.batchSize}, adam at ${o.learningRate}`,
    `training: worker pool of up to ${pool.maxWorkers} thread(s); seed ${o.seed}`,
  ];
  if (o.byzantine > 0 && o.attack) {
    lines.push(
      `byzantine: sites 1-${o.byzantine} send ${o.attack} updates (${ATTACK_DESCRIPTIONS[o.attack]})`,
    );
  }
  if (o.dataDir) lines.push(`rounds and models kept in ${o.dataDir}`);
  return lines;
}
