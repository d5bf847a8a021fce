import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Dataset, Metrics, ModelSpec } from '@confide/ml';
import type { ClientNode, BackendPreference, SitePolicy } from '@confide/client-node';
import { generateIdentity } from '@confide/protocol';
import { computeEpsilon, shareNoiseMultiplier } from '@confide/differential-privacy';
import { createThrowawayCa } from '../tls-ca';
import { auditVerify } from './audit';
import { ApiClient } from '../api-client';
import { CliError } from '../command';

/** The demo's data: the Wisconsin breast cancer set that ships with the repository. */
export const DEFAULT_DATA = fileURLToPath(
  new URL('../../../../datasets/breast-cancer-wisconsin.csv', import.meta.url),
);

interface RoundReport {
  round: number;
  accuracy: number;
  auc: number | null;
  loss: number;
  f1: number;
  sites: number;
  durationMs: number;
}

/** Settings of one demo run. */
export interface DemoOptions {
  sites: number;
  rounds: number;
  partition: 'iid' | 'dirichlet';
  alpha: number;
  data: string;
  label: string;
  seed: number;
  epochs: number;
  batchSize: number;
  learningRate: number;
  optimizer: 'sgd' | 'adam';
  /** Differential privacy: off, or a level with each site's budget; z calibrated when null. */
  dp:
    | { level: 'none' }
    | {
        level: 'record' | 'site';
        epsilonLimit: number;
        delta: number;
        noiseMultiplier: number | null;
        clipNorm: number;
      };
  model: ModelSpec | null;
  secureAggregation: boolean;
  /** One site vanishes at this secure-aggregation stage of the first round. */
  dropSiteAt: keyof typeof DROP_STAGES | null;
  backend: BackendPreference;
  dataDir: string | null;
  databaseUrl: string | null;
  log: (line: string) => void;
}

/** Stages at which `--drop-site-at` makes a site vanish, and the node's hook for each. */
export const DROP_STAGES = { sharing: 'share', collecting: 'mask', unmasking: 'unmask' } as const;

/** The demo's report (the `--json` output). */
export interface DemoReport {
  federationId: string;
  database: string;
  backend: string;
  dataset: {
    file: string;
    rows: number;
    features: number;
    trainRows: number;
    testRows: number;
    siteRows: number[];
  };
  rounds: RoundReport[];
  final: { accuracy: number; auc: number | null; loss: number; f1: number };
  centralized: { accuracy: number; auc: number | null; loss: number; f1: number; epochs: number };
  privacy: {
    level: 'none' | 'record' | 'site';
    delta: number | null;
    noiseMultiplier: number | null;
    sites: Array<{
      site: string;
      epsilon: number;
      limit: number | null;
      roundsLeft: number | null;
    }>;
  };
  ledger: { entries: number; verified: boolean; discrepancies: number };
  /** The policy every demo site enforced (the default one, or one that allows plain rounds). */
  policy: unknown;
  /** How the sites reached the aggregator: TLS with a throwaway CA, its key given to them. */
  transport: { tls: boolean; serverKeyPinned: boolean; serverKey: string };
  secureAggregation: {
    enabled: boolean;
    threshold: number | null;
    graph: string | null;
    droppedSites: number;
    /** Largest |aggregator's average - plain average of the same updates| over rounds and coordinates. */
    maxAbsErrorVsPlain: number;
  };
  /** Why the run stopped early (e.g. budgets spent), else null. */
  stopped: string | null;
  durationMs: number;
}

/**
 * Runs a whole federation on this machine: an aggregator on the embedded database (or DATABASE_URL),
 * `sites` client nodes over loopback WebSockets each holding a shard of the data, `rounds` FedAvg
 * rounds evaluated on a stratified held-out 20%, and the same model trained centrally as the baseline.
 */
export async function runDemo(o: DemoOptions): Promise<DemoReport> {
  const started = Date.now();
  // Loaded here, not at the top: the other commands must not pay for tfjs and NestJS.
  const [
    {
      buildModel,
      concatDatasets,
      evaluateModel,
      initialWeights,
      loadCsv,
      partitionDirichlet,
      partitionIid,
      setModelWeights,
      standardize,
      stratifiedSplit,
      trainModel,
    },
    { startAggregator },
    { ClientNode, DEFAULT_POLICY, parsePolicy, policyJson, selectBackend },
  ] = await Promise.all([
    import('@confide/ml'),
    import('@confide/aggregator'),
    import('@confide/client-node'),
  ]);
  const all = await loadCsv(o.data, { label: o.label });
  const { train, test } = stratifiedSplit(all, 0.2, o.seed);
  const shards =
    o.partition === 'iid'
      ? partitionIid(train, o.sites, o.seed)
      : partitionDirichlet(train, o.sites, o.alpha, o.seed);
  const evalShards = partitionIid(test, o.sites, o.seed + 1);
  const backend = await selectBackend(o.backend);
  o.log(
    `data: ${all.numRows} rows x ${all.numFeatures} features from ${o.data}; ${train.numRows} train / ${test.numRows} held-out test` +
      `; sites hold ${shards.map((s) => s.numRows).join(', ')} rows (${o.partition}${o.partition === 'dirichlet' ? `, alpha ${o.alpha}` : ''})`,
  );
  o.log(`tfjs backend: ${backend.backend}`);

  const tmp = o.dataDir || o.databaseUrl ? null : await mkdtemp(join(tmpdir(), 'confide-demo-'));
  // TLS with a throwaway CA the demo's sites and admin client trust explicitly; each site is given
  // the aggregator's identity key rather than pinning the first key it sees.
  const tls = await createThrowawayCa({ hostnames: ['localhost'] });
  const agg = await startAggregator({
    port: 0,
    databaseUrl: o.databaseUrl ?? undefined,
    dataDir: o.dataDir ?? tmp ?? undefined,
    tls: { cert: tls.certPem, key: tls.keyPem },
  });
  const nodes: ClientNode[] = [];
  try {
    o.log(
      `aggregator on ${agg.url} (${agg.db.description}); TLS with a throwaway CA (${tls.caFingerprint.slice(0, 23)}...), identity key ${agg.serverKeyFingerprint}`,
    );
    const token = agg.initialAdminToken ?? (await agg.createToken('admin', 'demo'));
    const api = new ApiClient(agg.url, token, { ca: tls.caCertPem });
    // The sites' policy: the default one, unless an option lowers protection, which the policy must
    // then allow (a site decides that, not the aggregator): said out loud.
    let policy: SitePolicy = DEFAULT_POLICY;
    if (!o.secureAggregation) {
      policy = parsePolicy({ secureAggregation: { required: false }, revealOwnMetrics: true });
      o.log(
        'WARNING: --no-secure-aggregation: the aggregator sees each site’s update; the demo sites run a policy that allows it (secureAggregation.required false) and reveal their own metrics',
      );
    } else if (o.sites < DEFAULT_POLICY.minSitesPerSum) {
      policy = parsePolicy({ minSitesPerSum: o.sites });
      o.log(
        `WARNING: --sites ${o.sites}: a secure sum over ${o.sites} sites reveals more than the default policy's ${DEFAULT_POLICY.minSitesPerSum}; the demo sites run a policy that allows sums of ${o.sites}`,
      );
    }
    const spec: ModelSpec = o.model ?? { kind: 'logistic', inputDim: all.numFeatures };
    // Calibrate the noise so that every site's whole run stays within its budget (a little under it).
    let dpBody: Record<string, unknown> = { level: 'none' };
    let noiseMultiplier: number | null = null;
    if (o.dp.level !== 'none') {
      // Each round's evaluation counts are a release too (the default share of the budget, 10%).
      const statisticsNoiseMultiplier = shareNoiseMultiplier({
        epsilon: o.dp.epsilonLimit,
        delta: o.dp.delta,
        share: DEMO_STATISTICS_SHARE,
        releases: o.rounds,
      });
      noiseMultiplier =
        o.dp.noiseMultiplier ??
        calibrateNoise(
          o,
          shards.map((s) => s.numRows),
          statisticsNoiseMultiplier,
        );
      dpBody = {
        level: o.dp.level,
        noiseMultiplier,
        clipNorm: o.dp.clipNorm,
        delta: o.dp.delta,
        epsilonLimit: o.dp.epsilonLimit,
        statisticsShare: DEMO_STATISTICS_SHARE,
        evaluationRounds: o.rounds,
        statisticsNoiseMultiplier,
      };
      o.log(
        `differential privacy: ${o.dp.level} level, noise multiplier ${noiseMultiplier.toFixed(3)}, clip ${o.dp.clipNorm}, each site's budget epsilon ${o.dp.epsilonLimit} at delta ${o.dp.delta} (evaluation sums noised with multiplier ${statisticsNoiseMultiplier.toFixed(1)}, charged too)`,
      );
    }
    const fed = await api.post<{ id: string; featureStats: unknown }>('/api/v1/federations', {
      name: `demo-${new Date().toISOString().replace(/[:.]/g, '-')}`,
      modelSpec: spec,
      minSites: Math.min(2, o.sites),
      localEpochs: o.epochs,
      batchSize: o.batchSize,
      learningRate: o.learningRate,
      optimizer: o.optimizer,
      dp: dpBody,
      secureAggregation: { enabled: o.secureAggregation },
      seed: o.seed,
      roundTimeoutSeconds: 120,
      evaluationTimeoutSeconds: 60,
    });
    const welcomed: Promise<void>[] = [];
    const sentUpdates = new Map<string, { update: Float32Array; numExamples: number }>();
    for (let i = 0; i < o.sites; i++) {
      const identity = generateIdentity();
      const name = `hospital-${i + 1}`;
      const site = await api.post<{ id: string }>(`/api/v1/federations/${fed.id}/sites`, {
        name,
        publicKey: identity.publicKey,
      });
      await api.post(`/api/v1/federations/${fed.id}/sites/${site.id}/approve`);
      let ready!: () => void;
      welcomed.push(new Promise((r) => (ready = r)));
      const node = new ClientNode({
        server: agg.url,
        federationId: fed.id,
        identity,
        data: shards[i]!,
        evalData: evalShards[i]!,
        policy,
        serverKey: agg.serverKey,
        ca: tls.caCertPem,
        onWelcome: () => ready(),
        reconnectDelayMs: 200,
        onUpdate: (u) =>
          sentUpdates.set(`${name}#${u.round}`, { update: u.update, numExamples: u.numExamples }),
        ...(i === 0 && o.dropSiteAt ? { dropAt: DROP_STAGES[o.dropSiteAt] } : {}),
      });
      nodes.push(node);
      void node.run();
    }
    await Promise.all(welcomed);
    o.log(`${o.sites} sites enrolled, approved and connected; starting ${o.rounds} rounds`);

    const run = await api.post<{ id: string }>(`/api/v1/federations/${fed.id}/runs`, {
      rounds: o.rounds,
    });
    const model = buildModel(spec);
    let testStd: Dataset | null = null;
    const reports: RoundReport[] = [];
    let last: Metrics | null = null;
    let maxAbsErrorVsPlain = 0;
    let droppedSites = 0;
    let secure: { threshold: number; graph: string } | null = null;
    let stopped: string | null = null;
    for (;;) {
      const [{ rounds }, runs] = await Promise.all([
        api.get<{
          rounds: Array<{
            number: number;
            state: string;
            reason: string | null;
            modelVersionId: string;
            baseModelVersionId: string;
            durationMs: number;
            participants: { name: string; status: string }[];
            metrics: {
              secureAggregation?: { threshold: number; graph: string; dropped: number } | null;
            } | null;
          }>;
        }>(`/api/v1/federations/${fed.id}/rounds`),
        api.get<Array<{ id: string; status: string; reason: string | null }>>(
          `/api/v1/federations/${fed.id}/runs`,
        ),
      ]);
      for (const r of rounds) {
        if (r.number <= reports.length || r.state !== 'committed') continue;
        testStd ??= standardize(test, await statsOf(api, fed.id, train));
        const { weights } = await api.modelWeights(fed.id, r.modelVersionId);
        setModelWeights(model, weights);
        // The aggregator's average against the plain average of the same updates, computed here.
        const base = (await api.modelWeights(fed.id, r.baseModelVersionId)).weights;
        const contributors = r.participants.filter(
          (p) => p.status === 'evaluated' || p.status === 'submitted',
        );
        const mine = contributors.map((p) => sentUpdates.get(`${p.name}#${r.number}`));
        if (mine.every((u) => u !== undefined) && mine.length > 0) {
          const w = mine.map((u) => (o.dp.level === 'site' ? 1 : u.numExamples));
          const total = w.reduce((a, b) => a + b, 0);
          for (let k = 0; k < weights.length; k++) {
            let plain = 0;
            mine.forEach((u, j) => (plain += (w[j]! * u.update[k]!) / total));
            maxAbsErrorVsPlain = Math.max(
              maxAbsErrorVsPlain,
              Math.abs(weights[k]! - base[k]! - plain),
            );
          }
        }
        const sa = r.metrics?.secureAggregation;
        if (sa) {
          secure = { threshold: sa.threshold, graph: sa.graph };
          droppedSites += sa.dropped;
        }
        last = await evaluateModel(model, spec, testStd);
        const rep: RoundReport = {
          round: r.number,
          accuracy: last.accuracy,
          auc: last.auc,
          loss: last.loss,
          f1: last.f1,
          sites: r.participants.filter((p) => p.status === 'evaluated' || p.status === 'submitted')
            .length,
          durationMs: r.durationMs,
        };
        reports.push(rep);
        o.log(
          `round ${String(rep.round).padStart(2)}/${o.rounds}  accuracy ${rep.accuracy.toFixed(4)}  auc ${rep.auc?.toFixed(4) ?? '-'}  loss ${rep.loss.toFixed(4)}  sites ${rep.sites}  ${rep.durationMs} ms`,
        );
      }
      const mine = runs.find((x) => x.id === run.id);
      if (
        mine &&
        mine.status !== 'running' &&
        reports.length >= rounds.filter((r) => r.state === 'committed').length
      ) {
        if (mine.status !== 'completed') {
          stopped = mine.reason ?? 'no reason given';
          o.log(`the run stopped early: ${stopped}`);
        }
        break;
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    model.dispose();
    if (!last || !testStd)
      throw new CliError(`no round was committed${stopped ? `: ${stopped}` : ''}`);

    // The baseline: the same model and initial weights, trained centrally on the pooled training data
    // for as many epochs as each site trained in total.
    const pooled = standardize(concatDatasets(shards), await statsOf(api, fed.id, train));
    const central = buildModel(spec);
    setModelWeights(central, initialWeights(spec, o.seed));
    const epochs = o.rounds * o.epochs;
    await trainModel(central, spec, pooled, {
      epochs,
      batchSize: o.dp.level === 'none' ? o.batchSize : 32,
      learningRate: o.dp.level === 'none' ? o.learningRate : 0.05,
      optimizer: o.dp.level === 'none' ? o.optimizer : 'adam',
      shuffleSeed: o.seed,
    });
    const c = await evaluateModel(central, spec, testStd);
    central.dispose();
    // The privacy each site spent, and the ledger verified by the auditor's code path.
    const privacy = await api.get<{
      level: DemoReport['privacy']['level'];
      delta: number | null;
      sites: Array<{
        name: string;
        epsilon: number;
        limit: number | null;
        roundsLeft: number | null;
      }>;
    }>(`/api/v1/federations/${fed.id}/privacy`);
    const { report: verification, ledger } = await auditVerify({
      kind: 'server',
      server: agg.url,
      token,
      federationId: fed.id,
      ca: tls.caCertPem,
    });
    if (privacy.level !== 'none') {
      o.log(
        `privacy spent (epsilon at delta ${String(privacy.delta)}): ` +
          privacy.sites
            .map((s) => `${s.name} ${s.epsilon.toFixed(3)}/${String(s.limit)}`)
            .join(', ') +
          `; ledger: ${ledger.entries.length} signed entries, ${verification.ok ? 'verified' : `NOT verified (${verification.discrepancies.length} discrepancies)`}`,
      );
    }
    o.log(
      `final federated: accuracy ${last.accuracy.toFixed(4)} auc ${last.auc?.toFixed(4) ?? '-'}; centralized baseline (${epochs} epochs): accuracy ${c.accuracy.toFixed(4)} auc ${c.auc?.toFixed(4) ?? '-'}`,
    );
    return {
      federationId: fed.id,
      database: agg.db.description,
      backend: backend.backend,
      dataset: {
        file: o.data,
        rows: all.numRows,
        features: all.numFeatures,
        trainRows: train.numRows,
        testRows: test.numRows,
        siteRows: shards.map((s) => s.numRows),
      },
      rounds: reports,
      final: { accuracy: last.accuracy, auc: last.auc, loss: last.loss, f1: last.f1 },
      centralized: { accuracy: c.accuracy, auc: c.auc, loss: c.loss, f1: c.f1, epochs },
      privacy: {
        level: privacy.level,
        delta: privacy.delta,
        noiseMultiplier,
        sites: privacy.sites.map((s) => ({
          site: s.name,
          epsilon: s.epsilon,
          limit: s.limit,
          roundsLeft: s.roundsLeft,
        })),
      },
      ledger: {
        entries: ledger.entries.length,
        verified: verification.ok,
        discrepancies: verification.discrepancies.length,
      },
      policy: policyJson(policy),
      transport: {
        tls: agg.url.startsWith('https:'),
        serverKeyPinned: nodes.every((n) => n.serverKey.pinned),
        serverKey: agg.serverKeyFingerprint,
      },
      secureAggregation: {
        enabled: o.secureAggregation,
        threshold: secure?.threshold ?? null,
        graph: secure?.graph ?? null,
        droppedSites,
        maxAbsErrorVsPlain,
      },
      stopped,
      durationMs: Date.now() - started,
    };
  } finally {
    for (const n of nodes) n.stop();
    await agg.close();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  }
}

/** The share of each site's budget the demo sets aside for its evaluation releases. */
const DEMO_STATISTICS_SHARE = 0.1;

/**
 * The smallest noise multiplier with which every site's planned run (rounds x local steps at its own
 * sampling rate, plus one evaluation release a round at `evalNoise`) stays within 97% of its budget,
 * composed as the ledger composes it.
 */
function calibrateNoise(o: DemoOptions, siteRows: number[], evalNoise: number): number {
  if (o.dp.level === 'none') return 0;
  const dp = o.dp;
  const target = 0.97 * dp.epsilonLimit;
  let z = 0;
  for (const n of dp.level === 'record' ? siteRows : [1]) {
    const q = dp.level === 'record' ? Math.min(1, o.batchSize / n) : 1;
    const steps = dp.level === 'record' ? o.rounds * o.epochs * Math.round(1 / q) : o.rounds;
    const epsilon = (sigma: number): number =>
      computeEpsilon(
        {
          history: [
            { q, sigma, steps },
            { q: 1, sigma: evalNoise, steps: o.rounds },
          ],
        },
        dp.delta,
      ).epsilon;
    let lo = 0.01;
    let hi = 1;
    while (epsilon(hi) > target) {
      hi *= 2;
      if (hi > 1e6) {
        throw new CliError(
          `no noise multiplier keeps ${o.rounds} rounds within epsilon ${dp.epsilonLimit}: ask for fewer rounds or a larger budget`,
        );
      }
    }
    for (let i = 0; i < 60; i++) {
      const mid = (lo + hi) / 2;
      if (epsilon(mid) > target) lo = mid;
      else hi = mid;
    }
    z = Math.max(z, hi);
  }
  return z;
}

/**
 * The statistics the demo standardises its own held-out test set with: the federation's, or, when it
 * standardises locally (DP without feature bounds), those of the pooled training rows, which any site
 * with an IID shard approximates.
 */
async function statsOf(
  api: ApiClient,
  id: string,
  train: Dataset,
): Promise<{ mean: number[]; std: number[] }> {
  const { featureStats } = await api.get<{
    featureStats: { mean: number[]; std: number[] } | null;
  }>(`/api/v1/federations/${id}`);
  if (featureStats) return featureStats;
  const { combineFeatureStats, featureStatsPartial } = await import('@confide/ml');
  return combineFeatureStats([featureStatsPartial(train)]);
}
