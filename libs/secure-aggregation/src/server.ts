import { assertSiteId, bytesEqual, compareIds, fromBase64, toBase64 } from './bytes';
import { defaultBackend, type CryptoBackend } from './backend';
import { isSecAggError, SecAggError, type SecAggErrorCode } from './errors';
import { neighbourhoods, type Neighbourhoods } from './graph';
import { merkleLevels, merkleProof, merkleRoot } from './merkle';
import {
  membershipBitmap,
  type NeighbourhoodAdvertisements,
  type ProvenAdvertisement,
} from './neighbourhood';
import {
  advertisementBytes,
  advertisementLeaf,
  parseAdvertisement,
  parseEncryptedShare,
  parseSurvivorSignature,
  parseUnmaskResponse,
  sessionIdFrom,
  survivorsBytes,
  validateContext,
  type Advertisement,
  type ConsistencyRequest,
  type EncryptedShare,
  type ParsedAdvertisement,
  type RoundContext,
  type SurvivorSignature,
  type UnmaskRequest,
} from './messages';
import type { MaskWorkerPool } from './parallel';
import type { SecAggParams } from './params';
import { MaskAccumulator, maskStreamKey, type MaskSign } from './prg';
import {
  combineShareValuesRobust,
  prepareCombinations,
  PREPARE_MAX_LISTS,
  shareValueFromBase64,
  type RobustCombination,
  type ShareValue,
} from './shamir';

/**
 * The aggregator's states in one round:
 * advertising -closeAdvertising-> sharing -closeSharing-> collecting -closeCollection->
 * (consistency -closeConsistency->, semi-malicious only) unmasking -finish-> finished;
 * aborted(reason) from anywhere when fewer than threshold sites survive or a check fails.
 */
export type ServerState =
  'advertising' | 'sharing' | 'collecting' | 'consistency' | 'unmasking' | 'finished' | 'aborted';

/** Everything the aggregator needs for one round. */
export interface SecAggServerOptions {
  params: SecAggParams;
  /** Enrolled sites: id -> Ed25519 identity public key (32 bytes). */
  roster: ReadonlyMap<string, Uint8Array>;
  runId: string;
  round: number;
  modelHash: string;
  vectorLength: number;
  tensorId?: string;
  backend?: CryptoBackend;
}

/** One mask stream to remove: its AES key and the sign to apply. */
export interface MaskJob {
  key: Uint8Array;
  sign: MaskSign;
}

/**
 * The aggregator's side of a round. It routes messages, keeps only the running sum of masked
 * inputs (each is added on arrival and never stored), and at the end reconstructs the survivors'
 * self-mask seeds and the dropped sites' mask keys from threshold shares and subtracts their masks.
 * It never requests, and refuses to accept, both shares of one site.
 *
 * @example
 * const server = new SecAggServer({ params, roster, runId, round, modelHash, vectorLength });
 * for (const ad of ads) server.addAdvertisement(ad);
 * broadcast(server.closeAdvertising());
 * for (const [from, shares] of sharesBySite) server.addShares(from, shares);
 * server.closeSharing();
 * for (const id of server.sharers()) sendTo(id, server.sharesFor(id));
 * for (const [id, y] of masked) server.addMaskedInput(id, y);
 * server.closeCollection();
 * for (const id of server.survivors()) server.addUnmaskResponse(await ask(id, server.unmaskRequest(id)));
 * const sum = server.finish(); // Uint32Array: sum of the survivors' quantized inputs
 */
export class SecAggServer {
  private readonly ctx: Readonly<RoundContext>;
  private readonly roster: ReadonlyMap<string, Uint8Array>;
  private readonly backend: CryptoBackend;
  private current: ServerState = 'advertising';
  private reason: string | undefined;

  private readonly ads = new Map<string, ParsedAdvertisement>();
  private sid: Uint8Array | undefined;
  private ids: string[] = [];
  private readonly index = new Map<string, number>();
  private graph: Neighbourhoods = new Map();
  /** The Merkle tree of the advertisements in id order (after closeAdvertising). */
  private tree: Uint8Array[][] | undefined;
  /** The parts every site's advertisementsFor message shares, built once. */
  private membership: { sites: string; root: string } | undefined;
  /** Membership proofs (base64) by site, built once each. */
  private readonly proofs = new Map<string, string>();
  private readonly pendingShares = new Map<string, EncryptedShare[]>();
  private readonly inbox = new Map<string, EncryptedShare[]>();
  private u2 = new Set<string>();
  private readonly u3 = new Set<string>();
  private acc: MaskAccumulator | undefined;
  private readonly signatures = new Map<string, SurvivorSignature>();
  private readonly responders = new Set<string>();
  // Revealed shares, decoded to field elements on arrival (no per-share byte arrays to keep).
  private readonly selfMaskShares = new Map<string, ShareValue[]>();
  private readonly maskKeyShares = new Map<string, ShareValue[]>();
  private readonly corrupt: { owner: string; kind: 'self-mask' | 'mask-key'; senders: string[] }[] =
    [];

  constructor(options: SecAggServerOptions) {
    this.ctx = validateContext({
      runId: options.runId,
      round: options.round,
      modelHash: options.modelHash,
      params: options.params,
      vectorLength: options.vectorLength,
      tensorId: options.tensorId ?? 'update',
    });
    if (!(options.roster instanceof Map))
      throw new SecAggError('BAD_INPUT', 'roster must be a Map');
    const roster = new Map<string, Uint8Array>();
    for (const [id, pk] of options.roster) {
      assertSiteId(id, 'roster id');
      if (!(pk instanceof Uint8Array) || pk.length !== 32) {
        throw new SecAggError('BAD_INPUT', `roster key of ${id} must be 32 bytes`);
      }
      roster.set(id, Uint8Array.from(pk));
    }
    this.roster = roster;
    this.backend = options.backend ?? defaultBackend;
  }

  /** The current state. */
  get state(): ServerState {
    return this.current;
  }

  /** Why the round aborted, when it did. */
  get abortReason(): string | undefined {
    return this.reason;
  }

  /** The session id (base64), once advertising is closed. */
  get sessionId(): string | undefined {
    return this.sid === undefined ? undefined : toBase64(this.sid);
  }

  /** The round's parameters. */
  get params(): Readonly<SecAggParams> {
    return this.ctx.params;
  }

  /** Sites that advertised (U1), sorted. */
  advertisers(): string[] {
    return this.current === 'advertising' ? [...this.ads.keys()].sort(compareIds) : [...this.ids];
  }

  /** Sites whose shares were routed (U2), sorted. */
  sharers(): string[] {
    return [...this.u2].sort(compareIds);
  }

  /** Sites whose masked input is in the sum (U3), sorted. */
  survivors(): string[] {
    return [...this.u3].sort(compareIds);
  }

  /** The neighbours of a site in this round's graph. */
  neighboursOf(siteId: string): readonly string[] {
    const n = this.graph.get(siteId);
    if (n === undefined) throw new SecAggError('UNKNOWN_SITE', `${siteId} is not in this round`);
    return n;
  }

  /** Round 0: accepts one advertisement after checking its signature against the roster. */
  addAdvertisement(advertisement: unknown): void {
    this.expect('advertising', 'addAdvertisement');
    const ad = parseAdvertisement(advertisement);
    const pk = this.roster.get(ad.siteId);
    if (pk === undefined) {
      throw new SecAggError('UNKNOWN_SITE', `${ad.siteId} is not enrolled in this federation`);
    }
    if (this.ads.has(ad.siteId))
      throw new SecAggError('DUPLICATE_SITE', `${ad.siteId} advertised twice`);
    if (this.ads.size >= this.ctx.params.maxSites) {
      throw new SecAggError(
        'BAD_INPUT',
        `the round is full (maxSites ${this.ctx.params.maxSites})`,
      );
    }
    const ok = this.backend.ed25519Verify(
      advertisementBytes(this.ctx, ad.siteId, ad.encPublicKey, ad.maskPublicKey),
      ad.signature,
      pk,
    );
    if (!ok)
      throw new SecAggError('BAD_SIGNATURE', `the advertisement of ${ad.siteId} is not signed`);
    this.ads.set(ad.siteId, ad);
  }

  /**
   * Ends round 0: fixes the site list, session id and graph and returns the advertisements to send
   * to every site. Aborts with TOO_FEW_SURVIVORS under the threshold.
   */
  closeAdvertising(): Advertisement[] {
    this.expect('advertising', 'closeAdvertising');
    this.requireAtLeast(this.ads.size, 'sites advertised keys');
    this.ids = [...this.ads.keys()].sort(compareIds);
    this.ids.forEach((id, i) => this.index.set(id, i + 1));
    const levels = merkleLevels(
      this.ids.map((id) => advertisementLeaf(this.ads.get(id) as ParsedAdvertisement)),
    );
    this.tree = levels;
    this.sid = sessionIdFrom(this.ctx, this.ids, merkleRoot(levels));
    this.graph = neighbourhoods(this.ids, this.sid, this.ctx.params);
    for (const id of this.ids) {
      if ((this.graph.get(id) ?? []).length + 1 < this.ctx.params.threshold) {
        this.fail('TOO_FEW_SURVIVORS', `${id} has too few neighbours to hold threshold shares`);
      }
    }
    this.current = 'sharing';
    return this.advertisements();
  }

  /** The advertisements of the round in site-id order (after closeAdvertising). */
  advertisements(): Advertisement[] {
    if (this.sid === undefined) {
      throw new SecAggError(
        'WRONG_STATE',
        'advertisements() is available after closeAdvertising()',
      );
    }
    return this.ids.map((id) => ({ ...(this.ads.get(id) as ParsedAdvertisement).wire }));
  }

  /**
   * What to send one site after closeAdvertising (SecAgg+: it needs only its neighbours' keys): which
   * sites advertised, the root of their advertisements, and the site's own and its neighbours'
   * advertisements with membership proofs. Each site gets its own message, O(k log n) long.
   *
   * @example
   * server.closeAdvertising();
   * for (const id of server.advertisers()) sendTo(id, server.advertisementsFor(id));
   */
  advertisementsFor(siteId: string): NeighbourhoodAdvertisements {
    const levels = this.tree;
    if (levels === undefined) {
      throw new SecAggError(
        'WRONG_STATE',
        'advertisementsFor() is available after closeAdvertising()',
      );
    }
    const nbrs = this.neighboursOf(siteId);
    this.membership ??= {
      sites: membershipBitmap([...this.roster.keys()].sort(compareIds), new Set(this.ids)),
      root: toBase64(merkleRoot(levels)),
    };
    const proven = (id: string): ProvenAdvertisement => {
      let proof = this.proofs.get(id);
      if (proof === undefined) {
        proof = toBase64(merkleProof(levels, (this.index.get(id) as number) - 1));
        this.proofs.set(id, proof);
      }
      return { ...(this.ads.get(id) as ParsedAdvertisement).wire, proof };
    };
    return {
      ...this.membership,
      advertisements: [siteId, ...nbrs].sort(compareIds).map(proven),
    };
  }

  /**
   * Round 1: accepts a site's encrypted shares, exactly one for each of its neighbours, all in this
   * session. The aggregator cannot read them; it only routes them.
   */
  addShares(from: string, shares: readonly unknown[]): void {
    this.expect('sharing', 'addShares');
    assertSiteId(from, 'sender');
    if (!this.index.has(from))
      throw new SecAggError('UNKNOWN_SITE', `${from} did not advertise keys`);
    if (this.pendingShares.has(from))
      throw new SecAggError('DUPLICATE_SHARE', `${from} sent shares twice`);
    if (!Array.isArray(shares)) throw new SecAggError('BAD_INPUT', 'shares must be an array');
    const nbrs = new Set(this.graph.get(from));
    // parseEncryptedShare admits only canonical base64 of 32 bytes: equal text, equal bytes.
    const sid = toBase64(this.sid as Uint8Array);
    const parsed: EncryptedShare[] = [];
    const seen = new Set<string>();
    for (const raw of shares) {
      const msg = parseEncryptedShare(raw);
      if (msg.sessionId !== sid) {
        throw new SecAggError('REPLAYED_SHARE', `a share from ${from} belongs to another session`);
      }
      if (msg.from !== from) {
        throw new SecAggError(
          'MISDIRECTED_SHARE',
          `${from} sent a share claiming to be from ${msg.from}`,
        );
      }
      if (!nbrs.has(msg.to))
        throw new SecAggError('NOT_NEIGHBOUR', `${msg.to} is not a neighbour of ${from}`);
      if (seen.has(msg.to))
        throw new SecAggError('DUPLICATE_SHARE', `${from} sent two shares to ${msg.to}`);
      seen.add(msg.to);
      parsed.push(msg);
    }
    if (seen.size !== nbrs.size) {
      throw new SecAggError(
        'BAD_INPUT',
        `${from} sent ${seen.size} shares for its ${nbrs.size} neighbours`,
      );
    }
    this.pendingShares.set(from, parsed);
  }

  /**
   * Ends round 1: the sites that sent shares (U2) go on. Aborts with TOO_FEW_SURVIVORS under the
   * threshold.
   */
  closeSharing(): void {
    this.expect('sharing', 'closeSharing');
    this.requireAtLeast(this.pendingShares.size, 'sites shared keys');
    this.u2 = new Set(this.pendingShares.keys());
    for (const id of this.u2) this.inbox.set(id, []);
    for (const shares of this.pendingShares.values()) {
      for (const s of shares) this.inbox.get(s.to)?.push(s);
    }
    this.pendingShares.clear();
    this.acc = new MaskAccumulator(this.ctx.vectorLength);
    this.current = 'collecting';
  }

  /** The encrypted shares addressed to a site of U2, from the other sites of U2. */
  sharesFor(siteId: string): EncryptedShare[] {
    if (this.current !== 'collecting') {
      throw new SecAggError(
        'WRONG_STATE',
        `sharesFor() needs state 'collecting'; it is '${this.current}'`,
      );
    }
    const shares = this.inbox.get(siteId);
    if (shares === undefined) throw new SecAggError('UNKNOWN_SITE', `${siteId} did not share keys`);
    return shares.map((s) => ({ ...s }));
  }

  /**
   * Round 2: adds a site's masked input to the running sum (mod 2^32). The vector is not kept.
   */
  addMaskedInput(siteId: string, masked: Uint32Array): void {
    this.expect('collecting', 'addMaskedInput');
    if (!this.u2.has(siteId)) throw new SecAggError('UNKNOWN_SITE', `${siteId} did not share keys`);
    if (this.u3.has(siteId))
      throw new SecAggError('DUPLICATE_SITE', `${siteId} sent two masked inputs`);
    if (!(masked instanceof Uint32Array) || masked.length !== this.ctx.vectorLength) {
      throw new SecAggError(
        'BAD_INPUT',
        `a masked input must be a Uint32Array of length ${this.ctx.vectorLength}`,
      );
    }
    (this.acc as MaskAccumulator).addVector(masked, 1);
    this.u3.add(siteId);
  }

  /**
   * Ends round 2: the sites whose masked input arrived (U3) are the survivors. Returns the
   * consistency request (semi-malicious) or null. Aborts with TOO_FEW_SURVIVORS under the threshold.
   */
  closeCollection(): ConsistencyRequest | null {
    this.expect('collecting', 'closeCollection');
    this.requireAtLeast(this.u3.size, 'sites sent their masked input');
    this.inbox.clear();
    if (this.ctx.params.threatModel === 'semi-malicious') {
      this.current = 'consistency';
      return this.consistencyRequest();
    }
    this.current = 'unmasking';
    return null;
  }

  /** Round 3 (semi-malicious): the survivor list each survivor must sign. */
  consistencyRequest(): ConsistencyRequest {
    this.expect('consistency', 'consistencyRequest');
    return { sessionId: toBase64(this.sid as Uint8Array), survivors: this.survivors() };
  }

  /** Round 3 (semi-malicious): accepts a survivor's signature over the survivor list. */
  addSurvivorSignature(signature: unknown): void {
    this.expect('consistency', 'addSurvivorSignature');
    const sig = parseSurvivorSignature(signature);
    if (!this.u3.has(sig.siteId))
      throw new SecAggError('UNKNOWN_SITE', `${sig.siteId} is not a survivor`);
    if (this.signatures.has(sig.siteId)) {
      throw new SecAggError('DUPLICATE_SITE', `${sig.siteId} signed twice`);
    }
    const sid = this.sid as Uint8Array;
    if (!bytesEqual(fromBase64(sig.sessionId, 32), sid)) {
      throw new SecAggError(
        'SESSION_MISMATCH',
        `the signature of ${sig.siteId} is for another session`,
      );
    }
    const ok = this.backend.ed25519Verify(
      survivorsBytes(sid, this.survivors()),
      fromBase64(sig.signature, 64),
      this.roster.get(sig.siteId) as Uint8Array,
    );
    if (!ok)
      throw new SecAggError('BAD_SIGNATURE', `the survivor signature of ${sig.siteId} is invalid`);
    this.signatures.set(sig.siteId, sig);
  }

  /** Ends round 3: needs threshold signatures. */
  closeConsistency(): void {
    this.expect('consistency', 'closeConsistency');
    this.requireAtLeast(this.signatures.size, 'survivors signed the survivor list');
    this.current = 'unmasking';
  }

  /**
   * Round 4: the unmask request for one survivor, restricted to its neighbourhood: the sites whose
   * masked input is in the sum (alive) and the neighbours that shared keys but sent none (dropped).
   */
  unmaskRequest(siteId: string): UnmaskRequest {
    this.expect('unmasking', 'unmaskRequest');
    this.requireResponder(siteId);
    const { alive, dropped } = this.expectedLists(siteId);
    const req: UnmaskRequest = { sessionId: toBase64(this.sid as Uint8Array), alive, dropped };
    if (this.ctx.params.threatModel === 'semi-malicious') {
      req.survivors = this.survivors();
      req.signatures = [...this.signatures.values()].map((s) => ({ ...s }));
    }
    return req;
  }

  /**
   * Round 4: accepts a survivor's shares after checking they answer exactly its request: self-mask
   * shares for the alive sites, mask-key shares for the dropped neighbours, nothing else.
   */
  addUnmaskResponse(response: unknown): void {
    this.expect('unmasking', 'addUnmaskResponse');
    const resp = parseUnmaskResponse(response);
    this.requireResponder(resp.siteId);
    if (this.responders.has(resp.siteId)) {
      throw new SecAggError('DUPLICATE_SITE', `${resp.siteId} answered twice`);
    }
    if (!bytesEqual(fromBase64(resp.sessionId, 32), this.sid as Uint8Array)) {
      throw new SecAggError(
        'SESSION_MISMATCH',
        `the response of ${resp.siteId} is for another session`,
      );
    }
    const { alive, dropped } = this.expectedLists(resp.siteId);
    const sameOwners = (got: readonly { owner: string }[], want: readonly string[]): boolean => {
      const owners = got.map((s) => s.owner).sort(compareIds);
      return owners.length === want.length && owners.every((o, i) => o === want[i]);
    };
    if (!sameOwners(resp.selfMaskShares, alive) || !sameOwners(resp.maskKeyShares, dropped)) {
      throw new SecAggError(
        'BAD_RESPONSE',
        `${resp.siteId} must reveal self-mask shares for exactly its alive neighbours and mask-key shares for exactly its dropped ones`,
      );
    }
    const x = this.index.get(resp.siteId) as number;
    const decoded = (list: readonly { owner: string; share: string }[]): [string, ShareValue][] =>
      list.map((s) => [s.owner, { x, value: shareValueFromBase64(s.share) }]);
    const self = decoded(resp.selfMaskShares);
    const keys = decoded(resp.maskKeyShares);
    const add = (into: Map<string, ShareValue[]>, [owner, share]: [string, ShareValue]): void => {
      const list = into.get(owner);
      if (list) list.push(share);
      else into.set(owner, [share]);
    };
    for (const s of self) add(this.selfMaskShares, s);
    for (const s of keys) add(this.maskKeyShares, s);
    this.responders.add(resp.siteId);
  }

  /** Sites whose unmask response was accepted. */
  respondersList(): string[] {
    return [...this.responders].sort(compareIds);
  }

  /**
   * Ends the round: reconstructs every survivor's self-mask seed and every dropped site's mask key
   * (checked against its advertised public key), subtracts the masks from the running sum and
   * returns the sum of the survivors' quantized inputs (mod 2^32; read it with dequantize). Aborts
   * with TOO_FEW_SURVIVORS when a secret has fewer than threshold shares.
   */
  finish(): Uint32Array {
    this.expect('unmasking', 'finish');
    const acc = this.acc as MaskAccumulator;
    try {
      // Derive every stream key first (agreements, HKDF), then expand the streams together, chunk by
      // chunk (each chunk of the sum stays in cache while every stream is subtracted from it).
      const jobs: MaskJob[] = [];
      try {
        this.forEachMaskJob((job) => jobs.push(job));
        acc.addStreams(jobs);
      } finally {
        for (const job of jobs) job.key.fill(0);
      }
      return this.complete(acc.read());
    } catch (e) {
      if (this.current !== 'aborted') this.abortWith(e);
      throw e;
    }
  }

  /**
   * How many mask streams finish() will expand: one self mask per survivor and one pairwise mask per
   * (dropped site, surviving neighbour). Times the vector length, the work finish() has to do.
   *
   * @example
   * const parallel = server.maskStreamCount() * vectorLength > 1e7; // worth a worker pool
   */
  maskStreamCount(): number {
    this.expect('unmasking', 'maskStreamCount');
    let count = this.survivors().length;
    for (const [, neighbours] of this.droppedWithSurvivingNeighbours()) count += neighbours.length;
    return count;
  }

  /**
   * Each site that shared keys but sent no masked input, with its neighbours whose input is in the
   * sum: the pairs whose pairwise masks unmasking must remove.
   */
  private droppedWithSurvivingNeighbours(): [string, string[]][] {
    return this.sharers()
      .filter((u) => !this.u3.has(u))
      .map((u) => [u, (this.graph.get(u) ?? []).filter((v) => this.u3.has(v))]);
  }

  /**
   * finish() with the mask expansion split by vector range over a worker pool (same result).
   */
  async finishParallel(pool: MaskWorkerPool): Promise<Uint32Array> {
    this.expect('unmasking', 'finishParallel');
    const acc = this.acc as MaskAccumulator;
    try {
      const jobs: MaskJob[] = [];
      this.forEachMaskJob((job) => jobs.push(job));
      // Straight into shared memory, which the workers unmask in place.
      const sum = new Uint32Array(new SharedArrayBuffer(acc.length * 4));
      acc.readInto(sum);
      try {
        await pool.applyStreams(sum, jobs);
      } finally {
        for (const j of jobs) j.key.fill(0);
      }
      return this.complete(sum);
    } catch (e) {
      if (this.current !== 'aborted') this.abortWith(e);
      throw e;
    }
  }

  /** Aborts the round with a stated reason; wipes the running sum and collected shares. */
  abort(reason: string): void {
    if (this.current === 'finished' || this.current === 'aborted') return;
    this.reason = reason;
    this.current = 'aborted';
    this.release();
  }

  /** Wipes everything the server holds. */
  destroy(): void {
    if (this.current !== 'finished' && this.current !== 'aborted') this.abort('destroyed');
    this.release();
  }

  /**
   * Calls `each` with every mask stream to remove: -PRG(b_u) for every survivor u, and for every
   * dropped u and surviving neighbour v the pairwise mask v added, with the opposite sign.
   */
  private forEachMaskJob(each: (job: MaskJob) => void): void {
    const t = this.ctx.params.threshold;
    const sid = this.sid as Uint8Array;
    const { tensorId } = this.ctx;
    const survivors = this.survivors();
    for (let from = 0; from < survivors.length; from += PREPARE_MAX_LISTS) {
      const chunk = survivors.slice(from, from + PREPARE_MAX_LISTS);
      // Every secret has its own share x-set: their coefficients are computed together, cheaper.
      prepareCombinations(
        chunk.map((u) => this.selfMaskShares.get(u) ?? []),
        t,
      );
      for (const u of chunk) {
        const shares = this.selfMaskShares.get(u) ?? [];
        if (shares.length < t) {
          this.fail(
            'TOO_FEW_SURVIVORS',
            `the self mask of ${u} has ${shares.length} of ${t} required shares`,
          );
        }
        const b = this.rebuild(u, 'self-mask', shares);
        each({ key: maskStreamKey(b, sid, tensorId), sign: -1 });
        b.fill(0);
      }
    }
    const dropped = this.droppedWithSurvivingNeighbours();
    prepareCombinations(
      dropped.slice(0, PREPARE_MAX_LISTS).map(([u]) => this.maskKeyShares.get(u) ?? []),
      t,
    );
    for (const [u, survivingNeighbours] of dropped) {
      const shares = this.maskKeyShares.get(u) ?? [];
      if (shares.length < t) {
        this.fail(
          'TOO_FEW_SURVIVORS',
          `the mask key of dropped site ${u} has ${shares.length} of ${t} required shares`,
        );
      }
      const ad = this.ads.get(u) as ParsedAdvertisement;
      // A rebuilt mask key is checked against the key u advertised; the search for sound shares
      // (if some are corrupt) uses the same check.
      const matches = (candidate: Uint8Array): boolean => {
        const key = this.backend.x25519(candidate);
        const ok = bytesEqual(key.publicKey, ad.maskPublicKey);
        key.destroy();
        return ok;
      };
      const sk = this.rebuild(u, 'mask-key', shares, matches);
      const secret = this.backend.x25519(sk);
      sk.fill(0);
      const xu = this.index.get(u) as number;
      for (const v of survivingNeighbours) {
        const seed = secret.agree((this.ads.get(v) as ParsedAdvertisement).maskPublicKey);
        // v added +PRG(s_uv) when u comes after v, -PRG(s_uv) otherwise; remove it.
        each({
          key: maskStreamKey(seed, sid, tensorId),
          sign: xu > (this.index.get(v) as number) ? -1 : 1,
        });
        seed.fill(0);
      }
      secret.destroy();
    }
  }

  /**
   * Rebuilds u's secret from the revealed shares, past a few corrupt ones (combineShareValuesRobust);
   * the senders of corrupt shares are recorded (corruptShares()). Fails the round with BAD_SHARE when
   * the shares cannot be reconciled.
   */
  private rebuild(
    owner: string,
    kind: 'self-mask' | 'mask-key',
    shares: readonly ShareValue[],
    accept?: (secret: Uint8Array) => boolean,
  ): Uint8Array {
    let result: RobustCombination;
    try {
      result = combineShareValuesRobust(shares, this.ctx.params.threshold, accept);
    } catch (e) {
      if (isSecAggError(e) && e.code === 'BAD_SHARE') {
        this.fail(
          'BAD_SHARE',
          kind === 'mask-key'
            ? `the mask key rebuilt for ${owner} does not match its advertised key (${e.message})`
            : `the self-mask shares of ${owner} are inconsistent (${e.message})`,
        );
      }
      throw e;
    }
    if (result.corrupt.length > 0) {
      this.corrupt.push({
        owner,
        kind,
        senders: result.corrupt.map((x) => this.ids[x - 1] as string),
      });
    }
    return result.secret;
  }

  /**
   * Shares found corrupt while unmasking (and left out: the secret came from the others), by the
   * site whose secret they share and the sites that revealed them. Empty when all were sound.
   */
  corruptShares(): { owner: string; kind: 'self-mask' | 'mask-key'; senders: string[] }[] {
    return this.corrupt.map((c) => ({ ...c, senders: [...c.senders] }));
  }

  private complete(sum: Uint32Array): Uint32Array {
    this.current = 'finished';
    this.release();
    return sum;
  }

  private release(): void {
    this.acc?.destroy();
    this.acc = undefined;
    this.selfMaskShares.clear();
    this.maskKeyShares.clear();
    this.pendingShares.clear();
    this.inbox.clear();
    this.proofs.clear();
    this.tree = undefined;
  }

  private expectedLists(siteId: string): { alive: string[]; dropped: string[] } {
    const known = [siteId, ...(this.graph.get(siteId) ?? []).filter((v) => this.u2.has(v))].sort(
      compareIds,
    );
    return {
      alive: known.filter((v) => this.u3.has(v)),
      dropped: known.filter((v) => !this.u3.has(v)),
    };
  }

  private requireResponder(siteId: string): void {
    assertSiteId(siteId, 'responder');
    if (!this.u3.has(siteId)) throw new SecAggError('UNKNOWN_SITE', `${siteId} is not a survivor`);
    if (this.ctx.params.threatModel === 'semi-malicious' && !this.signatures.has(siteId)) {
      throw new SecAggError('UNKNOWN_SITE', `${siteId} did not sign the survivor list`);
    }
  }

  private requireAtLeast(count: number, what: string): void {
    const t = this.ctx.params.threshold;
    if (count < t) this.fail('TOO_FEW_SURVIVORS', `only ${count} ${what}; the threshold is ${t}`);
  }

  private fail(code: SecAggErrorCode, message: string): never {
    const err = new SecAggError(code, `round aborted: ${message}`);
    this.abortWith(err);
    throw err;
  }

  private abortWith(e: unknown): void {
    this.abort(e instanceof Error ? e.message : String(e));
  }

  private expect(state: ServerState, method: string): void {
    if (this.current !== state) {
      throw new SecAggError(
        this.current === 'aborted' ? 'ABORTED' : 'WRONG_STATE',
        `${method}() needs state '${state}'; the server is '${this.current}'` +
          (this.reason ? ` (${this.reason})` : ''),
      );
    }
  }
}
