/**
 * The federation under test, as real processes: one `confide server` on a persistent data directory
 * (PGlite, or DATABASE_URL's Postgres in a fresh database) and one `confide node join` per site, each
 * connecting through the chaos proxy. Everything here can be killed with SIGKILL and started again.
 */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createIdentityFiles } from '../../apps/client-node/src/keys';
import { datasetToCsv, parseCsv, partitionIid } from '@confide/ml';
import { ApiClient } from '../../apps/cli/src/api-client';
import { cliEnv, type CliProcess } from '../support/cli';
import { freshDatabaseUrl } from '../support/database';
import { DATASET } from '../support/federation';
import {
  freePort,
  nodeJoinArgs,
  ProcessGroup,
  startServerProcess,
  type ServerInfo,
} from '../support/processes';
import { startProxy, type ChaosProxy } from './proxy';

/** The settings of the federation the chaos run drives. */
export interface ClusterOptions {
  dir: string;
  sites: number;
  seed: number;
  /** Round (training) deadline and evaluation deadline, in seconds. */
  roundTimeoutSeconds: number;
  evaluationTimeoutSeconds: number;
}

export interface ChaosSite {
  name: string;
  id: string;
  publicKey: string;
  keyDir: string;
  data: string;
  node: CliProcess | null;
  /** Every process this site ran, for the logs of a failure. */
  history: CliProcess[];
}

/** The running federation. */
export class Cluster {
  readonly group = new ProcessGroup();
  server: CliProcess | null = null;
  info!: ServerInfo;
  api!: ApiClient;
  token!: string;
  federationId!: string;
  proxy!: ChaosProxy;
  sites: ChaosSite[] = [];
  private port = 0;
  private dropDatabase: () => Promise<void> = async () => undefined;
  private databaseUrl: string | undefined;
  /** Every aggregator process, for the logs of a failure. */
  readonly serverHistory: CliProcess[] = [];

  constructor(readonly opts: ClusterOptions) {}

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  get databaseKind(): 'pglite' | 'postgres' {
    return this.databaseUrl ? 'postgres' : 'pglite';
  }

  /** Starts the aggregator, creates the federation, enrols the sites and starts their nodes. */
  async start(): Promise<void> {
    const db = await freshDatabaseUrl();
    this.databaseUrl = db.url;
    this.dropDatabase = db.drop;
    this.port = await freePort();
    await this.startAggregator();
    this.token = this.info.initialAdminToken!;
    this.api = new ApiClient(this.url, this.token);
    const fed = await this.api.post<{ id: string }>('/api/v1/federations', {
      name: `chaos-${this.opts.seed}`,
      modelSpec: { kind: 'logistic', inputDim: 30 },
      minSites: 3,
      localEpochs: 1,
      batchSize: 32,
      learningRate: 0.1,
      optimizer: 'sgd',
      seed: this.opts.seed % 2 ** 31,
      roundTimeoutSeconds: this.opts.roundTimeoutSeconds,
      evaluationTimeoutSeconds: this.opts.evaluationTimeoutSeconds,
      // Site-level DP (DP-FedAvg with the distributed discrete Gaussian) under secure aggregation,
      // with a budget that a long chaos run cannot exhaust: the run is about faults, not budgets.
      dp: {
        level: 'site',
        noiseMultiplier: 2,
        clipNorm: 1,
        delta: 1e-5,
        epsilonLimit: 100_000,
        evaluationRounds: 10_000,
      },
      secureAggregation: { enabled: true },
    });
    this.federationId = fed.id;

    const all = parseCsv(await readFile(DATASET, 'utf8'), { label: 'diagnosis' });
    const shards = partitionIid(all, this.opts.sites, this.opts.seed);
    const names = Array.from({ length: this.opts.sites }, (_, i) => `site-${i + 1}`);
    this.sites = await Promise.all(
      names.map(async (name, i) => {
        const keyDir = join(this.opts.dir, name);
        await mkdir(keyDir, { recursive: true });
        const data = join(this.opts.dir, `${name}.csv`);
        await writeFile(data, datasetToCsv(shards[i]!));
        // The same key files `confide node keys` writes, made in-process: a CLI start per site
        // costs seconds on a loaded machine and proves nothing the nodes' own starts do not.
        const publicKey = (await createIdentityFiles(keyDir)).identity.publicKey;
        const site = await this.api.post<{ id: string }>(`/api/v1/federations/${fed.id}/sites`, {
          name,
          publicKey,
        });
        await this.api.post(`/api/v1/federations/${fed.id}/sites/${site.id}/approve`);
        return { name, id: site.id, publicKey, keyDir, data, node: null, history: [] };
      }),
    );
    this.proxy = await startProxy(this.port, new Map(this.sites.map((s) => [s.publicKey, s.name])));
    for (const s of this.sites) this.startNode(s);
  }

  /** Starts the aggregator on its port and data directory (the same every time). */
  async startAggregator(): Promise<void> {
    const { process, info } = await startServerProcess(this.group, {
      port: this.port,
      dataDir: join(this.opts.dir, 'aggregator'),
      databaseUrl: this.databaseUrl,
      timeoutMs: 120_000,
    });
    this.server = process;
    this.serverHistory.push(process);
    this.info = info;
  }

  /** kill -9 of the aggregator. */
  async killAggregator(): Promise<void> {
    const s = this.server;
    this.server = null;
    await s?.stop('SIGKILL');
  }

  get aggregatorUp(): boolean {
    return this.server?.running ?? false;
  }

  startNode(site: ChaosSite): void {
    const p = this.group.spawn(
      nodeJoinArgs({
        server: `http://127.0.0.1:${this.proxy.port}`,
        federationId: this.federationId,
        keyDir: site.keyDir,
        data: site.data,
        label: 'diagnosis',
        serverKey: this.info.serverKeyFingerprint,
        maxBackoff: '2s',
        json: true,
      }),
      cliEnv(),
    );
    site.node = p;
    site.history.push(p);
  }

  /** kill -9 of a site's node. */
  async killNode(site: ChaosSite): Promise<void> {
    const p = site.node;
    site.node = null;
    await p?.stop('SIGKILL');
  }

  /** Nodes that exited by themselves (a node must only exit when revoked or signalled). */
  exitedNodes(): Array<{ site: ChaosSite; code: number | null; stderr: string }> {
    return this.sites
      .filter((s) => s.node && !s.node.running)
      .map((s) => ({ site: s, code: s.node!.child.exitCode, stderr: s.node!.stderr }));
  }

  /** The environment of `confide admin` / `confide audit` against this federation. */
  cliEnv(): NodeJS.ProcessEnv {
    return cliEnv({
      CONFIDE_SERVER: this.url,
      CONFIDE_TOKEN: this.token,
      CONFIDE_FEDERATION: this.federationId,
    });
  }

  /** Writes every round with its state transitions (the aggregator must be up). */
  async writeRounds(file: string): Promise<void> {
    const fed = `/api/v1/federations/${this.federationId}`;
    const { rounds } = await this.api.get<{ rounds: Array<{ number: number }> }>(`${fed}/rounds`);
    const full = [];
    for (const r of rounds) full.push(await this.api.get(`${fed}/rounds/${r.number}`));
    await writeFile(file, JSON.stringify(full, null, 2));
  }

  /** Writes every process's output, aggregator starts and node starts numbered in order. */
  async writeLogs(dir: string): Promise<void> {
    await mkdir(dir, { recursive: true });
    const write = (name: string, p: CliProcess): Promise<void> =>
      writeFile(join(dir, name), `--- stdout\n${p.stdout}\n--- stderr\n${p.stderr}`);
    await Promise.all([
      ...this.serverHistory.map((p, i) => write(`aggregator-${i + 1}.log`, p)),
      ...this.sites.flatMap((s) => s.history.map((p, i) => write(`${s.name}-${i + 1}.log`, p))),
    ]);
  }

  async stop(): Promise<void> {
    await this.proxy?.close();
    await this.group.killAll();
    await this.dropDatabase();
  }
}
