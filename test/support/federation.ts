import { generateIdentity, type IdentityKeyPair } from '@confide/protocol';
import { loadCsv, partitionIid, type Dataset } from '@confide/ml';
import {
  startAggregator,
  type AggregatorOptions,
  type RoundRow,
  type RunningAggregator,
} from '@confide/aggregator';
import { ClientNode, type ClientNodeOptions } from '@confide/client-node';
import { ApiClient } from '../../apps/cli/src/api-client';
import { freshDatabaseUrl } from './database';

export const DATASET = new URL('../../datasets/breast-cancer-wisconsin.csv', import.meta.url)
  .pathname;

/** Polls `check` until it returns a value other than undefined/false, or fails after `timeoutMs`. */
export async function waitUntil<T>(
  check: () => Promise<T | undefined | false> | T | undefined | false,
  timeoutMs: number,
  what: string,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** A test aggregator on a fresh database (PGlite in memory, or a new database on DATABASE_URL's server). */
export async function testAggregator(opts: AggregatorOptions = {}): Promise<{
  agg: RunningAggregator;
  api: ApiClient;
  close: () => Promise<void>;
}> {
  const db = await freshDatabaseUrl();
  const agg = await startAggregator({ databaseUrl: db.url, reconnectGraceMs: 300, ...opts });
  const api = new ApiClient(agg.url, agg.initialAdminToken!);
  return {
    agg,
    api,
    close: async () => {
      await agg.close();
      await db.drop();
    },
  };
}

export interface Federation {
  id: string;
  currentModelVersionId: string;
}

/** Creates a federation over the breast-cancer data's 30 features. */
export function createFederation(
  api: ApiClient,
  overrides: Record<string, unknown> = {},
): Promise<Federation> {
  return api.post<Federation>('/api/v1/federations', {
    name: `bc-${Math.random().toString(36).slice(2, 8)}`,
    modelSpec: { kind: 'logistic', inputDim: 30 },
    minSites: 2,
    localEpochs: 2,
    batchSize: 32,
    learningRate: 0.05,
    optimizer: 'adam',
    seed: 7,
    roundTimeoutSeconds: 60,
    evaluationTimeoutSeconds: 20,
    ...overrides,
  });
}

/**
 * Per-feature bounds for the breast-cancer data, declared as a federation's data schema would (a
 * margin around the data's range): DP federations with bounds standardise from a secure sum.
 */
export async function featureBounds(): Promise<{ lo: number[]; hi: number[] }> {
  const data = await loadCsv(DATASET, { label: 'diagnosis' });
  const d = data.numFeatures;
  const lo = new Array<number>(d).fill(Infinity);
  const hi = new Array<number>(d).fill(-Infinity);
  for (let r = 0; r < data.numRows; r++) {
    for (let j = 0; j < d; j++) {
      const x = data.features[r * d + j]!;
      lo[j] = Math.min(lo[j]!, x);
      hi[j] = Math.max(hi[j]!, x);
    }
  }
  return {
    lo: lo.map((x, j) => x - 0.1 * (hi[j]! - x)),
    hi: hi.map((x, j) => x + 0.1 * (x - lo[j]!)),
  };
}

export interface TestSite {
  name: string;
  identity: IdentityKeyPair;
  siteId: string;
  data: Dataset;
}

/** Enrols (and by default approves) `n` sites, each with an IID shard of the breast-cancer data. */
export async function enrolSites(
  api: ApiClient,
  federationId: string,
  n: number,
  approve = true,
): Promise<TestSite[]> {
  const data = await loadCsv(DATASET, { label: 'diagnosis' });
  const shards = partitionIid(data, n, 3);
  const sites: TestSite[] = [];
  for (let i = 0; i < n; i++) {
    const identity = generateIdentity();
    const name = `hospital-${i + 1}`;
    const site = await api.post<{ id: string }>(`/api/v1/federations/${federationId}/sites`, {
      name,
      publicKey: identity.publicKey,
    });
    if (approve) await api.post(`/api/v1/federations/${federationId}/sites/${site.id}/approve`);
    sites.push({ name, identity, siteId: site.id, data: shards[i]! });
  }
  return sites;
}

/** Starts a client node for a test site and resolves once it has logged in. */
export async function startNode(
  agg: RunningAggregator,
  federationId: string,
  site: TestSite,
  extra: Partial<ClientNodeOptions> = {},
): Promise<{ node: ClientNode; stopped: Promise<unknown> }> {
  let welcomed!: () => void;
  const ready = new Promise<void>((r) => (welcomed = r));
  const node = new ClientNode({
    server: agg.url,
    federationId,
    identity: site.identity,
    data: site.data,
    reconnectDelayMs: 100,
    ...extra,
    onWelcome: (m) => {
      welcomed();
      extra.onWelcome?.(m);
    },
  });
  const stopped = node.run();
  await Promise.race([
    ready,
    stopped.then((e) => {
      throw new Error(`node ${site.name} stopped before logging in: ${String(e)}`);
    }),
  ]);
  return { node, stopped };
}

/** Waits until the federation's run has ended; returns it. */
export async function waitForRun(
  api: ApiClient,
  federationId: string,
  runId: string,
  timeoutMs = 60_000,
): Promise<{ status: string; reason: string | null; roundsDone: number }> {
  return waitUntil(
    async () => {
      const runs = await api.get<
        Array<{ id: string; status: string; reason: string | null; roundsDone: number }>
      >(`/api/v1/federations/${federationId}/runs`);
      const run = runs.find((r) => r.id === runId);
      return run && run.status !== 'running' ? run : undefined;
    },
    timeoutMs,
    `run ${runId} to end`,
  );
}

/** A round as the REST API returns it: RoundRow with its dates as JSON strings. */
export type RoundView = Omit<RoundRow, 'deadline' | 'startedAt' | 'endedAt'> & {
  deadline: string | null;
  startedAt: string;
  endedAt: string | null;
};

/** A federation's rounds, as GET /api/v1/federations/:id/rounds lists them. */
export async function listRounds(api: ApiClient, federationId: string): Promise<RoundView[]> {
  return (await api.get<{ rounds: RoundView[] }>(`/api/v1/federations/${federationId}/rounds`))
    .rounds;
}
