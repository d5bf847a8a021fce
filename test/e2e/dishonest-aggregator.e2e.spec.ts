// A site's privacy against a dishonest aggregator: a scripted aggregator that speaks the real
// protocol (signed with its own key) tries each attack of issue 13 on a real ClientNode, which must
// refuse each with its own POLICY_ or protocol code and let nothing derived from its data leave.
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { loadCsv, partitionIid, type Dataset } from '@confide/ml';
import {
  ErrorCode,
  generateIdentity,
  keyFingerprint,
  PROTOCOL_VERSION,
  ServerSigner,
  type IdentityKeyPair,
} from '@confide/protocol';
import { computeEpsilon } from '@confide/differential-privacy';
import {
  chooseGraphParameters,
  fromBase64,
  SecAggClient,
  SecAggServer,
  type SecAggParams,
} from '@confide/secure-aggregation';
import {
  ClientNode,
  memoryPinStore,
  parsePolicy,
  type ClientNodeOptions,
  type PinStore,
  type Refusal,
} from '@confide/client-node';
import type { LedgerEntry } from '@confide/privacy-ledger';
import { DATASET } from '../support/federation';
import { ScriptedAggregator, trainHeader, type SiteFrame } from '../support/scripted-aggregator';

/** What a site may send when it refuses: its login, and the decline naming the refusal. */
const HARMLESS = new Set(['login', 'round.decline']);

describe('a site against a dishonest aggregator', () => {
  let data: Dataset;
  const identity: IdentityKeyPair = generateIdentity();
  let agg: ScriptedAggregator | null = null;
  let node: ClientNode | null = null;
  let logs: string[] = [];
  let refusals: Refusal[] = [];

  beforeAll(async () => {
    data = partitionIid(await loadCsv(DATASET, { label: 'diagnosis' }), 3, 5)[0]!;
  });

  afterEach(async () => {
    node?.stop();
    node = null;
    await agg?.close();
    agg = null;
  });

  /** Starts a real node against a scripted aggregator and waits for its login. */
  async function connect(
    extra: Partial<ClientNodeOptions> = {},
    aggregator?: ScriptedAggregator,
  ): Promise<ScriptedAggregator> {
    agg = aggregator ?? (await ScriptedAggregator.start());
    logs = [];
    refusals = [];
    node = new ClientNode({
      server: agg.url,
      federationId: agg.fedId,
      identity,
      data,
      reconnect: false,
      log: (l) => logs.push(l),
      onRefused: (r) => refusals.push(r),
      ...extra,
    });
    void node.run();
    await agg.waitFor((f) => f.type === 'login', 10_000, 'the login');
    return agg;
  }

  /** A roster of the node and `others` more sites (keys of sites the aggregator controls). */
  function roster(
    a: ScriptedAggregator,
    others: IdentityKeyPair[],
  ): Array<{ siteId: string; publicKey: string }> {
    return [
      { siteId: a.siteId!, publicKey: identity.publicKey },
      ...others.map((o, i) => ({ siteId: `colluder-${i + 1}`, publicKey: o.publicKey })),
    ];
  }

  function secAgg(
    a: ScriptedAggregator,
    n: number,
    params: Partial<SecAggParams> = {},
    others = Array.from({ length: n - 1 }, () => generateIdentity()),
  ) {
    return {
      params: {
        threshold: Math.floor(n / 2) + 1,
        graph: 'complete',
        threatModel: 'semi-honest',
        clip: 10,
        scale: 2 ** 20,
        maxSites: n,
        ...params,
      },
      roster: roster(a, others),
      weightNormalizer: 1000,
      vectorLength: 32,
    };
  }

  const weights = (): Float32Array => Float32Array.from({ length: 31 }, (_, i) => (i % 7) / 100);

  /** Sends a round.train built from `over`, and returns the decline the node answers it with. */
  async function refusalOf(
    a: ScriptedAggregator,
    over: Record<string, unknown>,
  ): Promise<{ code: string; reason: string; frames: SiteFrame[] }> {
    const from = a.received.length;
    const w = weights();
    a.sendFrame(trainHeader(w, { federationId: a.fedId, ...over }), w);
    const decline = await a.waitFor(
      (f) => f.type === 'round.decline' && a.received.indexOf(f) >= from,
      20_000,
      'the decline',
    );
    const frames = await a.quietFor(300, from);
    return {
      code: String(decline.msg['code']),
      reason: String(decline.msg['reason']),
      frames,
    };
  }

  /** Nothing derived from the data left the site: no update, no advertisement, no statistics. */
  function nothingLeft(frames: SiteFrame[]): void {
    expect(frames.map((f) => f.type).filter((t) => !HARMLESS.has(t))).toEqual([]);
  }

  const requireDp = parsePolicy({ dp: { level: 'record', epsilonLimit: 1 } });
  const DP_ROUND = {
    level: 'record',
    noiseMultiplier: 3,
    clipNorm: 1,
    delta: 1e-5,
    epsilonLimit: 10,
    siteSamplingRate: null,
    survivorsAssumed: null,
  };

  it('refuses a round with no DP when its policy requires DP (POLICY_DP_REQUIRED)', async () => {
    const a = await connect({ policy: requireDp });
    const r = await refusalOf(a, { secureAggregation: secAgg(a, 4), privacy: null });
    expect(r.code).toBe(ErrorCode.POLICY_DP_REQUIRED);
    nothingLeft(r.frames);
    expect(logs.some((l) => l.startsWith('refused round 1: POLICY_DP_REQUIRED: '))).toBe(true);
  });

  it('with --epsilon-limit 0.01, refuses a one-site round without privacy settings or masking', async () => {
    // The report that opened issue 13: the node trained and sent a plain, un-noised update.
    const a = await connect({ epsilonLimit: 0.01 });
    const r = await refusalOf(a, { secureAggregation: null, privacy: null });
    expect(r.code).toBe(ErrorCode.POLICY_SECURE_AGGREGATION);
    nothingLeft(r.frames);
    // Even with a policy that allows plain rounds, a site that keeps its own limit wants DP.
    node!.stop();
    await agg!.close();
    const b = await connect({
      epsilonLimit: 0.01,
      policy: parsePolicy({ secureAggregation: { required: false } }),
    });
    const r2 = await refusalOf(b, { secureAggregation: null, privacy: null });
    expect(r2.code).toBe(ErrorCode.POLICY_DP_REQUIRED);
    nothingLeft(r2.frames);
  });

  it('refuses a round with masking off (POLICY_SECURE_AGGREGATION)', async () => {
    const a = await connect();
    const r = await refusalOf(a, { secureAggregation: null });
    expect(r.code).toBe(ErrorCode.POLICY_SECURE_AGGREGATION);
    expect(r.reason).toMatch(/would see this site's own update/);
    nothingLeft(r.frames);
  });

  it('refuses a Shamir threshold of half its neighbours or less (POLICY_THRESHOLD)', async () => {
    const a = await connect();
    // 5 sites: 4 neighbours, so t = 2 lets two disjoint pairs collect both kinds of share of one site.
    const r = await refusalOf(a, { secureAggregation: secAgg(a, 5, { threshold: 2 }) });
    expect(r.code).toBe(ErrorCode.POLICY_THRESHOLD);
    nothingLeft(r.frames);
    // Semi-malicious: more than two thirds of the 9 neighbours of 10 sites, so 6 is too few.
    const m = await refusalOf(a, {
      round: 2,
      secureAggregation: secAgg(a, 10, { threshold: 6, threatModel: 'semi-malicious' }),
    });
    expect(m.code).toBe(ErrorCode.POLICY_THRESHOLD);
  });

  it('refuses a Harary graph weaker than chooseGraphParameters gives for the round size', async () => {
    const a = await connect();
    const g = chooseGraphParameters(100, { dropoutRate: 0.1, threatModel: 'semi-honest' });
    // Too sparse to keep the honest sites connected.
    const sparse = await refusalOf(a, {
      secureAggregation: secAgg(a, 100, { graph: 'harary', k: 4, threshold: 3 }),
    });
    expect(sparse.code).toBe(ErrorCode.POLICY_GRAPH);
    // The right degree, a threshold below the security bound for it.
    const weak = await refusalOf(a, {
      round: 2,
      secureAggregation: secAgg(a, 100, { graph: 'harary', k: g.k, threshold: g.t - 2 }),
    });
    expect(weak.code).toBe(ErrorCode.POLICY_THRESHOLD);
    nothingLeft([...sparse.frames, ...weak.frames]);
  });

  it('refuses a sum over fewer sites than its policy minimum (POLICY_MIN_SITES_PER_SUM)', async () => {
    const a = await connect();
    const r = await refusalOf(a, { secureAggregation: secAgg(a, 2, { threshold: 2 }) });
    expect(r.code).toBe(ErrorCode.POLICY_MIN_SITES_PER_SUM);
    nothingLeft(r.frames);
  });

  it('refuses a weaker threat model than its policy requires (POLICY_THREAT_MODEL)', async () => {
    const a = await connect({
      policy: parsePolicy({ secureAggregation: { minThreatModel: 'semi-malicious' } }),
    });
    const r = await refusalOf(a, { secureAggregation: secAgg(a, 4, { threshold: 3 }) });
    expect(r.code).toBe(ErrorCode.POLICY_THREAT_MODEL);
    nothingLeft(r.frames);
  });

  it('refuses noise below its minimum and a clip above its maximum (POLICY_NOISE, POLICY_CLIP)', async () => {
    const a = await connect({
      policy: parsePolicy({
        dp: { level: 'record', epsilonLimit: 5, minNoiseMultiplier: 2, maxClipNorm: 1 },
      }),
    });
    const low = await refusalOf(a, {
      secureAggregation: secAgg(a, 4),
      privacy: { ...DP_ROUND, noiseMultiplier: 0.5 },
    });
    expect(low.code).toBe(ErrorCode.POLICY_NOISE);
    const wide = await refusalOf(a, {
      round: 2,
      secureAggregation: secAgg(a, 4),
      privacy: { ...DP_ROUND, clipNorm: 10 },
    });
    expect(wide.code).toBe(ErrorCode.POLICY_CLIP);
    nothingLeft([...low.frames, ...wide.frames]);
  });

  it('refuses a model it does not accept (POLICY_MODEL_KIND, POLICY_MODEL_SIZE)', async () => {
    const a = await connect({
      policy: parsePolicy({ models: { kinds: ['mlp'], maxParameters: 10 } }),
    });
    const kind = await refusalOf(a, { secureAggregation: secAgg(a, 4) });
    expect(kind.code).toBe(ErrorCode.POLICY_MODEL_KIND);
    node!.stop();
    await agg!.close();
    const b = await connect({
      policy: parsePolicy({ models: { kinds: ['logistic'], maxParameters: 10 } }),
    });
    const size = await refusalOf(b, { secureAggregation: secAgg(b, 4) });
    expect(size.code).toBe(ErrorCode.POLICY_MODEL_SIZE);
    expect(size.reason).toContain('31 parameters');
    nothingLeft([...kind.frames, ...size.frames]);
  });

  it('measures its epsilon at its own delta, never at a larger one the aggregator asks for (POLICY_DELTA)', async () => {
    // The same mechanism costs far less epsilon at delta 0.5: a limit measured there means little.
    const a = await connect({ epsilonLimit: 1 });
    const r = await refusalOf(a, {
      secureAggregation: secAgg(a, 4),
      privacy: { ...DP_ROUND, delta: 0.5 },
    });
    expect(r.code).toBe(ErrorCode.POLICY_DELTA);
    nothingLeft(r.frames);
  });

  it('refuses its statistics in the clear under DP, even where its policy allows plain rounds', async () => {
    const a = await connect({ policy: parsePolicy({ secureAggregation: { required: false } }) });
    const from = a.received.length;
    a.send({
      type: 'stats.request',
      runId: 'run-1',
      round: 1,
      federationId: a.fedId,
      features: 30,
      secureAggregation: null,
      privacy: {
        level: 'record',
        noiseMultiplier: 50,
        delta: 1e-5,
        epsilonLimit: 10,
        statisticsShare: 0.1,
      },
      featureBounds: null,
      deadline: new Date(Date.now() + 60_000).toISOString(),
    });
    const decline = await a.waitFor(
      (f) => f.type === 'round.decline' && a.received.indexOf(f) >= from,
      10_000,
      'the decline',
    );
    expect(decline.msg).toMatchObject({
      stage: 'statistics',
      code: ErrorCode.POLICY_SECURE_AGGREGATION,
    });
    nothingLeft(await a.quietFor(200, from));
  });

  it('lets statistics and evaluation spend no more of its budget than its own share, whatever share is announced', async () => {
    const a = await connect({ epsilonLimit: 1 });
    const request = (round: number, noiseMultiplier: number) => ({
      type: 'stats.request',
      runId: 'run-1',
      round,
      federationId: a.fedId,
      features: 30,
      secureAggregation: { ...secAgg(a, 4), vectorLength: 61 * 8 },
      // The aggregator announces that 90% of the budget may go to statistics and evaluation.
      privacy: {
        level: 'record',
        noiseMultiplier,
        delta: 1e-5,
        epsilonLimit: 1,
        statisticsShare: 0.9,
      },
      featureBounds: { lo: new Array<number>(30).fill(-1e4), hi: new Array<number>(30).fill(1e4) },
      deadline: new Date(Date.now() + 60_000).toISOString(),
    });
    // zCDP 1/(2*10^2) = 0.005: within 90% of epsilon 1's 0.0206, not within the site's own 10%.
    let from = a.received.length;
    a.send(request(1, 10));
    const decline = await a.waitFor(
      (f) => f.type === 'round.decline' && a.received.indexOf(f) >= from,
      10_000,
      'the decline',
    );
    expect(decline.msg).toMatchObject({ stage: 'statistics', code: ErrorCode.BUDGET_EXCEEDED });
    expect(String(decline.msg['reason'])).toMatch(/share of the site's budget/);
    // With noise 40 (zCDP 0.0003) it fits its own share: it joins the sum.
    from = a.received.length;
    a.send(request(2, 40));
    await a.waitFor(
      (f) => f.type === 'secagg.advertise' && a.received.indexOf(f) >= from,
      10_000,
      'its advertisement',
    );
  });

  it('ignores an unsigned round configuration, or one re-signed with another key', async () => {
    const a = await connect();
    const w = weights();
    const from = a.received.length;
    a.sendFrame(
      trainHeader(w, { federationId: a.fedId, secureAggregation: secAgg(a, 4) }),
      w,
      null,
    );
    const impostor = new ServerSigner(generateIdentity());
    a.sendFrame(
      trainHeader(w, { federationId: a.fedId, round: 2, secureAggregation: secAgg(a, 4) }),
      w,
      impostor,
    );
    // A relay that rewrites a signed configuration (privacy: null): the signature no longer holds.
    const signed = a.signer.sign({
      v: PROTOCOL_VERSION,
      id: 'relayed',
      ...trainHeader(w, { federationId: a.fedId, round: 3, privacy: DP_ROUND }),
      dtype: 'float32',
      length: w.length,
    });
    a.sendFrame({ ...signed, privacy: null }, w, null);
    expect(await a.quietFor(1500, from)).toEqual([]);
    const bad = logs.filter((l) => l.includes('BAD_SERVER_SIGNATURE') || l.includes('not signed'));
    expect(bad.length).toBeGreaterThanOrEqual(3);
  });

  it("refuses weights that are not the model the aggregator signed (the frame's payload swapped)", async () => {
    const a = await connect();
    const w = weights();
    const header = trainHeader(w, { federationId: a.fedId, secureAggregation: secAgg(a, 4) });
    const from = a.received.length;
    a.sendFrame(
      header,
      Float32Array.from(w, (x) => x + 1),
    );
    const decline = await a.waitFor(
      (f) => f.type === 'round.decline' && a.received.indexOf(f) >= from,
      10_000,
      'the decline',
    );
    expect(decline.msg['code']).toBe(ErrorCode.BAD_SERVER_SIGNATURE);
    nothingLeft(await a.quietFor(200, from));
  });

  it('refuses a replayed configuration whose deadline has passed (STALE_CONFIGURATION)', async () => {
    const a = await connect();
    const r = await refusalOf(a, {
      secureAggregation: secAgg(a, 4),
      deadline: new Date(Date.now() - 1000).toISOString(),
    });
    expect(r.code).toBe(ErrorCode.STALE_CONFIGURATION);
    nothingLeft(r.frames);
  });

  it('refuses an aggregator whose key is not the one it was given, before it logs in', async () => {
    const a = await ScriptedAggregator.start();
    agg = a;
    const n = new ClientNode({
      server: a.url,
      federationId: a.fedId,
      identity,
      data,
      serverKey: keyFingerprint(generateIdentity().publicKey),
      reconnect: false,
      log: () => undefined,
    });
    node = n;
    const reason = (await n.run()) as { code: string; message: string } | null;
    expect(reason?.code).toBe(ErrorCode.SERVER_KEY_MISMATCH);
    expect(a.received).toEqual([]); // not even a login
  });

  it('pins the key it first sees and refuses a different one later for the same federation', async () => {
    const pins: PinStore = memoryPinStore();
    const fedIdentity = generateIdentity();
    const first = await ScriptedAggregator.start({ identity: fedIdentity });
    await connect({ pins }, first);
    expect(logs.some((l) => l.startsWith('WARNING: first connection to federation'))).toBe(true);
    expect(await pins.get(first.fedId)).toBe(first.publicKey);
    node!.stop();
    await first.close();
    // Another aggregator (another key) answers for the same federation.
    const other = await ScriptedAggregator.start({ federationId: first.fedId });
    agg = other;
    const n = new ClientNode({
      server: other.url,
      federationId: first.fedId,
      identity,
      data,
      pins,
      reconnect: false,
      log: () => undefined,
    });
    node = n;
    const reason = (await n.run()) as { code: string; message: string } | null;
    expect(reason?.code).toBe(ErrorCode.SERVER_KEY_MISMATCH);
    expect(reason?.message).toContain(keyFingerprint(first.publicKey));
    expect(other.received).toEqual([]);
  });

  it('charges the noise it adds itself, whatever the aggregator announces (inflated survivors, forged q)', async () => {
    // Site level without secure aggregation: the aggregator sees this update alone. It announces 50
    // noise-sharing survivors (so that each site would add a fiftieth of the variance) and a
    // sampling rate of 1 while the site's own coin is what decides; the site adds all the noise.
    const z = 1;
    const C = 1;
    const a = await connect({
      policy: parsePolicy({ secureAggregation: { required: false } }),
    });
    const spec = { kind: 'mlp', inputDim: 30, hidden: [64], output: 'binary' } as const;
    const w = new Float32Array(30 * 64 + 64 + 64 + 1).fill(0.01);
    const from = a.received.length;
    a.sendFrame(
      trainHeader(w, {
        federationId: a.fedId,
        modelSpec: spec,
        privacy: {
          level: 'site',
          noiseMultiplier: z,
          clipNorm: C,
          delta: 1e-5,
          epsilonLimit: 100,
          siteSamplingRate: 0.01,
          survivorsAssumed: 50,
        },
      }),
      w,
    );
    const reserve = await a.waitFor(
      (f) => f.type === 'ledger.reserve' && a.received.indexOf(f) >= from,
      30_000,
      'a ledger reservation',
    );
    expect(reserve.msg).toMatchObject({ runId: 'run-1', round: 1, sum: 'update' });
    a.send({
      type: 'ledger.slot',
      refId: reserve.msg['id'],
      runId: 'run-1',
      round: 1,
      sum: 'update',
      seq: 1,
      prevHash: '0'.repeat(64),
      createdAt: new Date().toISOString(),
      epsilonLimit: 100,
      delta: 1e-5,
    });
    const update = await a.waitFor((f) => f.type === 'round.update', 10_000, 'the update');
    // Nothing else in the clear: no record count (every site weighs 1), no unnoised training loss.
    expect(update.msg).not.toHaveProperty('numExamples');
    expect(update.msg).not.toHaveProperty('trainLoss');
    const receipt = update.msg['receipt'] as LedgerEntry;
    // Its receipt records the mechanism it ran: its own coin's rate, no survivors sharing the noise.
    expect(receipt.mechanism).toMatchObject({
      level: 'site',
      samplingRate: 0.01,
      noiseMultiplier: z,
      clipNorm: C,
      survivorsAssumed: null,
    });
    const independent = computeEpsilon({ q: 0.01, sigma: z, steps: 1 }, 1e-5).epsilon;
    expect(receipt.cumulativeEpsilon).toBeCloseTo(independent, 9);
    expect(node!.ledgerEntries()).toEqual([receipt]);
    // The update carries all of the noise, z * C per coordinate, not z * C / sqrt(50).
    const v = update.vector as Float32Array;
    const mean = v.reduce((s, x) => s + x, 0) / v.length;
    const sd = Math.sqrt(v.reduce((s, x) => s + (x - mean) ** 2, 0) / (v.length - 1));
    expect(sd).toBeGreaterThan(0.9 * z * C);
    expect(sd).toBeLessThan(1.1 * z * C);
  });

  describe('at unmasking, with sites the aggregator controls', () => {
    /**
     * Runs a secure round with the node and `colluders` sites whose keys the aggregator holds, up to
     * the unmask step; returns what the honest unmask request would be.
     */
    async function toUnmasking(a: ScriptedAggregator, colluders = 3) {
      const others = Array.from({ length: colluders }, () => generateIdentity());
      const n = colluders + 1;
      const info = secAgg(a, n, {}, others);
      const w = weights();
      const header = trainHeader(w, { federationId: a.fedId, secureAggregation: info });
      const ctx = {
        params: info.params as SecAggParams,
        runId: 'run-1',
        round: 1,
        modelHash: String(header['modelHash']),
        vectorLength: info.vectorLength,
      };
      const keys = new Map(info.roster.map((r) => [r.siteId, fromBase64(r.publicKey, 32)]));
      const server = new SecAggServer({ ...ctx, roster: keys });
      const fakes = others.map(
        (o, i) =>
          new SecAggClient({
            ...ctx,
            siteId: `colluder-${i + 1}`,
            identitySecretKey: fromBase64(o.secretKey, 64),
            roster: keys,
          }),
      );
      const ref = { runId: 'run-1', round: 1, sum: 'update' };
      a.sendFrame(header, w);
      const ad = await a.waitFor((f) => f.type === 'secagg.advertise', 20_000, 'an advertisement');
      server.addAdvertisement(ad.msg['advertisement']);
      for (const f of fakes) server.addAdvertisement(f.advertise());
      const ads = server.closeAdvertising();
      a.send({ type: 'secagg.advertisements', ...ref, advertisements: ads });
      const shares = await a.waitFor((f) => f.type === 'secagg.shares', 20_000, 'key shares');
      server.addShares(a.siteId!, shares.msg['shares'] as unknown[]);
      for (const f of fakes) server.addShares(f.siteId, f.shareKeys(ads));
      server.closeSharing();
      for (const f of fakes) f.receiveShares(server.sharesFor(f.siteId));
      a.send({ type: 'secagg.deliver', ...ref, shares: server.sharesFor(a.siteId!) });
      const masked = await a.waitFor((f) => f.type === 'round.update', 30_000, 'the masked update');
      server.addMaskedInput(a.siteId!, masked.vector as Uint32Array);
      for (const f of fakes)
        server.addMaskedInput(f.siteId, f.maskWeightedUpdate(new Float32Array(31), 0.5));
      server.closeCollection();
      return { honest: server.unmaskRequest(a.siteId!), fakes, ref, header };
    }

    it('answers an honest unmask request (the harness runs the real protocol)', async () => {
      const a = await connect();
      const { honest, ref } = await toUnmasking(a);
      a.send({ type: 'secagg.unmask', ...ref, request: honest });
      const answer = await a.waitFor((f) => f.type === 'secagg.unmasked', 10_000, 'the answer');
      expect((answer.msg['response'] as { siteId: string }).siteId).toBe(a.siteId);
    });

    it('refuses to unmask a sum the aggregator says holds fewer sites than its policy minimum (lying about who participates)', async () => {
      const a = await connect();
      // Three sites, threshold 2: the aggregator claims one of its sites dropped. The protocol could
      // unmask the two left (t = 2), but the site's policy wants at least 3 in any sum.
      const { honest, fakes, ref } = await toUnmasking(a, 2);
      expect(honest.alive).toHaveLength(3);
      const lie = {
        sessionId: honest.sessionId,
        alive: [a.siteId!, fakes[0]!.siteId].sort(),
        dropped: [fakes[1]!.siteId],
      };
      const from = a.received.length;
      a.send({ type: 'secagg.unmask', ...ref, request: lie });
      const decline = await a.waitFor(
        (f) => f.type === 'round.decline' && a.received.indexOf(f) >= from,
        10_000,
        'the refusal',
      );
      expect(decline.msg['code']).toBe(ErrorCode.SECAGG_REFUSED);
      expect(String(decline.msg['reason'])).toContain('TOO_FEW_SURVIVORS');
      // Nothing else: no shares revealed.
      expect((await a.quietFor(500, from)).map((f) => f.type)).toEqual(['round.decline']);
    });

    it('never puts the same values into a second secure sum without DP (POLICY_REPEATED_RELEASE)', async () => {
      const a = await connect();
      const { header } = await toUnmasking(a);
      // The same round configuration again: a second sum of the same update, which subtracted from
      // the first (with this site declared dropped) would give its update.
      const from = a.received.length;
      a.sendFrame(header, weights());
      const decline = await a.waitFor(
        (f) => f.type === 'round.decline' && a.received.indexOf(f) >= from,
        10_000,
        'the refusal',
      );
      expect(decline.msg['code']).toBe(ErrorCode.POLICY_REPEATED_RELEASE);
      nothingLeft(await a.quietFor(300, from));
    });

    it('refuses to reveal both kinds of share of one site', async () => {
      const a = await connect();
      const { honest, fakes, ref } = await toUnmasking(a);
      // Colluder 1 both alive (self-mask share) and dropped (mask-key share): its update exposed.
      const both = {
        sessionId: honest.sessionId,
        alive: honest.alive,
        dropped: [fakes[0]!.siteId],
      };
      const from = a.received.length;
      a.send({ type: 'secagg.unmask', ...ref, request: both });
      // And the honest request after it is refused too: the round's secrets were wiped.
      a.send({ type: 'secagg.unmask', ...ref, request: honest });
      const sent = await a.quietFor(1000, from);
      expect(sent.map((f) => f.type)).not.toContain('secagg.unmasked');
      expect(sent[0]).toMatchObject({ type: 'round.decline' });
      expect(String(sent[0]!.msg['reason'])).toMatch(/both|disjoint|INCONSISTENT/i);
    });
  });

  it('names every refusal for the operator and in onRefused', async () => {
    const a = await connect();
    await refusalOf(a, { secureAggregation: null });
    expect(refusals).toEqual([
      expect.objectContaining({ round: 1, stage: 'training', code: 'POLICY_SECURE_AGGREGATION' }),
    ]);
  });
});
