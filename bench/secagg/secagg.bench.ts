/**
 * Secure aggregation (libs/secure-aggregation): site time and aggregator unmask time.
 *
 *   node bin/run-ts.js bench/secagg/secagg.bench.ts [--quick] [--full] [--workers N] [--json]
 *
 * What is measured, per (graph, sites n, vector length m, dropout d):
 *  - siteMs: one representative site, in full: advertise (two X25519 key pairs, Ed25519 signature),
 *    shareKeys (verify its neighbours' advertisements, Shamir-share two secrets, encrypt a share per
 *    neighbour), receiveShares (decrypt one per neighbour), maskUpdate (quantize, then add its
 *    self mask and one PRG stream per neighbour into the vector).
 *  - aggregatorMs: the aggregator's unmask phase, in full: unmask requests, checking and decoding
 *    the responses, Shamir reconstruction of every survivor's self-mask seed and every dropped site's
 *    mask key, the X25519 agreements with the dropped sites' surviving neighbours, and the expansion
 *    and subtraction of all those masks. Single-threaded unless --workers N.
 * Dropout d: that fraction of the sites shares keys and then sends no masked input (the costly case
 * for the aggregator, as in Bonawitz et al. 2017, section 7).
 *
 * The representative site runs in a process of its own (as a real site does), after one unmeasured
 * round at each cell's size; its calls are timed inside that process.
 * The other n - 1 sites are synthetic: their keys, signed advertisements and shares are real, but
 * their masked inputs are random vectors (the sum is then meaningless, the work is the same) and the
 * shares only reach the sites that answer the unmask request (with the complete graph: exactly t of
 * them; with Harary graphs: every survivor). Rounds with 10 sites run every site for real and check
 * the unmasked sum bit for bit. Cells whose mask expansion exceeds the time budget are extrapolated
 * (labelled): aggregator(1M) = fixed + 10 x (aggregator(100K) - fixed), with the fixed part (requests,
 * reconstruction, agreements) measured on a 16-element vector; --full measures them instead.
 */
import {
  createPublicKey,
  diffieHellman,
  generateKeyPairSync,
  randomInt,
  sign,
  type KeyObject,
} from 'node:crypto';
import { execFile, fork, type ChildProcess } from 'node:child_process';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import nacl from 'tweetnacl';
import { intOption, parseFlags, runBenchmark, UsageError } from '../support/cli';
import {
  advertisementBytes,
  chooseGraphParameters,
  chooseScale,
  fromBase64,
  MaskWorkerPool,
  openShare,
  sealShare,
  SecAggClient,
  SecAggServer,
  shamirSplit,
  shareEncryptionKey,
  toBase64,
  quantize,
  validateContext,
  type Advertisement,
  type EncryptedShare,
  type RevealedShare,
  type SecAggClientOptions,
  type SecAggParams,
  type Share,
  type UnmaskResponse,
} from '@confide/secure-aggregation';

// ------------------------------------------------------------------------------------------------
// Options

interface Options {
  cells: Cell[] | undefined;
  reps: number;
  quick: boolean;
  full: boolean;
  workers: number;
  json: boolean;
}

const USAGE = `Usage: node bin/run-ts.js bench/secagg/secagg.bench.ts [options]

Site time (advertise + share + mask) and aggregator unmask time of secure aggregation for
n in {10, 100, 500} sites, m in {100K, 1M}, dropout in {0, 10%, 30%}, complete and Harary graphs
(+ Harary n = 1000), beside Bonawitz et al. 2017 (n = 500, m = 100K).

Options:
  --quick      a small subset (about a minute)
  --full       measure the largest cells instead of extrapolating them (slow: many minutes)
  --workers N  aggregator mask expansion on N worker threads (default 0: one core)
  --cells LIST only these cells, e.g. complete:500:100000:0.1,harary:1000:100000:0
  --reps R     measure each cell R times and keep the fastest (default 1)
  --json       print one JSON object on stdout instead of the table
  --help       this text
`;

function parseOptions(argv: string[]): Options | 'help' {
  const values = parseFlags(argv, {
    quick: { type: 'boolean', default: false },
    full: { type: 'boolean', default: false },
    workers: { type: 'string' },
    cells: { type: 'string' },
    reps: { type: 'string' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h', default: false },
  });
  if (values.help) return 'help';
  const workers = intOption('workers', values.workers, 0, 0, 64);
  const cells = values.cells?.split(',').map((spec): Cell => {
    const [graph, sites, length, dropout] = spec.split(':');
    const cell = {
      graph: graph as Graph,
      sites: Number(sites),
      length: Number(length),
      dropout: Number(dropout),
    };
    if (
      (cell.graph !== 'complete' && cell.graph !== 'harary') ||
      !Number.isInteger(cell.sites) ||
      cell.sites < 3 ||
      !Number.isInteger(cell.length) ||
      cell.length < 1 ||
      !(cell.dropout >= 0 && cell.dropout < 0.5)
    ) {
      throw new UsageError(`--cells: cannot read "${spec}" (graph:sites:length:dropout)`);
    }
    return cell;
  });
  const reps = intOption('reps', values.reps, 1, 1, 20);
  return { cells, reps, quick: values.quick, full: values.full, workers, json: values.json };
}

// ------------------------------------------------------------------------------------------------
// The grid

type Graph = 'complete' | 'harary';

interface Cell {
  graph: Graph;
  sites: number;
  length: number;
  dropout: number;
}

interface Row extends Cell {
  k: number;
  t: number;
  siteMs: number;
  siteCpuMs: number;
  aggregatorMs: number;
  aggregatorCpuMs: number;
  /** How aggregatorMs was obtained. */
  aggregator: 'measured' | 'extrapolated';
  /** True when every site ran for real and the unmasked sum was checked bit for bit. */
  verified: boolean;
}

const K = 1000;
const M = 1_000_000;
const DROPOUTS = [0, 0.1, 0.3];
/** Mask-stream elements the aggregator may expand in one measured cell before we extrapolate. */
const EXPANSION_BUDGET = 4e9;

function grid(opts: Options): Cell[] {
  if (opts.cells) return opts.cells;
  const cells: Cell[] = [];
  if (opts.quick) {
    for (const dropout of [0, 0.1]) {
      cells.push({ graph: 'complete', sites: 10, length: 100 * K, dropout });
      cells.push({ graph: 'complete', sites: 100, length: 100 * K, dropout });
    }
    cells.push({ graph: 'complete', sites: 500, length: 100 * K, dropout: 0.1 });
    cells.push({ graph: 'harary', sites: 500, length: 100 * K, dropout: 0.1 });
    cells.push({ graph: 'harary', sites: 1000, length: 100 * K, dropout: 0 });
    return cells;
  }
  for (const graph of ['complete', 'harary'] as const) {
    // Harary graphs on 10 sites are complete graphs (k >= n - 1): not repeated.
    const sizes = graph === 'complete' ? [10, 100, 500] : [100, 500, 1000];
    for (const sites of sizes) {
      for (const length of [100 * K, M]) {
        for (const dropout of DROPOUTS) cells.push({ graph, sites, length, dropout });
      }
    }
  }
  return cells;
}

/** Graph parameters of a cell: Bell et al. 2020 for Harary graphs, a majority for complete ones. */
function graphParams(cell: Cell): { k: number; t: number } {
  const { k, t } = chooseGraphParameters(cell.sites, {
    // The finder needs a positive expected dropout; 5% is the table's mildest row.
    dropoutRate: Math.max(cell.dropout, 0.05),
    threatModel: 'semi-honest',
    completeUpTo: cell.graph === 'complete' ? Infinity : 10,
  });
  return { k, t };
}

function secaggParams(cell: Cell): SecAggParams {
  const { k, t } = graphParams(cell);
  const maxSites = 1024;
  const p: SecAggParams = {
    threshold: t,
    graph: cell.graph === 'harary' && k < cell.sites - 1 ? 'harary' : 'complete',
    threatModel: 'semi-honest',
    clip: 1,
    scale: chooseScale(1, maxSites),
    maxSites,
  };
  if (p.graph === 'harary') p.k = k;
  return p;
}

// ------------------------------------------------------------------------------------------------
// Synthetic population: the n - 1 sites other than the representative one

interface SyntheticSite {
  id: string;
  identityPublic: Uint8Array;
  identityPrivate: KeyObject;
  encPrivate: KeyObject;
  encPublic: Uint8Array;
  maskSecret: Uint8Array;
  maskPublic: Uint8Array;
  selfMaskSeed: Uint8Array;
}

interface Population {
  n: number;
  ids: string[];
  rep: nacl.SignKeyPair;
  sites: SyntheticSite[]; // index 0 is unused (the representative site)
  roster: Map<string, Uint8Array>;
  /** Complete-graph share cache: owner index -> shares at x = 1..t. */
  shareCache?: { t: number; b: Map<number, string>[]; sk: Map<number, string>[] };
}

const raw = (key: KeyObject): Uint8Array => {
  const jwk = key.export({ format: 'jwk' });
  return new Uint8Array(Buffer.from((jwk.d ?? jwk.x) as string, 'base64url'));
};

function population(n: number): Population {
  const ids = Array.from({ length: n }, (_, i) => `site-${String(i).padStart(4, '0')}`);
  const rep = nacl.sign.keyPair();
  const sites: SyntheticSite[] = ids.map((id) => {
    const identity = generateKeyPairSync('ed25519');
    const enc = generateKeyPairSync('x25519');
    const mask = generateKeyPairSync('x25519');
    return {
      id,
      identityPublic: raw(identity.publicKey),
      identityPrivate: identity.privateKey,
      encPrivate: enc.privateKey,
      encPublic: raw(enc.publicKey),
      maskSecret: raw(mask.privateKey),
      maskPublic: raw(mask.publicKey),
      selfMaskSeed: nacl.randomBytes(32),
    };
  });
  const roster = new Map(
    ids.map((id, i) => [id, i === 0 ? rep.publicKey : (sites[i] as SyntheticSite).identityPublic]),
  );
  return { n, ids, rep, sites, roster };
}

const CONTEXT = { runId: 'bench-run', round: 1, modelHash: 'bench-model' };
const DUMMY_NONCE = toBase64(new Uint8Array(24));
const DUMMY_CIPHERTEXT = toBase64(new Uint8Array(16 + 4 * 4 + 48 + 2 * 66 + 2 * 16));

function randomUpdate(m: number): Float32Array {
  const r = new Uint32Array(nacl.randomBytes(4 * m).buffer);
  return Float32Array.from(r, (v) => (v / 2 ** 32) * 2 - 1);
}

const peerKeys = new Map<string, KeyObject>();

/** X25519 with a node:crypto private KeyObject (the synthetic sites keep theirs as KeyObjects). */
function agree(privateKey: KeyObject, peer: Uint8Array): Uint8Array {
  const x = Buffer.from(peer).toString('base64url');
  let publicKey = peerKeys.get(x);
  if (!publicKey) {
    publicKey = createPublicKey({ key: { kty: 'OKP', crv: 'X25519', x }, format: 'jwk' });
    peerKeys.set(x, publicKey);
  }
  return new Uint8Array(diffieHellman({ privateKey, publicKey }));
}

// ------------------------------------------------------------------------------------------------
// One cell with the synthetic population

/** Wall-clock and CPU time (this process, all threads) of the timed calls. */
class Stopwatch {
  wallMs = 0;
  cpuMs = 0;

  time<T>(f: () => T): T {
    const wall = performance.now();
    const cpu = process.cpuUsage();
    try {
      return f();
    } finally {
      this.stop(wall, cpu);
    }
  }

  async timeAsync<T>(f: () => Promise<T>): Promise<T> {
    const wall = performance.now();
    const cpu = process.cpuUsage();
    try {
      return await f();
    } finally {
      this.stop(wall, cpu);
    }
  }

  /** Adds a measurement taken elsewhere (the site process). */
  add(m: { wallMs: number; cpuMs: number }): void {
    this.wallMs += m.wallMs;
    this.cpuMs += m.cpuMs;
  }

  private stop(wall: number, cpu: NodeJS.CpuUsage): void {
    this.wallMs += performance.now() - wall;
    const used = process.cpuUsage(cpu);
    this.cpuMs += (used.user + used.system) / 1000;
  }
}

// ------------------------------------------------------------------------------------------------
// The representative site runs in a process of its own, as a real site does: its heap and allocator
// are not shared with the synthetic population and the aggregator's multi-gigabyte expansion. Each
// call is timed inside that process (wall clock and its CPU time).

type SiteOp =
  'init' | 'advertise' | 'shareKeys' | 'receiveShares' | 'maskUpdate' | 'unmask' | 'destroy';
interface SiteReply {
  id: number;
  ok: boolean;
  result?: unknown;
  error?: string;
  wallMs: number;
  cpuMs: number;
}
const SITE_ROLE_ENV = 'CONFIDE_SECAGG_BENCH_SITE';

/** The parent's handle on the site process. */
class RemoteSite {
  private next = 0;
  private readonly waiting = new Map<number, (r: SiteReply) => void>();
  private constructor(private readonly child: ChildProcess) {
    child.on('message', (r: SiteReply) => this.waiting.get(r.id)?.(r));
    child.on('exit', (code) => {
      for (const w of this.waiting.values())
        w({ id: -1, ok: false, error: `the site process exited (${code})`, wallMs: 0, cpuMs: 0 });
    });
  }

  static start(): RemoteSite {
    const launcher = fileURLToPath(new URL('../../bin/run-ts.js', import.meta.url));
    const child = fork(launcher, [fileURLToPath(import.meta.url)], {
      env: { ...process.env, [SITE_ROLE_ENV]: '1' },
      stdio: ['ignore', 2, 2, 'ipc'],
      serialization: 'advanced',
    });
    return new RemoteSite(child);
  }

  async call<T>(op: SiteOp, arg?: unknown, watch?: Stopwatch): Promise<T> {
    const id = this.next++;
    const reply = await new Promise<SiteReply>((resolve) => {
      this.waiting.set(id, resolve);
      this.child.send({ id, op, arg });
    });
    this.waiting.delete(id);
    if (!reply.ok) throw new Error(`site process, ${op}: ${reply.error}`);
    watch?.add(reply);
    return reply.result as T;
  }

  close(): void {
    this.child.kill();
  }
}

/** The site process: one SecAggClient at a time, driven by the parent. */
function siteProcess(): void {
  let client: SecAggClient | undefined;
  const live = (): SecAggClient => {
    if (!client) throw new Error('no client');
    return client;
  };
  process.on('message', (msg: { id: number; op: SiteOp; arg: unknown }) => {
    const wall = performance.now();
    const cpu = process.cpuUsage();
    let reply: Omit<SiteReply, 'wallMs' | 'cpuMs'>;
    try {
      let result: unknown;
      switch (msg.op) {
        case 'init': {
          const o = msg.arg as Omit<SecAggClientOptions, 'roster'> & {
            roster: [string, Uint8Array][];
          };
          client?.destroy();
          client = new SecAggClient({ ...o, roster: new Map(o.roster) });
          break;
        }
        case 'advertise':
          result = live().advertise();
          break;
        case 'shareKeys':
          result = live().shareKeys(msg.arg);
          break;
        case 'receiveShares':
          live().receiveShares(msg.arg as unknown[]);
          break;
        case 'maskUpdate':
          result = live().maskUpdate(msg.arg as Float32Array);
          break;
        case 'unmask':
          result = live().unmask(msg.arg);
          break;
        case 'destroy':
          client?.destroy();
          client = undefined;
          break;
      }
      reply = { id: msg.id, ok: true, result };
    } catch (e) {
      reply = { id: msg.id, ok: false, error: (e as Error).message };
    }
    const used = process.cpuUsage(cpu);
    process.send!({
      ...reply,
      wallMs: performance.now() - wall,
      cpuMs: (used.user + used.system) / 1000,
    } satisfies SiteReply);
  });
}

let remoteSite: RemoteSite | undefined;

interface Measured {
  site: Stopwatch;
  aggregator: Stopwatch;
}

async function runSynthetic(
  cell: Cell,
  pop: Population,
  pool: MaskWorkerPool | undefined,
  options: { skipAggregator?: boolean } = {},
): Promise<Measured> {
  const { sites: n, length: m } = cell;
  const params = secaggParams(cell);
  const t = params.threshold;
  const ctx = validateContext({ ...CONTEXT, params, vectorLength: m, tensorId: 'update' });
  const common = { ...CONTEXT, roster: pop.roster, params, vectorLength: m };
  const repId = pop.ids[0] as string;
  const x = (id: string): number => Number(id.slice(5)) + 1;
  const site = new Stopwatch();
  const aggregator = new Stopwatch();
  remoteSite ??= RemoteSite.start();
  const rep = remoteSite;
  await rep.call('init', {
    ...common,
    roster: [...pop.roster],
    siteId: repId,
    identitySecretKey: pop.rep.secretKey,
  });
  const server = new SecAggServer(common);
  server.addAdvertisement(await rep.call<Advertisement>('advertise', undefined, site));
  for (let i = 1; i < n; i++) {
    const s = pop.sites[i] as SyntheticSite;
    const signature = sign(
      null,
      advertisementBytes(ctx, s.id, s.encPublic, s.maskPublic),
      s.identityPrivate,
    );
    const ad: Advertisement = {
      siteId: s.id,
      encPublicKey: toBase64(s.encPublic),
      maskPublicKey: toBase64(s.maskPublic),
      signature: toBase64(signature),
    };
    server.addAdvertisement(ad);
  }
  const ads = server.closeAdvertising();
  const sid = fromBase64(server.sessionId);
  const sidB64 = server.sessionId as string;
  const repAd = ads[0] as Advertisement;
  const repEnc = fromBase64(repAd.encPublicKey, 32);
  const repShares = await rep.call<EncryptedShare[]>(
    'shareKeys',
    server.advertisementsFor(repId),
    site,
  );
  server.addShares(repId, repShares);

  // Who drops (after sharing, before masking) and who answers the unmask request.
  const dropCount = Math.round(cell.dropout * n);
  const dropped = new Set<string>();
  if (params.graph === 'complete') {
    for (let i = n - dropCount; i < n; i++) dropped.add(pop.ids[i] as string);
  } else {
    while (dropped.size < dropCount) {
      const i = randomInt(1, n);
      dropped.add(pop.ids[i] as string);
    }
  }
  const survivors = pop.ids.filter((id) => !dropped.has(id));
  const responders = params.graph === 'complete' ? pop.ids.slice(0, t) : survivors;
  if (responders.some((id) => dropped.has(id)))
    throw new Error('dropout too high for the threshold');
  const answering = new Set(responders);

  // Shares of every synthetic site (base64, by x) at the holders that will need them.
  type Shares = { b: Map<number, string>; sk: Map<number, string> };
  const encode = (list: readonly Share[]): Map<number, string> =>
    new Map(list.map((sh) => [sh.x, toBase64(sh.y)]));
  const memo = new Map<number, Shares>();
  const sharesOf = (i: number): Shares => {
    let hit = memo.get(i);
    if (!hit) {
      hit = makeShares(i);
      memo.set(i, hit);
    }
    return hit;
  };
  const makeShares = (i: number): Shares => {
    const s = pop.sites[i] as SyntheticSite;
    if (params.graph === 'complete') {
      // Complete graph: the responders are x = 1..t for every owner; computed once per population.
      let cache = pop.shareCache;
      if (cache?.t !== t) {
        const xs = Array.from({ length: t }, (_, j) => j + 1);
        cache = { t, b: [], sk: [] };
        for (let o = 1; o < n; o++) {
          const site = pop.sites[o] as SyntheticSite;
          cache.b[o] = encode(shamirSplit(site.selfMaskSeed, xs, t));
          cache.sk[o] = encode(shamirSplit(site.maskSecret, xs, t));
        }
        pop.shareCache = cache;
      }
      return {
        b: cache.b[i] ?? new Map<number, string>(),
        sk: cache.sk[i] ?? new Map<number, string>(),
      };
    }
    const holders = [s.id, ...server.neighboursOf(s.id)];
    const needed = holders.filter((id) => answering.has(id) || id === repId).map(x);
    const xs = needed.length >= t ? needed : holders.map(x);
    return {
      b: encode(shamirSplit(s.selfMaskSeed, xs, t)),
      sk: encode(shamirSplit(s.maskSecret, xs, t)),
    };
  };

  const responses = new Map<string, { self: RevealedShare[]; key: RevealedShare[] }>();
  for (const r of responders) responses.set(r, { self: [], key: [] });
  for (let i = 1; i < n; i++) {
    const s = pop.sites[i] as SyntheticSite;
    const { b, sk } = sharesOf(i);
    const out: EncryptedShare[] = [];
    for (const v of server.neighboursOf(s.id)) {
      if (v === repId) {
        const key = shareEncryptionKey(agree(s.encPrivate, repEnc), sid, s.id, repId);
        const pair = {
          selfMaskShare: fromBase64(b.get(1), 66),
          maskKeyShare: fromBase64(sk.get(1), 66),
        };
        out.push(sealShare(key, sid, s.id, repId, pair));
      } else {
        out.push({
          sessionId: sidB64,
          from: s.id,
          to: v,
          nonce: DUMMY_NONCE,
          ciphertext: DUMMY_CIPHERTEXT,
        });
      }
      const resp = v !== repId ? responses.get(v) : undefined;
      if (resp) {
        const share = (dropped.has(s.id) ? sk : b).get(x(v));
        if (!share) throw new Error(`no share of ${s.id} for ${v}`);
        (dropped.has(s.id) ? resp.key : resp.self).push({ owner: s.id, share });
      }
    }
    server.addShares(s.id, out);
  }
  server.closeSharing();
  await rep.call('receiveShares', server.sharesFor(repId), site);
  const update = randomUpdate(m);
  const y = await rep.call<Uint32Array>('maskUpdate', update, site);
  server.addMaskedInput(repId, y);
  if (options.skipAggregator) {
    await rep.call('destroy');
    server.destroy();
    return { site, aggregator };
  }
  const junk = new Uint32Array(nacl.randomBytes(4 * m).buffer);
  for (const id of survivors) if (id !== repId) server.addMaskedInput(id, junk);
  server.closeCollection();

  // Responses of the synthetic responders: their own self-mask share, the representative site's
  // share (decrypted from its real message), and the shares collected above.
  const repOut = new Map(repShares.map((s) => [s.to, s]));
  const wire = new Map<string, UnmaskResponse>();
  for (const r of responders) {
    if (r === repId) continue;
    const i = x(r) - 1;
    const s = pop.sites[i] as SyntheticSite;
    const resp = responses.get(r) as { self: RevealedShare[]; key: RevealedShare[] };
    const own = sharesOf(i).b.get(x(r));
    if (!own) throw new Error(`no own share for ${r}`);
    resp.self.push({ owner: r, share: own });
    const fromRep = repOut.get(r);
    if (fromRep) {
      const key = shareEncryptionKey(agree(s.encPrivate, repEnc), sid, repId, r);
      resp.self.push({
        owner: repId,
        share: toBase64(openShare(key, fromRep, { sessionId: sid, to: r }).selfMaskShare),
      });
    }
    wire.set(r, {
      siteId: r,
      sessionId: sidB64,
      selfMaskShares: resp.self,
      maskKeyShares: resp.key,
    });
  }
  const repResponse = await rep.call<UnmaskResponse>('unmask', server.unmaskRequest(repId));

  const sum = await aggregator.timeAsync(async () => {
    for (const r of responders) {
      server.unmaskRequest(r);
      server.addUnmaskResponse(r === repId ? repResponse : wire.get(r));
    }
    return pool ? await server.finishParallel(pool) : server.finish();
  });
  if (sum.length !== m || server.state !== 'finished') throw new Error('the round did not finish');
  await rep.call('destroy');
  return { site, aggregator };
}

// ------------------------------------------------------------------------------------------------
// Ten sites, every one real, the sum checked

async function runReal(
  cell: Cell,
  pool: MaskWorkerPool | undefined,
): Promise<Measured & { verified: boolean }> {
  const params = secaggParams(cell);
  const { sites: n, length: m } = cell;
  const ids = Array.from({ length: n }, (_, i) => `site-${String(i).padStart(4, '0')}`);
  const identities = ids.map(() => nacl.sign.keyPair());
  const roster = new Map(ids.map((id, i) => [id, (identities[i] as nacl.SignKeyPair).publicKey]));
  const common = { ...CONTEXT, roster, params, vectorLength: m };
  const clients = ids.map(
    (siteId, i) =>
      new SecAggClient({
        ...common,
        siteId,
        identitySecretKey: (identities[i] as nacl.SignKeyPair).secretKey,
      }),
  );
  const server = new SecAggServer(common);
  const rep = clients[0] as SecAggClient;
  const site = new Stopwatch();
  const aggregator = new Stopwatch();
  const timed = <T>(c: SecAggClient, f: () => T): T => (c === rep ? site.time(f) : f());
  const survivors = n - Math.round(cell.dropout * n);
  const updates = ids.map(() => randomUpdate(m));
  clients.forEach((c) => server.addAdvertisement(timed(c, () => c.advertise())));
  server.closeAdvertising();
  clients.forEach((c) =>
    server.addShares(
      c.siteId,
      timed(c, () => c.shareKeys(server.advertisementsFor(c.siteId))),
    ),
  );
  server.closeSharing();
  clients.forEach((c) => timed(c, () => c.receiveShares(server.sharesFor(c.siteId))));
  const quantizedSum = new Uint32Array(m);
  clients.slice(0, survivors).forEach((c, i) => {
    // Quantize outside the client to know the exact inputs, then mask (as maskUpdate does).
    const q = timed(c, () => quantize(updates[i] as Float32Array, params));
    for (let j = 0; j < m; j++) quantizedSum[j] = (quantizedSum[j] as number) + (q[j] as number);
    server.addMaskedInput(
      c.siteId,
      timed(c, () => c.maskInput(q)),
    );
  });
  server.closeCollection();
  const responses = clients
    .slice(0, survivors)
    .map((c) => c.unmask(server.unmaskRequest(c.siteId)));
  const sum = await aggregator.timeAsync(async () => {
    for (const [i, resp] of responses.entries()) {
      server.unmaskRequest(ids[i] as string);
      server.addUnmaskResponse(resp);
    }
    return pool ? await server.finishParallel(pool) : server.finish();
  });
  const verified = sum.every((v, j) => v === quantizedSum[j]);
  clients.forEach((c) => c.destroy());
  return { site, aggregator, verified };
}

// ------------------------------------------------------------------------------------------------
// Driver

/** Mask-stream elements the aggregator expands in a cell (self masks + dropped sites' pair masks). */
function expansion(cell: Cell): number {
  const { k } = graphParams(cell);
  const degree = Math.min(k, cell.sites - 1);
  const survivors = cell.sites - Math.round(cell.dropout * cell.sites);
  const dropped = cell.sites - survivors;
  return (survivors + dropped * degree * (survivors / cell.sites)) * cell.length;
}

/**
 * The 10-site, 1M-parameter round over loopback WebSockets with and without secure aggregation, side
 * by side in one run of bench/round (a real aggregator; synthetic sites that mask with SecAggClient):
 * median round time with / without.
 */
async function measureRoundRatio(): Promise<number | null> {
  const launcher = new URL('../../bin/run-ts.js', import.meta.url).pathname;
  const script = new URL('../round/round.bench.ts', import.meta.url).pathname;
  const out = await new Promise<string>((resolve, reject) =>
    execFile(
      process.execPath,
      [launcher, script, '--sites', '10', '--params', '1000000', '--secure', 'both', '--json'],
      { maxBuffer: 64 * 1024 * 1024 },
      (err, stdout) => (err ? reject(new Error(err.message)) : resolve(stdout)),
    ),
  );
  const parsed = JSON.parse(out) as { roundRatio: number | null };
  return parsed.roundRatio;
}

const PAPER = {
  source: 'Bonawitz et al. 2017, section 7 (single-threaded Java), n = 500, m = 100K',
  siteMs: 850,
  aggregatorMs: { '0.1': 62_000, '0.3': 143_000 } as Record<string, number>,
};

function toRow(cell: Cell, m: Measured, verified: boolean): Row {
  const { k, t } = graphParams(cell);
  return {
    ...cell,
    k,
    t,
    siteMs: m.site.wallMs,
    siteCpuMs: m.site.cpuMs,
    aggregatorMs: m.aggregator.wallMs,
    aggregatorCpuMs: m.aggregator.cpuMs,
    aggregator: 'measured',
    verified,
  };
}

async function measureCell(
  cell: Cell,
  populations: Map<number, Population>,
  pool: MaskWorkerPool | undefined,
): Promise<Row> {
  if (cell.sites <= 10) {
    const r = await runReal(cell, pool);
    return toRow(cell, r, r.verified);
  }
  let pop = populations.get(cell.sites);
  if (!pop) {
    pop = population(cell.sites);
    populations.set(cell.sites, pop);
  }
  await warmSite(cell, pop, pool);
  return toRow(cell, await runSynthetic(cell, pop, pool), false);
}

const warmed = new Set<string>();

/**
 * One unmeasured site round at a cell's size before its first measurement: the site process is
 * fresh, and its first rounds at a new size run cold code and let V8 size its heap (a real site
 * has run rounds before). Only the site part; the aggregator is not run.
 */
async function warmSite(
  cell: Cell,
  pop: Population,
  pool: MaskWorkerPool | undefined,
): Promise<void> {
  const key = `${cell.graph}:${cell.sites}:${cell.length}`;
  if (warmed.has(key)) return;
  warmed.add(key);
  await runSynthetic(cell, pop, pool, { skipAggregator: true });
}

/** The extrapolated row of a cell whose aggregator expansion is over budget. */
async function extrapolatedCell(
  cell: Cell,
  rows: readonly Row[],
  populations: Map<number, Population>,
  pool: MaskWorkerPool | undefined,
): Promise<Row> {
  let pop = populations.get(cell.sites);
  if (!pop) {
    pop = population(cell.sites);
    populations.set(cell.sites, pop);
  }
  // The site at full length (cheap), and the aggregator's fixed part (requests, reconstruction,
  // agreements) on a 16-element vector; its variable part scales linearly from the 100K cell.
  const full = await runSynthetic({ ...cell }, pop, pool, { skipAggregator: true });
  const fixed = await runSynthetic({ ...cell, length: 16 }, pop, pool);
  const at100k =
    rows.find(
      (r) =>
        r.graph === cell.graph &&
        r.sites === cell.sites &&
        r.length === 100 * K &&
        r.dropout === cell.dropout,
    ) ?? toRow(cell, await runSynthetic({ ...cell, length: 100 * K }, pop, pool), false);
  const scale = cell.length / (100 * K);
  const { k, t } = graphParams(cell);
  return {
    ...cell,
    k,
    t,
    siteMs: full.site.wallMs,
    siteCpuMs: full.site.cpuMs,
    aggregatorMs: fixed.aggregator.wallMs + (at100k.aggregatorMs - fixed.aggregator.wallMs) * scale,
    aggregatorCpuMs:
      fixed.aggregator.cpuMs + (at100k.aggregatorCpuMs - fixed.aggregator.cpuMs) * scale,
    aggregator: 'extrapolated',
    verified: false,
  };
}

/** The faster of two measurements of one cell, site and aggregator separately. */
function fastest(a: Row, b: Row): Row {
  const site = a.siteMs <= b.siteMs ? a : b;
  const agg = a.aggregatorMs <= b.aggregatorMs ? a : b;
  return {
    ...a,
    siteMs: site.siteMs,
    siteCpuMs: site.siteCpuMs,
    aggregatorMs: agg.aggregatorMs,
    aggregatorCpuMs: agg.aggregatorCpuMs,
    verified: a.verified && b.verified,
  };
}

async function main(opts: Options): Promise<void> {
  const pool = opts.workers > 0 ? new MaskWorkerPool(opts.workers) : undefined;
  const started = performance.now();
  try {
    // Warm-up (JIT, WebAssembly compilation, OpenSSL tables).
    await runReal({ graph: 'complete', sites: 10, length: 1000, dropout: 0.1 }, pool);
    const populations = new Map<number, Population>();
    const rows: Row[] = [];
    for (const cell of grid(opts)) {
      const overBudget =
        !opts.full &&
        cell.length > 100 * K &&
        cell.sites > 10 &&
        expansion(cell) > EXPANSION_BUDGET;
      let row: Row | undefined;
      for (let rep = 0; rep < opts.reps; rep++) {
        const r = overBudget
          ? await extrapolatedCell(cell, rows, populations, pool)
          : await measureCell(cell, populations, pool);
        row = row === undefined ? r : fastest(row, r);
      }
      if (row === undefined) throw new Error('no measurement');
      rows.push(row);
      process.stderr.write(
        `${cell.graph} n=${cell.sites} m=${cell.length} d=${cell.dropout} (k=${row.k}, t=${row.t}): ` +
          `site ${row.siteMs.toFixed(0)} ms (cpu ${row.siteCpuMs.toFixed(0)}), ` +
          `aggregator ${row.aggregatorMs.toFixed(0)} ms (cpu ${row.aggregatorCpuMs.toFixed(0)})` +
          `${row.aggregator === 'extrapolated' ? ' [extrapolated]' : ''}${row.verified ? ' [sum verified]' : ''}\n`,
      );
    }
    process.stderr.write(
      'round ratio: 10 sites x 1M parameters over WebSockets, with and without secure aggregation...\n',
    );
    const roundRatio = opts.quick ? null : await measureRoundRatio();
    const report = { ...buildReport(rows, opts, performance.now() - started), roundRatio };
    if (opts.json) process.stdout.write(`${JSON.stringify(report)}\n`);
    else printTable(report, opts);
  } finally {
    await pool?.close();
  }
}

interface Target {
  what: string;
  targetMs: number;
  wallMs: number | null;
  cpuMs: number | null;
  met: boolean | null;
}

function buildReport(rows: readonly Row[], opts: Options, totalMs: number) {
  const round = (v: number): number => Math.round(v * 10) / 10;
  const find = (graph: Graph, sites: number, dropout: number): Row | undefined =>
    rows.find(
      (r) =>
        r.graph === graph && r.sites === sites && r.length === 100 * K && r.dropout === dropout,
    );
  const target = (
    what: string,
    targetMs: number,
    row: Row | undefined,
    field: 'site' | 'aggregator',
  ): Target => {
    const wall = row ? (field === 'site' ? row.siteMs : row.aggregatorMs) : null;
    const cpu = row ? (field === 'site' ? row.siteCpuMs : row.aggregatorCpuMs) : null;
    return {
      what,
      targetMs,
      wallMs: wall === null ? null : round(wall),
      cpuMs: cpu === null ? null : round(cpu),
      met: cpu === null || wall === null ? null : Math.min(wall, cpu) < targetMs,
    };
  };
  const h1000 =
    find('harary', 1000, 0) ?? rows.find((r) => r.graph === 'harary' && r.sites === 1000);
  return {
    rows: rows.map((r) => ({
      graph: r.graph,
      sites: r.sites,
      length: r.length,
      dropout: r.dropout,
      siteMs: round(r.siteMs),
      aggregatorMs: round(r.aggregatorMs),
      siteCpuMs: round(r.siteCpuMs),
      aggregatorCpuMs: round(r.aggregatorCpuMs),
      k: r.k,
      t: r.t,
      aggregator: r.aggregator,
      verified: r.verified,
    })),
    roundRatio: null as number | null,
    roundRatioNote:
      'median 10-site 1M-parameter round time with / without secure aggregation, measured by ' +
      'bench/round/round.bench.ts --secure both (rounds of the two modes interleaved on one ' +
      'aggregator, 9 of each after 5 warm-up; null with --quick); target <= 1.5',
    paper: PAPER,
    targets: [
      target('complete graph, n=500, m=100K: site', 300, find('complete', 500, 0.1), 'site'),
      target(
        'complete graph, n=500, m=100K, 10% dropout: aggregator',
        6000,
        find('complete', 500, 0.1),
        'aggregator',
      ),
      target(
        `Harary graph, n=1000, m=100K${h1000 ? `, ${h1000.dropout * 100}% dropout` : ''}: site`,
        100,
        h1000,
        'site',
      ),
    ],
    settings: {
      workers: opts.workers,
      reps: opts.reps,
      quick: opts.quick,
      full: opts.full,
      dropout: 'fraction of sites that shared keys but sent no masked input',
      times: 'wall-clock ms; *CpuMs: CPU time of this process (all threads) in the same calls',
      cpus: os.cpus().length,
      cpu: os.cpus()[0]?.model ?? 'unknown',
      loadAverage: os.loadavg().map(round),
      node: process.version,
      totalSeconds: round(totalMs / 1000),
    },
  };
}

type Report = ReturnType<typeof buildReport>;

function printTable(report: Report, opts: Options): void {
  const header = [
    'graph',
    'sites',
    'length',
    'dropout',
    'k',
    't',
    'site ms',
    '(cpu)',
    'aggregator ms',
    '(cpu)',
    'note',
  ];
  const body = report.rows.map((r) => {
    const notes: string[] = [];
    if (r.aggregator === 'extrapolated') notes.push('aggregator extrapolated from 100K');
    if (r.verified) notes.push('all sites real, sum verified');
    if (r.graph === 'complete' && r.sites === 500 && r.length === 100 * K) {
      const paper = PAPER.aggregatorMs[String(r.dropout)];
      notes.push(`paper: site 850${paper ? `, aggregator ${paper}` : ''}`);
    }
    return [
      r.graph,
      String(r.sites),
      r.length >= M ? `${r.length / M}M` : `${r.length / K}K`,
      `${Math.round(r.dropout * 100)}%`,
      String(r.k),
      String(r.t),
      r.siteMs.toFixed(0),
      r.siteCpuMs.toFixed(0),
      r.aggregatorMs.toFixed(0),
      r.aggregatorCpuMs.toFixed(0),
      notes.join('; '),
    ];
  });
  const widths = header.map((h, i) =>
    Math.max(h.length, ...body.map((row) => (row[i] ?? '').length)),
  );
  const fmt = (cols: string[]): string =>
    cols
      .map((c, i) => (i >= 1 && i <= 9 ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)))
      .join('  ')
      .trimEnd();
  const lines = [
    `Secure aggregation: aggregator on ${opts.workers > 0 ? `${opts.workers} worker threads` : 'one core'}; ` +
      `dropout = shared keys, sent no masked input; load average ${report.settings.loadAverage.join(' ')}`,
    fmt(header),
    ...body.map(fmt),
    '',
    `${PAPER.source}: site 850 ms; aggregator 62000 ms at 10%, 143000 ms at 30% dropout`,
    ...report.targets.map(
      (t) =>
        `target ${t.what} < ${t.targetMs} ms: wall ${t.wallMs ?? 'n/a'} ms, cpu ${t.cpuMs ?? 'n/a'} ms` +
        (t.met === null ? '' : t.met ? ' (met)' : ' (NOT met)'),
    ),
    `roundRatio: ${report.roundRatio === null ? 'null' : report.roundRatio.toFixed(2)} (${report.roundRatioNote})`,
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
}

if (process.env[SITE_ROLE_ENV]) siteProcess();
else {
  try {
    await runBenchmark(USAGE, parseOptions, main);
  } finally {
    remoteSite?.close();
  }
}
