import nacl from 'tweetnacl';
import {
  assertSiteId,
  bytesEqual,
  compareIds,
  fromBase64,
  randomBytes,
  toBase64,
  wipe,
} from './bytes';
import { defaultBackend, type CryptoBackend, type X25519Secret } from './backend';
import { SecAggError, type SecAggErrorCode } from './errors';
import { neighboursOf } from './graph';
import { parseNeighbourhood, sortedRosterIds } from './neighbourhood';
import { merkleRootFrom } from './merkle';
import {
  advertisementBytes,
  advertisementLeaf,
  computeSessionId,
  parseAdvertisement,
  parseConsistencyRequest,
  parseEncryptedShare,
  parseUnmaskRequest,
  sessionIdFrom,
  survivorsBytes,
  validateContext,
  type Advertisement,
  type EncryptedShare,
  type ParsedAdvertisement,
  type RevealedShare,
  type RoundContext,
  type SurvivorSignature,
  type UnmaskResponse,
} from './messages';
import type { SecAggParams } from './params';
import type { MaskWorkerPool } from './parallel';
import { MaskAccumulator, maskStreamKey, type MaskStream } from './prg';
import { assertFiniteValues, quantize, weightedQuantizer } from './quantize';
import { openShare, sealShare, shareEncryptionKey, type SharePair } from './share-box';
import { shamirSplit } from './shamir';

/**
 * The states of a site in one round. Each method runs in exactly one state:
 * new -advertise-> advertised -shareKeys-> shared -receiveShares-> ready -maskInput-> masked
 * (-confirmSurvivors-> confirmed, semi-malicious only) -unmask-> unmasked. Any protocol violation
 * moves to aborted (secrets wiped); destroy() to destroyed.
 */
export type ClientState =
  | 'new'
  | 'advertised'
  | 'shared'
  | 'ready'
  | 'masked'
  | 'confirmed'
  | 'unmasked'
  | 'aborted'
  | 'destroyed';

/** Which share a site revealed for a peer: never both for the same peer. */
export type RevealedKind = 'selfMask' | 'maskKey';

/** Everything a site needs for one round. */
export interface SecAggClientOptions {
  siteId: string;
  /** The site's Ed25519 identity secret key (tweetnacl sign, 64 bytes); copied, wiped on destroy. */
  identitySecretKey: Uint8Array;
  /** Enrolled sites of the federation: id -> Ed25519 identity public key (32 bytes). */
  roster: ReadonlyMap<string, Uint8Array>;
  runId: string;
  round: number;
  modelHash: string;
  params: SecAggParams;
  /** Length of the quantized vector (update length + 1 when weighted). */
  vectorLength: number;
  /** Names the vector (default 'update'). */
  tensorId?: string;
  /** Asymmetric primitives (default node:crypto; naclBackend is the reference). */
  backend?: CryptoBackend;
  /** A CSPRNG (default nacl.randomBytes); injectable for tests only. */
  randomBytes?: (n: number) => Uint8Array;
  /** Fills the stochastic-rounding randomness (default node:crypto randomFillSync); tests only. */
  quantizeRandom?: (out: Uint32Array) => void;
  /**
   * Which advertisements to verify: 'neighbours' (default: every key this site uses; with the complete
   * graph that is all of them) or 'all'. Every site verifies its own neighbours, so every
   * advertisement is verified by the sites that use its keys.
   */
  verify?: 'neighbours' | 'all';
  /**
   * The fewest sites whose inputs a sum this site helps unmask may hold, itself included: its own
   * floor on the crowd its input hides in, above the threshold the federation agreed. confirmSurvivors
   * and unmask refuse (TOO_FEW_SURVIVORS, round aborted) below max(minSurvivors, threshold). An
   * integer in [1, maxSites]; default the threshold. In a semi-honest Harary round a site sees only
   * its neighbours, so at most k + 1 there.
   */
  minSurvivors?: number;
}

/**
 * One site's side of a secure-aggregation round (Bonawitz et al. 2017 with SecAgg+ graphs), as a
 * message-oriented state machine independent of transport.
 *
 * @example
 * const client = new SecAggClient({ siteId, identitySecretKey, roster, runId, round, modelHash,
 *                                   params, vectorLength: update.length + 1 });
 * send(client.advertise());
 * send(client.shareKeys(await receiveAdvertisements()));
 * client.receiveShares(await receiveShares());
 * sendBinary(client.maskWeightedUpdate(update, weight));
 * send(client.unmask(await receiveUnmaskRequest()));
 * client.destroy();
 */
export class SecAggClient {
  readonly siteId: string;
  private readonly ctx: Readonly<RoundContext>;
  private readonly roster: ReadonlyMap<string, Uint8Array>;
  private readonly backend: CryptoBackend;
  private readonly random: (n: number) => Uint8Array;
  /** Whether randomBytes was given (tests): keys then come from it, not from the backend. */
  private readonly injectedRandom: boolean;
  private readonly quantizeRandom: ((out: Uint32Array) => void) | undefined;
  private readonly verifyAll: boolean;
  /** max(minSurvivors, threshold): the fewest inputs a sum this site unmasks may hold. */
  private readonly survivorFloor: number;
  private identity: Uint8Array;
  private current: ClientState = 'new';

  private encSecret: X25519Secret | undefined;
  private maskSecret: X25519Secret | undefined;
  private maskSecretKey: Uint8Array | undefined;
  private selfMaskSeed: Uint8Array | undefined;
  private ownAd: Advertisement | undefined;
  private sid: Uint8Array | undefined;
  private ads = new Map<string, ParsedAdvertisement>();
  private index = new Map<string, number>();
  /** The roster's ids sorted (the order of a neighbourhood message's bitmap), once needed. */
  private rosterIds: string[] | undefined;
  private nbrs: readonly string[] = [];
  private incomingKeys = new Map<string, Uint8Array>();
  private ownShares: SharePair | undefined;
  private received = new Map<string, SharePair>();
  private signedSurvivors: readonly string[] | undefined;
  /** Masks expanded ahead of the input (precomputeMasksOn). */
  private premask: Premask | undefined;
  private readonly revealedKinds = new Map<string, RevealedKind>();

  constructor(options: SecAggClientOptions) {
    assertSiteId(options.siteId);
    this.siteId = options.siteId;
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
    const sk = options.identitySecretKey;
    if (!(sk instanceof Uint8Array) || sk.length !== nacl.sign.secretKeyLength) {
      throw new SecAggError('BAD_INPUT', 'identitySecretKey must be a 64-byte tweetnacl sign key');
    }
    const own = roster.get(this.siteId);
    if (own === undefined)
      throw new SecAggError('UNKNOWN_SITE', `${this.siteId} is not in the roster`);
    if (!bytesEqual(sk.subarray(32), own)) {
      throw new SecAggError(
        'BAD_INPUT',
        'identitySecretKey does not match the roster key of this site',
      );
    }
    this.identity = Uint8Array.from(sk);
    this.backend = options.backend ?? defaultBackend;
    this.random = options.randomBytes ?? randomBytes;
    this.injectedRandom = options.randomBytes !== undefined;
    this.quantizeRandom = options.quantizeRandom;
    this.verifyAll = options.verify === 'all';
    this.survivorFloor = survivorFloorOf(this.ctx.params, options.minSurvivors);
  }

  /** The current state. */
  get state(): ClientState {
    return this.current;
  }

  /** The session id (base64) once advertisements are known. */
  get sessionId(): string | undefined {
    return this.sid === undefined ? undefined : toBase64(this.sid);
  }

  /** This site's neighbours in the sharing graph (sorted) once advertisements are known. */
  get neighbours(): readonly string[] {
    return [...this.nbrs];
  }

  /** What this site revealed for each peer in the unmask step (for audit). */
  revealed(): ReadonlyMap<string, RevealedKind> {
    return new Map(this.revealedKinds);
  }

  /**
   * Round 0: makes two fresh X25519 key pairs (share encryption, mask agreement) and returns them
   * signed with the identity key.
   */
  advertise(): Advertisement {
    this.expect('new', 'advertise');
    return this.guard(() => {
      if (this.injectedRandom) {
        // Keys from the test's randomness, so a test can replay a round.
        const encSk = this.random(32);
        this.encSecret = this.backend.x25519(encSk);
        encSk.fill(0);
        this.maskSecretKey = this.random(32);
        this.maskSecret = this.backend.x25519(this.maskSecretKey);
      } else {
        // Generated inside the backend (the mask key's bytes exported: they are Shamir-shared).
        this.encSecret = this.backend.x25519Generate(false).secret;
        const mask = this.backend.x25519Generate(true);
        this.maskSecret = mask.secret;
        this.maskSecretKey = mask.secretKey;
      }
      const encPk = this.encSecret.publicKey;
      const maskPk = this.maskSecret.publicKey;
      const signature = this.backend.ed25519Sign(
        advertisementBytes(this.ctx, this.siteId, encPk, maskPk),
        this.identity,
      );
      this.ownAd = {
        siteId: this.siteId,
        encPublicKey: toBase64(encPk),
        maskPublicKey: toBase64(maskPk),
        signature: toBase64(signature),
      };
      this.current = 'advertised';
      return { ...this.ownAd };
    });
  }

  /**
   * Round 1: checks the advertisements, fixes the session id and the graph, Shamir-shares the
   * self-mask seed and the mask secret key among the neighbours and returns one encrypted share per
   * neighbour. `advertisements` is either the aggregator's NeighbourhoodAdvertisements for this site
   * (which sites advertised, the Merkle root of their advertisements, and exactly this site's own and
   * its neighbours', each proven a member) or the list of every advertisement (enrolled sites, no
   * repeats). Either way this site's own must be unchanged, the keys it uses distinct, every
   * neighbour's signature valid (every site's with verify 'all'), and the sites enough for the
   * threshold.
   */
  shareKeys(advertisements: unknown): EncryptedShare[] {
    this.expect('advertised', 'shareKeys');
    return this.guard(() => {
      const { params } = this.ctx;
      const view = Array.isArray(advertisements)
        ? this.everyAdvertisement(advertisements)
        : this.neighbourhood(advertisements);
      const { ids, sessionId, nbrs, ads } = view;
      const toVerify = this.verifyAll ? ids.filter((id) => id !== this.siteId) : nbrs;
      for (const id of toVerify) {
        const ad = ads.get(id) as ParsedAdvertisement;
        const ok = this.backend.ed25519Verify(
          advertisementBytes(this.ctx, id, ad.encPublicKey, ad.maskPublicKey),
          ad.signature,
          this.roster.get(id) as Uint8Array,
        );
        if (!ok) {
          throw new SecAggError(
            'BAD_SIGNATURE',
            `the advertisement of ${id} is not signed by its identity key (keys substituted or forged)`,
          );
        }
      }
      if (nbrs.length + 1 < params.threshold) {
        throw new SecAggError(
          'TOO_FEW_SURVIVORS',
          `${nbrs.length} neighbours cannot hold ${params.threshold} shares`,
        );
      }
      this.ads = ads;
      this.sid = sessionId;
      this.nbrs = nbrs;
      ids.forEach((id, i) => this.index.set(id, i + 1));

      const holders = [this.siteId, ...nbrs];
      const xs = holders.map((id) => this.index.get(id) as number);
      const b = this.random(32);
      this.selfMaskSeed = b;
      const bShares = shamirSplit(b, xs, params.threshold, this.random);
      const skShares = shamirSplit(
        this.maskSecretKey as Uint8Array,
        xs,
        params.threshold,
        this.random,
      );
      wipe(this.maskSecretKey);
      this.maskSecretKey = undefined;
      this.ownShares = {
        selfMaskShare: (bShares[0] as { y: Uint8Array }).y,
        maskKeyShare: (skShares[0] as { y: Uint8Array }).y,
      };
      const enc = this.encSecret as X25519Secret;
      const out: EncryptedShare[] = [];
      nbrs.forEach((v, i) => {
        const shared = enc.agree((ads.get(v) as ParsedAdvertisement).encPublicKey);
        const outKey = shareEncryptionKey(shared, sessionId, this.siteId, v);
        this.incomingKeys.set(v, shareEncryptionKey(shared, sessionId, v, this.siteId));
        shared.fill(0);
        const pair = {
          selfMaskShare: (bShares[i + 1] as { y: Uint8Array }).y,
          maskKeyShare: (skShares[i + 1] as { y: Uint8Array }).y,
        };
        out.push(sealShare(outKey, sessionId, this.siteId, v, pair, this.random));
        wipe(outKey, pair.selfMaskShare, pair.maskKeyShare);
      });
      enc.destroy();
      this.encSecret = undefined;
      this.current = 'shared';
      return out;
    });
  }

  /**
   * The full list of advertisements: every site enrolled and listed once, no public key twice, this
   * site's own unchanged, at most maxSites and at least threshold of them.
   */
  private everyAdvertisement(advertisements: readonly unknown[]): AdvertisementView {
    const { params } = this.ctx;
    if (advertisements.length > params.maxSites) {
      throw new SecAggError(
        'BAD_INPUT',
        `advertisements must be an array of at most ${params.maxSites}`,
      );
    }
    const ads = new Map<string, ParsedAdvertisement>();
    for (const raw of advertisements) {
      const ad = parseAdvertisement(raw);
      if (ads.has(ad.siteId))
        throw new SecAggError('DUPLICATE_SITE', `${ad.siteId} advertised twice`);
      if (!this.roster.has(ad.siteId)) {
        throw new SecAggError('UNKNOWN_SITE', `${ad.siteId} is not enrolled in this federation`);
      }
      ads.set(ad.siteId, ad);
    }
    this.checkAdvertisements(ads);
    const ids = [...ads.keys()].sort(compareIds);
    const sessionId = computeSessionId(this.ctx, [...ads.values()]);
    return { ids, sessionId, nbrs: neighboursOf(ids, sessionId, params, this.siteId), ads };
  }

  /**
   * A NeighbourhoodAdvertisements message: the session id follows from the sites that advertised and
   * the root of their advertisements, the graph from the session id; the message must then hold
   * exactly this site's and its neighbours' advertisements, each a member of the root's set.
   */
  private neighbourhood(message: unknown): AdvertisementView {
    const { params } = this.ctx;
    if (this.verifyAll) {
      throw new SecAggError(
        'BAD_INPUT',
        "this site verifies every advertisement (verify 'all'): it needs the full list",
      );
    }
    const rosterIds = (this.rosterIds ??= sortedRosterIds(this.roster));
    const most =
      params.graph === 'harary'
        ? Math.min(params.maxSites, (params.k as number) + 1)
        : params.maxSites;
    const view = parseNeighbourhood(message, rosterIds, most);
    const ids = view.ids;
    if (ids.length > params.maxSites) {
      throw new SecAggError('BAD_INPUT', `${ids.length} sites exceed maxSites ${params.maxSites}`);
    }
    const position = new Map<string, number>();
    ids.forEach((id, i) => position.set(id, i));
    if (!position.has(this.siteId)) {
      throw new SecAggError(
        'SUBSTITUTED_KEY',
        "this site's own advertisement is missing from the aggregator's list",
      );
    }
    const sessionId = sessionIdFrom(this.ctx, ids, view.root);
    const nbrs = neighboursOf(ids, sessionId, params, this.siteId);
    const expected = new Set([this.siteId, ...nbrs]);
    const ads = new Map<string, ParsedAdvertisement>();
    for (const { ad, proof } of view.advertisements) {
      if (!expected.has(ad.siteId)) {
        throw new SecAggError(
          'NOT_NEIGHBOUR',
          `the advertisement of ${ad.siteId}, who is not a neighbour of ${this.siteId} in this round's graph`,
        );
      }
      if (ads.has(ad.siteId))
        throw new SecAggError('DUPLICATE_SITE', `${ad.siteId} advertised twice`);
      const root = merkleRootFrom(
        advertisementLeaf(ad),
        position.get(ad.siteId) as number,
        ids.length,
        proof,
      );
      if (!bytesEqual(root, view.root)) {
        throw new SecAggError(
          'SUBSTITUTED_KEY',
          `the advertisement of ${ad.siteId} is not the one the round's key set holds`,
        );
      }
      ads.set(ad.siteId, ad);
    }
    for (const id of expected) {
      if (!ads.has(id)) {
        throw new SecAggError(
          'SUBSTITUTED_KEY',
          `the advertisement of neighbour ${id} is missing from the aggregator's list`,
        );
      }
    }
    this.checkAdvertisements(ads, ids.length);
    return { ids, sessionId, nbrs, ads };
  }

  /**
   * Checks common to both forms: no public key twice among the keys this site uses, its own
   * advertisement unchanged, enough sites for the threshold.
   */
  private checkAdvertisements(
    ads: ReadonlyMap<string, ParsedAdvertisement>,
    sites: number = ads.size,
  ): void {
    const { params } = this.ctx;
    const keys = new Set<string>();
    for (const ad of ads.values()) {
      for (const k of [ad.wire.encPublicKey, ad.wire.maskPublicKey]) {
        if (keys.has(k)) {
          throw new SecAggError('SUBSTITUTED_KEY', `a public key of ${ad.siteId} is used twice`);
        }
        keys.add(k);
      }
    }
    const own = ads.get(this.siteId);
    const mine = this.ownAd as Advertisement;
    if (
      own === undefined ||
      own.wire.encPublicKey !== mine.encPublicKey ||
      own.wire.maskPublicKey !== mine.maskPublicKey ||
      own.wire.signature !== mine.signature
    ) {
      throw new SecAggError(
        'SUBSTITUTED_KEY',
        "this site's own advertisement is missing or altered in the aggregator's list",
      );
    }
    if (sites < params.threshold) {
      throw new SecAggError(
        'TOO_FEW_SURVIVORS',
        `${sites} sites advertised keys; the threshold is ${params.threshold}`,
      );
    }
  }

  /**
   * Round 1 (receive): decrypts and checks the shares the aggregator delivers from neighbours that
   * completed round 1 (this session, addressed to this site, from a neighbour, once each). The
   * senders are the neighbours this site will mask with.
   */
  receiveShares(shares: readonly unknown[]): void {
    this.expect('shared', 'receiveShares');
    this.guard(() => {
      if (!Array.isArray(shares)) throw new SecAggError('BAD_INPUT', 'shares must be an array');
      const sid = this.sid as Uint8Array;
      const neighbours = new Set(this.nbrs);
      for (const raw of shares) {
        const msg = parseEncryptedShare(raw);
        if (!neighbours.has(msg.from)) {
          throw new SecAggError(
            'NOT_NEIGHBOUR',
            `a share from ${msg.from}, who is not a neighbour`,
          );
        }
        if (this.received.has(msg.from)) {
          throw new SecAggError('DUPLICATE_SHARE', `two shares from ${msg.from}`);
        }
        const key = this.incomingKeys.get(msg.from) as Uint8Array;
        this.received.set(msg.from, openShare(key, msg, { sessionId: sid, to: this.siteId }));
      }
      if (this.received.size + 1 < this.ctx.params.threshold) {
        throw new SecAggError(
          'TOO_FEW_SURVIVORS',
          `shares arrived from ${this.received.size} neighbours; ${this.ctx.params.threshold - 1} needed`,
        );
      }
      for (const k of this.incomingKeys.values()) k.fill(0);
      this.incomingKeys.clear();
      this.current = 'ready';
    });
  }

  /**
   * Round 2: y = x + PRG(b) + sum over neighbours v that shared keys of +/-PRG(s_uv) (+ when v comes
   * after this site in id order), mod 2^32. Wipes the self-mask seed and mask key afterwards.
   */
  maskInput(quantized: Uint32Array): Uint32Array {
    this.expect('ready', 'maskInput');
    this.checkQuantized(quantized);
    return this.masked((chunk, start) =>
      chunk.set(quantized.subarray(start, start + chunk.length)),
    );
  }

  /**
   * The masked input: `init` writes each chunk of the input into the accumulator (zero before), then
   * the self mask and every pairwise mask are added to that chunk while it is in cache.
   */
  private masked(init: (chunk: Uint32Array, start: number) => void): Uint32Array {
    if (this.premask) {
      throw new SecAggError(
        'WRONG_STATE',
        'the masks were precomputed on a worker pool: mask with maskWeightedUpdateOn or maskInputOn',
      );
    }
    return this.guard(() => {
      const streams = this.takeStreams();
      const acc = new MaskAccumulator(this.ctx.vectorLength);
      try {
        acc.addStreams(streams, init);
        return acc.read();
      } finally {
        wipeStreams(streams);
        acc.destroy();
      }
    });
  }

  /**
   * Every mask stream of this site, keys derived up front (agreement, HKDF): the self mask, then the
   * pairwise mask with each neighbour that shared keys, in id order. Consumes the mask secrets: the
   * site is 'masked' afterwards whatever happens, so it can never mask twice.
   */
  private takeStreams(): MaskStream[] {
    try {
      return this.streamsFor([...this.received.keys()].sort(compareIds), { self: true });
    } finally {
      this.consumeMaskSecrets();
    }
  }

  /**
   * The stream keys of the self mask (when `self`) and of the pairwise mask with each of `peers`, in
   * that order; with `negate`, each with the opposite sign (to take a mask out again). If a key cannot
   * be derived, the ones already derived are wiped.
   */
  private streamsFor(
    peers: readonly string[],
    opts: { self: boolean; negate?: boolean },
  ): MaskStream[] {
    const streams: MaskStream[] = [];
    try {
      if (opts.self) streams.push(this.selfMaskStream());
      for (const v of peers) {
        const { key, sign } = this.pairwiseStream(v);
        streams.push({ key, sign: opts.negate ? (sign === 1 ? -1 : 1) : sign });
      }
      return streams;
    } catch (e) {
      wipeStreams(streams);
      throw e;
    }
  }

  /** The self-mask stream (PRG of b): its AES key, added. */
  private selfMaskStream(): MaskStream {
    const seed = this.selfMaskSeed as Uint8Array;
    return { key: maskStreamKey(seed, this.sid as Uint8Array, this.ctx.tensorId), sign: 1 };
  }

  /** The pairwise mask stream with neighbour v: its AES key and this site's sign for it. */
  private pairwiseStream(v: string): MaskStream {
    const mask = this.maskSecret as X25519Secret;
    const seed = mask.agree((this.ads.get(v) as ParsedAdvertisement).maskPublicKey);
    try {
      return {
        key: maskStreamKey(seed, this.sid as Uint8Array, this.ctx.tensorId),
        sign: (this.index.get(v) as number) > (this.index.get(this.siteId) as number) ? 1 : -1,
      };
    } finally {
      seed.fill(0);
    }
  }

  /** Wipes the self-mask seed and the mask key: the site is 'masked' and can never mask again. */
  private consumeMaskSecrets(): void {
    wipe(this.selfMaskSeed);
    this.selfMaskSeed = undefined;
    this.maskSecret?.destroy();
    this.maskSecret = undefined;
    this.current = 'masked';
  }

  /**
   * Optional, after shareKeys: starts expanding this site's masks on `pool` before its input exists
   * (they do not depend on it): the self mask and the pairwise mask with every neighbour, in shared
   * memory. maskWeightedUpdateOn / maskInputOn then take out the masks of neighbours that did not
   * share keys (usually none) and add the input, so the expansion overlaps the key-share round trip
   * (and, where a site trains after sharing keys, its training). Same result as without, bit for bit.
   *
   * With `reserveBefore`, that many free bytes precede the masked vector in its buffer, so the
   * caller can frame it for sending without copying it (encodeFrameInPlace of @confide/protocol).
   *
   * @example
   * ws.send(client.shareKeys(ads)); client.precomputeMasksOn(pool, { reserveBefore: FRAME_HEADER_ROOM });
   * client.receiveShares(shares);
   * ws.send(encodeFrameInPlace(header, await client.maskWeightedUpdateOn(pool, update, w)));
   */
  precomputeMasksOn(pool: MaskWorkerPool, options: { reserveBefore?: number } = {}): void {
    if (this.current !== 'shared' && this.current !== 'ready')
      this.expect('shared', 'precomputeMasksOn');
    if (this.premask)
      throw new SecAggError('WRONG_STATE', 'the masks are being precomputed already');
    const room = options.reserveBefore ?? 0;
    if (!Number.isSafeInteger(room) || room < 0 || room % 8 !== 0 || room > 1 << 20) {
      throw new SecAggError('BAD_INPUT', 'reserveBefore must be a multiple of 8 in [0, 2^20]');
    }
    this.guard(() => {
      const peers = [...this.nbrs].sort(compareIds);
      const streams = this.streamsFor(peers, { self: true });
      const length = this.ctx.vectorLength;
      const vector = new Uint32Array(new SharedArrayBuffer(room + length * 4), room, length);
      const masks = pool
        .applyStreams(vector, streams)
        .then(
          () => vector,
          (e: unknown) => {
            vector.fill(0);
            throw e;
          },
        )
        .finally(() => wipeStreams(streams));
      masks.catch(() => undefined); // observed by the masking call
      this.premask = { vector: masks, peers };
    });
  }

  /**
   * Round 2 for a float update: quantizes (clip, scale, stochastic rounding) and masks. The vector
   * length of the round must equal update.length.
   */
  maskUpdate(update: ArrayLike<number>): Uint32Array {
    this.expect('ready', 'maskUpdate');
    return this.maskInput(quantize(update, this.ctx.params));
  }

  /**
   * Round 2 for weighted averaging: masks [w * update, w] (see appendWeight). The vector length of the
   * round must equal update.length + 1; weight in [0, 1].
   */
  maskWeightedUpdate(update: ArrayLike<number>, weight: number): Uint32Array {
    this.expect('ready', 'maskWeightedUpdate');
    // Quantized chunk by chunk straight into the accumulator: the same values as
    // maskInput(quantizeWeighted(update, weight, params)), without a whole quantized copy.
    // Refused before anything is masked, as quantizeWeighted would: the round can still go on.
    this.checkUpdateLength(update);
    assertFiniteValues(update);
    const q = weightedQuantizer(update, weight, this.ctx.params, this.quantizeRandom);
    try {
      return this.masked((chunk, start) => q.quantizeChunk(chunk, start));
    } finally {
      q.destroy();
    }
  }

  /**
   * maskWeightedUpdate with the masks added on `pool`'s worker threads: the update is quantized here,
   * the keystream is expanded and added there (split by vector range), so this thread's event loop
   * stays free and its heap never sees the keystream. The same values as
   * maskInput(quantizeWeighted(update, weight, params)), tested. With precomputed masks
   * (precomputeMasksOn) the update is quantized straight into them once they are expanded, so it
   * must not change until the returned promise settles; NaN and Infinity are refused at the call.
   *
   * @example
   * const pool = new MaskWorkerPool(1); // one per site process, reused every round
   * ws.send(encodeFrame(header, await client.maskWeightedUpdateOn(pool, update, weight)));
   */
  async maskWeightedUpdateOn(
    pool: MaskWorkerPool,
    update: ArrayLike<number>,
    weight: number,
  ): Promise<Uint32Array> {
    this.expect('ready', 'maskWeightedUpdateOn');
    // Checked (length, weight, NaN and Infinity) before any secret is used: the round can still go on.
    this.checkUpdateLength(update);
    const q = weightedQuantizer(update, weight, this.ctx.params, this.quantizeRandom);
    if (this.premask) {
      try {
        // Quantized straight into the precomputed masks, once they are ready: no second vector.
        assertFiniteValues(update);
        return await this.addToPremask(pool, (masks) => q.quantizeAll(masks, true));
      } finally {
        q.destroy();
      }
    }
    // Straight into memory the pool's workers share, which they then mask in place: no copies.
    const quantized = new Uint32Array(new SharedArrayBuffer(q.length * 4));
    try {
      q.quantizeAll(quantized);
    } finally {
      q.destroy(); // the quantizer's copy of the last chunk and its randomness, before masking
    }
    return this.maskOn(pool, quantized);
  }

  /**
   * maskInput with the masks added on `pool`'s worker threads (see maskWeightedUpdateOn). With
   * precomputed masks `quantized` is added to them once they are expanded, so it must not change
   * (or be wiped) until the returned promise settles.
   */
  async maskInputOn(pool: MaskWorkerPool, quantized: Uint32Array): Promise<Uint32Array> {
    this.expect('ready', 'maskInputOn');
    this.checkQuantized(quantized);
    if (this.premask) {
      return this.addToPremask(pool, (masks) => {
        for (let i = 0; i < masks.length; i++) {
          masks[i] = ((masks[i] as number) + (quantized[i] as number)) >>> 0;
        }
      });
    }
    const copy = new Uint32Array(new SharedArrayBuffer(quantized.byteLength));
    copy.set(quantized);
    return this.maskOn(pool, copy);
  }

  private checkQuantized(quantized: Uint32Array): void {
    if (!(quantized instanceof Uint32Array) || quantized.length !== this.ctx.vectorLength) {
      throw new SecAggError(
        'BAD_INPUT',
        `the quantized input must be a Uint32Array of length ${this.ctx.vectorLength}`,
      );
    }
  }

  /** A weighted update carries one value fewer than the round's vector (the weight is appended). */
  private checkUpdateLength(update: ArrayLike<number>): void {
    if (update.length + 1 !== this.ctx.vectorLength) {
      throw new SecAggError(
        'BAD_INPUT',
        `the update must have ${this.ctx.vectorLength - 1} values (the weight makes ${this.ctx.vectorLength})`,
      );
    }
  }

  /** Adds every mask to `vector` (owned by this call) on the pool; aborts the site on failure. */
  private async maskOn(pool: MaskWorkerPool, vector: Uint32Array): Promise<Uint32Array> {
    const streams = this.guard(() => this.takeStreams());
    try {
      await pool.applyStreams(vector, streams);
      return vector;
    } catch (e) {
      vector.fill(0);
      this.abort();
      throw e;
    } finally {
      wipeStreams(streams);
    }
  }

  /**
   * The precomputed masks, after taking out the pairwise masks of neighbours that did not share keys
   * (each added with the opposite sign), with the input added by `addInput`: the same as masking the
   * input afresh. Aborts the site on failure.
   */
  private async addToPremask(
    pool: MaskWorkerPool,
    addInput: (masks: Uint32Array) => void,
  ): Promise<Uint32Array> {
    const premask = this.premask as Premask;
    // A failure here aborts the site, which also zeroes the precomputed masks (still this.premask).
    const corrections = this.guard(() => {
      try {
        const missing = premask.peers.filter((v) => !this.received.has(v));
        return this.streamsFor(missing, { self: false, negate: true });
      } finally {
        this.consumeMaskSecrets();
      }
    });
    this.premask = undefined;
    let masks: Uint32Array | undefined;
    try {
      masks = await premask.vector;
      if (corrections.length > 0) await pool.applyStreams(masks, corrections);
      addInput(masks);
      return masks;
    } catch (e) {
      masks?.fill(0);
      this.abort();
      throw e;
    } finally {
      wipeStreams(corrections);
    }
  }

  /**
   * Round 3 (semi-malicious only): signs the aggregator's list of sites whose masked input arrived,
   * after checking it is a list of this round's sites, this site included, at least
   * max(minSurvivors, threshold) long.
   */
  confirmSurvivors(request: unknown): SurvivorSignature {
    this.expect('masked', 'confirmSurvivors');
    if (this.ctx.params.threatModel !== 'semi-malicious') {
      throw new SecAggError('WRONG_STATE', 'semi-honest rounds have no consistency round');
    }
    return this.guard(() => {
      const req = parseConsistencyRequest(request);
      this.checkSession(req.sessionId);
      const survivors = req.survivors;
      for (const id of survivors) {
        if (!this.index.has(id)) {
          throw new SecAggError('INCONSISTENT_LISTS', `${id} is not a site of this round`);
        }
        if (id !== this.siteId && this.nbrs.includes(id) && !this.received.has(id)) {
          throw new SecAggError('INCONSISTENT_LISTS', `${id} is listed but never shared keys`);
        }
      }
      if (!survivors.includes(this.siteId)) {
        throw new SecAggError(
          'INCONSISTENT_LISTS',
          'this site sent its masked input but is not listed',
        );
      }
      this.checkSurvivorFloor(survivors.length, 'survivors');
      const signature = this.backend.ed25519Sign(
        survivorsBytes(this.sid as Uint8Array, survivors),
        this.identity,
      );
      this.signedSurvivors = survivors;
      this.current = 'confirmed';
      return {
        siteId: this.siteId,
        sessionId: toBase64(this.sid as Uint8Array),
        signature: toBase64(signature),
      };
    });
  }

  /**
   * Round 4: answers the aggregator's unmask request once. Refuses (and aborts) a request whose lists
   * overlap, name non-neighbours, disagree with the neighbours that shared keys, leave out this site,
   * are shorter than the threshold, name fewer survivors than max(minSurvivors, threshold) (the alive
   * list; semi-malicious: the signed survivor list), or (semi-malicious) disagree with the signed
   * survivor list. Reveals the self-mask share of every alive site and the mask-key share of every
   * dropped neighbour, never both for one site; a second request is refused with REPEATED_UNMASK.
   */
  unmask(request: unknown): UnmaskResponse {
    if (this.current === 'unmasked') {
      throw new SecAggError(
        'REPEATED_UNMASK',
        'this site already answered an unmask request in this round; a second one is refused',
      );
    }
    const malicious = this.ctx.params.threatModel === 'semi-malicious';
    this.expect(malicious ? 'confirmed' : 'masked', 'unmask');
    return this.guard(() => {
      const req = parseUnmaskRequest(request);
      this.checkSession(req.sessionId);
      const t = this.ctx.params.threshold;
      const alive = new Set(req.alive);
      for (const id of req.dropped) {
        if (alive.has(id)) {
          throw new SecAggError(
            'OVERLAPPING_LISTS',
            `${id} is listed both alive and dropped: revealing both of its shares would unmask it`,
          );
        }
      }
      const neighbours = new Set(this.nbrs);
      for (const id of [...req.alive, ...req.dropped]) {
        if (id !== this.siteId && !neighbours.has(id)) {
          throw new SecAggError('NOT_NEIGHBOUR', `${id} is not a neighbour of ${this.siteId}`);
        }
      }
      if (!alive.has(this.siteId)) {
        throw new SecAggError(
          'INCONSISTENT_LISTS',
          'this site sent its masked input but is not alive',
        );
      }
      const known = new Set([this.siteId, ...this.received.keys()]);
      const listed = req.alive.length + req.dropped.length;
      if (listed !== known.size || ![...alive, ...req.dropped].every((id) => known.has(id))) {
        throw new SecAggError(
          'INCONSISTENT_LISTS',
          'the lists must classify exactly the neighbours that shared keys with this site',
        );
      }
      if (req.alive.length < t) {
        throw new SecAggError(
          'TOO_FEW_SURVIVORS',
          `${req.alive.length} alive sites; the threshold is ${t}`,
        );
      }
      // Semi-malicious requests name every survivor (signed, checked against alive and dropped);
      // semi-honest ones only this site's neighbours, a lower bound on the inputs in the sum.
      if (malicious) {
        this.checkConsistency(req.survivors, req.signatures, alive, req.dropped);
        this.checkSurvivorFloor((req.survivors as string[]).length, 'survivors');
      } else {
        this.checkSurvivorFloor(req.alive.length, 'alive sites');
      }

      const selfMaskShares: RevealedShare[] = [];
      const maskKeyShares: RevealedShare[] = [];
      for (const owner of req.alive) {
        const pair = owner === this.siteId ? this.ownShares : this.received.get(owner);
        selfMaskShares.push({ owner, share: toBase64((pair as SharePair).selfMaskShare) });
        this.revealedKinds.set(owner, 'selfMask');
      }
      for (const owner of req.dropped) {
        const pair = this.received.get(owner) as SharePair;
        maskKeyShares.push({ owner, share: toBase64(pair.maskKeyShare) });
        this.revealedKinds.set(owner, 'maskKey');
      }
      this.wipeSecrets();
      this.current = 'unmasked';
      return {
        siteId: this.siteId,
        sessionId: toBase64(this.sid as Uint8Array),
        selfMaskShares,
        maskKeyShares,
      };
    });
  }

  /** Abandons the round: wipes every secret and refuses further calls. */
  abort(): void {
    if (this.current === 'destroyed') return;
    this.wipeSecrets();
    this.current = 'aborted';
  }

  /** Wipes every secret (keys, seeds, shares, the identity key copy); the client is then unusable. */
  destroy(): void {
    this.wipeSecrets();
    this.current = 'destroyed';
  }

  private checkConsistency(
    survivors: readonly string[] | undefined,
    signatures: readonly SurvivorSignature[] | undefined,
    alive: ReadonlySet<string>,
    dropped: readonly string[],
  ): void {
    const signed = this.signedSurvivors as readonly string[];
    if (survivors === undefined || signatures === undefined) {
      throw new SecAggError('CONSISTENCY_FAILED', 'the request carries no signed survivor list');
    }
    if (survivors.length !== signed.length || survivors.some((id, i) => id !== signed[i])) {
      throw new SecAggError(
        'CONSISTENCY_FAILED',
        'the survivor list differs from the one this site signed',
      );
    }
    const survivorSet = new Set(survivors);
    const msg = survivorsBytes(this.sid as Uint8Array, survivors);
    const signers = new Set<string>();
    for (const s of signatures) {
      if (!survivorSet.has(s.siteId) || signers.has(s.siteId)) {
        throw new SecAggError(
          'CONSISTENCY_FAILED',
          `unexpected or repeated signature of ${s.siteId}`,
        );
      }
      this.checkSession(s.sessionId, 'CONSISTENCY_FAILED');
      const ok = this.backend.ed25519Verify(
        msg,
        fromBase64(s.signature, 64, 'survivor signature'),
        this.roster.get(s.siteId) as Uint8Array,
      );
      if (!ok) {
        throw new SecAggError(
          'CONSISTENCY_FAILED',
          `the survivor signature of ${s.siteId} is invalid`,
        );
      }
      signers.add(s.siteId);
    }
    if (signers.size < this.ctx.params.threshold) {
      throw new SecAggError(
        'CONSISTENCY_FAILED',
        `${signers.size} sites signed the survivor list; ${this.ctx.params.threshold} needed`,
      );
    }
    for (const id of alive) {
      if (!survivorSet.has(id)) {
        throw new SecAggError('INCONSISTENT_LISTS', `${id} is alive but not in the signed list`);
      }
    }
    for (const id of dropped) {
      if (survivorSet.has(id)) {
        throw new SecAggError('INCONSISTENT_LISTS', `${id} is dropped but in the signed list`);
      }
    }
  }

  /** Refuses to help reveal a sum of fewer inputs than this site's floor. */
  private checkSurvivorFloor(count: number, what: string): void {
    if (count >= this.survivorFloor) return;
    const t = this.ctx.params.threshold;
    throw new SecAggError(
      'TOO_FEW_SURVIVORS',
      count < t
        ? `${count} ${what}; the threshold is ${t}`
        : `${count} ${what}; this site requires at least ${this.survivorFloor} (minSurvivors)`,
    );
  }

  private checkSession(sessionId: string, code: SecAggErrorCode = 'SESSION_MISMATCH'): void {
    if (!bytesEqual(fromBase64(sessionId, 32, 'sessionId'), this.sid as Uint8Array)) {
      throw new SecAggError(code, 'the message belongs to another session (round, run or key set)');
    }
  }

  private expect(state: ClientState, method: string): void {
    if (this.current !== state) {
      throw new SecAggError(
        this.current === 'aborted' ? 'ABORTED' : 'WRONG_STATE',
        `${method}() needs state '${state}'; the client is '${this.current}'`,
      );
    }
  }

  /** Runs a protocol step; any failure aborts the round for this site (secrets wiped). */
  private guard<T>(step: () => T): T {
    try {
      return step();
    } catch (e) {
      this.abort();
      throw e;
    }
  }

  private wipeSecrets(): void {
    this.encSecret?.destroy();
    this.maskSecret?.destroy();
    this.encSecret = undefined;
    this.maskSecret = undefined;
    wipe(this.maskSecretKey, this.selfMaskSeed, this.identity);
    this.maskSecretKey = undefined;
    this.selfMaskSeed = undefined;
    for (const k of this.incomingKeys.values()) k.fill(0);
    this.incomingKeys.clear();
    for (const p of this.received.values()) wipe(p.selfMaskShare, p.maskKeyShare);
    this.received.clear();
    if (this.ownShares) wipe(this.ownShares.selfMaskShare, this.ownShares.maskKeyShare);
    this.ownShares = undefined;
    // Precomputed masks not used: zeroed once their expansion is done.
    this.premask?.vector.then((v) => v.fill(0)).catch(() => undefined);
    this.premask = undefined;
  }
}

/**
 * max(minSurvivors, threshold), after checking minSurvivors is an integer in [1, maxSites] that a
 * request can meet: a semi-honest Harary request lists at most the k + 1 sites of this site's
 * neighbourhood, so a higher floor would refuse every round.
 */
function survivorFloorOf(params: Readonly<SecAggParams>, minSurvivors: number | undefined): number {
  if (minSurvivors === undefined) return params.threshold;
  if (!Number.isSafeInteger(minSurvivors) || minSurvivors < 1 || minSurvivors > params.maxSites) {
    throw new SecAggError(
      'BAD_INPUT',
      `minSurvivors must be an integer in [1, maxSites = ${params.maxSites}]`,
    );
  }
  const neighboursOnly = params.graph === 'harary' && params.threatModel === 'semi-honest';
  if (neighboursOnly && minSurvivors > (params.k as number) + 1) {
    throw new SecAggError(
      'BAD_INPUT',
      `minSurvivors ${minSurvivors} exceeds the k + 1 = ${(params.k as number) + 1} sites a semi-honest Harary round shows a site: every round would be refused (the semi-malicious model names every survivor)`,
    );
  }
  return Math.max(minSurvivors, params.threshold);
}

/** The advertisements shareKeys works from, whichever form they came in. */
interface AdvertisementView {
  /** Every site that advertised, sorted. */
  ids: string[];
  sessionId: Uint8Array;
  /** This site's neighbours, sorted. */
  nbrs: string[];
  /** At least this site's and its neighbours' advertisements. */
  ads: Map<string, ParsedAdvertisement>;
}

/** Masks expanded before the input exists: their sum (once expanded) and the neighbours it covers. */
interface Premask {
  vector: Promise<Uint32Array>;
  peers: readonly string[];
}

/** Zeroes the AES keys of mask streams once they are applied (or no longer needed). */
function wipeStreams(streams: readonly MaskStream[]): void {
  for (const { key } of streams) key.fill(0);
}
