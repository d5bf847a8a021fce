import {
  assertSiteId,
  compareIds,
  concatBytes,
  encodeFields,
  fromBase64,
  parseIdList,
} from './bytes';
import { SecAggError } from './errors';
import { LABELS, sha256 } from './kdf';
import { merkleLevels, merkleRoot } from './merkle';
import { encodeParams, validateParams, type SecAggParams } from './params';
import { SHARE_BYTES } from './shamir';

/**
 * Protocol messages. All are plain JSON-serialisable objects with bytes in standard base64, so the
 * aggregator can route them over any transport; masked inputs are Uint32Arrays (binary frames).
 */

/** Round 0, site -> all: the site's two fresh X25519 public keys, signed with its identity key. */
export interface Advertisement {
  siteId: string;
  /** X25519 public key for share encryption (32 bytes, base64). */
  encPublicKey: string;
  /** X25519 public key for pairwise mask agreement (32 bytes, base64). */
  maskPublicKey: string;
  /** Ed25519 signature (64 bytes, base64) over advertisementBytes(...). */
  signature: string;
}

/** Round 1, site -> site via the aggregator: one site's shares for one neighbour, encrypted. */
export interface EncryptedShare {
  /** Session id (32 bytes, base64); also inside the ciphertext and its key. */
  sessionId: string;
  from: string;
  to: string;
  /** nacl.secretbox nonce (24 bytes, base64). */
  nonce: string;
  /** nacl.secretbox ciphertext (base64). */
  ciphertext: string;
}

/** Semi-malicious round 3, aggregator -> sites: the sites whose masked input arrived. */
export interface ConsistencyRequest {
  sessionId: string;
  survivors: string[];
}

/** Semi-malicious round 3, site -> aggregator: the site's signature over the survivor list. */
export interface SurvivorSignature {
  siteId: string;
  sessionId: string;
  signature: string;
}

/** Round 4, aggregator -> one site: which of its neighbours survived and which dropped. */
export interface UnmaskRequest {
  sessionId: string;
  /** Sites whose masked input is in the sum (the site itself included): reveal self-mask shares. */
  alive: string[];
  /** Neighbours that shared keys but sent no masked input: reveal mask-key shares. */
  dropped: string[];
  /** Semi-malicious: the full survivor list every signer signed. */
  survivors?: string[];
  /** Semi-malicious: at least threshold signatures over `survivors`. */
  signatures?: SurvivorSignature[];
}

/** One revealed share: of `owner`'s secret, at the responder's x-coordinate. */
export interface RevealedShare {
  owner: string;
  /** 66 bytes, base64. */
  share: string;
}

/** Round 4, site -> aggregator: exactly one kind of share per neighbour. */
export interface UnmaskResponse {
  siteId: string;
  sessionId: string;
  /** Shares of the self-mask seed b of every alive site (the responder's own included). */
  selfMaskShares: RevealedShare[];
  /** Shares of the mask secret key of every dropped neighbour. */
  maskKeyShares: RevealedShare[];
}

/** What identifies a round: bound into every signature, the session id and so every derived key. */
export interface RoundContext {
  runId: string;
  round: number;
  /** Hash of the global model the round starts from (hex, as libs/protocol sha256Hex). */
  modelHash: string;
  params: SecAggParams;
  /** Length of the quantized vector (with the weight coordinate when weighted). */
  vectorLength: number;
  /** Names the vector inside the round (default 'update'); enters the mask key derivation. */
  tensorId: string;
}

/**
 * Checks a round context and returns a normalised frozen copy (BAD_INPUT / BAD_PARAMS otherwise).
 *
 * @example
 * validateContext({ runId: 'run-1', round: 3, modelHash: 'ab12', params, vectorLength: 10, tensorId: 'update' });
 */
export function validateContext(ctx: RoundContext): Readonly<RoundContext> {
  const { runId, round, modelHash, vectorLength, tensorId } = ctx;
  for (const [name, v] of [
    ['runId', runId],
    ['modelHash', modelHash],
    ['tensorId', tensorId],
  ] as const) {
    if (typeof v !== 'string' || v.length < 1 || v.length > 256) {
      throw new SecAggError('BAD_INPUT', `${name} must be a string of 1-256 characters`);
    }
  }
  if (!Number.isSafeInteger(round) || round < 0) {
    throw new SecAggError('BAD_INPUT', 'round must be a non-negative integer');
  }
  if (!Number.isSafeInteger(vectorLength) || vectorLength < 1 || vectorLength > 2 ** 28) {
    throw new SecAggError('BAD_INPUT', 'vectorLength must be an integer in [1, 2^28]');
  }
  return Object.freeze({
    runId,
    round,
    modelHash,
    params: validateParams(ctx.params),
    vectorLength,
    tensorId,
  });
}

function contextFields(ctx: Readonly<RoundContext>): (Uint8Array | string | number)[] {
  return [
    ctx.runId,
    ctx.round,
    ctx.modelHash,
    encodeParams(ctx.params),
    ctx.vectorLength,
    ctx.tensorId,
  ];
}

/**
 * The bytes a site signs to advertise its keys: label, round context (run, round, model hash,
 * parameters, vector length, tensor id), site id and both public keys.
 *
 * @example
 * nacl.sign.detached(advertisementBytes(ctx, 'site-1', encPk, maskPk), identitySecretKey);
 */
export function advertisementBytes(
  ctx: Readonly<RoundContext>,
  siteId: string,
  encPublicKey: Uint8Array,
  maskPublicKey: Uint8Array,
): Uint8Array {
  assertSiteId(siteId);
  // encodeFields is a concatenation of length-prefixed fields, so the label and context (the same
  // for every advertisement of a round: a site checks hundreds) are encoded once per context object.
  // Only frozen contexts (validateContext's) are cached: a mutable one could change under the cache.
  const cacheable = Object.isFrozen(ctx) && Object.isFrozen(ctx.params);
  let prefix = cacheable ? advertisementPrefixes.get(ctx) : undefined;
  if (prefix === undefined) {
    prefix = encodeFields([LABELS.advertisement, ...contextFields(ctx)]);
    if (cacheable) advertisementPrefixes.set(ctx, prefix);
  }
  return concatBytes(prefix, encodeFields([siteId, encPublicKey, maskPublicKey]));
}

const advertisementPrefixes = new WeakMap<Readonly<RoundContext>, Uint8Array>();

/** An advertisement with its bytes decoded. */
export interface ParsedAdvertisement {
  readonly siteId: string;
  readonly encPublicKey: Uint8Array;
  readonly maskPublicKey: Uint8Array;
  readonly signature: Uint8Array;
  readonly wire: Advertisement;
}

function asRecord(value: unknown, what: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new SecAggError('BAD_INPUT', `${what} must be an object`);
  }
  return value as Record<string, unknown>;
}

/**
 * Checks the shape of an advertisement (ids and base64 lengths; not the signature).
 *
 * @example
 * parseAdvertisement(JSON.parse(text)).encPublicKey; // Uint8Array(32)
 */
export function parseAdvertisement(value: unknown): ParsedAdvertisement {
  const r = asRecord(value, 'advertisement');
  assertSiteId(r['siteId'], 'advertisement siteId');
  const siteId = r['siteId'];
  const encPublicKey = fromBase64(r['encPublicKey'], 32, `encPublicKey of ${siteId}`);
  const maskPublicKey = fromBase64(r['maskPublicKey'], 32, `maskPublicKey of ${siteId}`);
  const signature = fromBase64(r['signature'], 64, `signature of ${siteId}`);
  return {
    siteId,
    encPublicKey,
    maskPublicKey,
    signature,
    wire: {
      siteId,
      encPublicKey: r['encPublicKey'] as string,
      maskPublicKey: r['maskPublicKey'] as string,
      signature: r['signature'] as string,
    },
  };
}

/**
 * The hash of one signed advertisement: a leaf of the tree whose root the session id holds.
 *
 * @example
 * advertisementLeaf(parseAdvertisement(ad)); // 32 bytes
 */
export function advertisementLeaf(ad: ParsedAdvertisement): Uint8Array {
  return sha256(
    LEAF_TAG,
    encodeFields([ad.siteId, ad.encPublicKey, ad.maskPublicKey, ad.signature]),
  );
}

const LEAF_TAG = Uint8Array.of(0);

/**
 * The session id: SHA-256 over the label, the round context, the sorted ids of the sites that
 * advertised and the Merkle root of their signed advertisements in that order (sessionIdFrom).
 * Every key the round derives is salted with it, so nothing carries across rounds, runs, models,
 * parameters or key sets, and two sites agree on it only if their advertisements came from the same
 * set.
 *
 * @example
 * const sessionId = computeSessionId(ctx, advertisements); // 32 bytes
 */
export function computeSessionId(
  ctx: Readonly<RoundContext>,
  advertisements: readonly ParsedAdvertisement[],
): Uint8Array {
  const sorted = [...advertisements].sort((a, b) => compareIds(a.siteId, b.siteId));
  const root = merkleRoot(merkleLevels(sorted.map(advertisementLeaf)));
  return sessionIdFrom(
    ctx,
    sorted.map((ad) => ad.siteId),
    root,
  );
}

/**
 * The session id from the sorted ids of the sites that advertised and the Merkle root of their
 * advertisements (merkleLevels over advertisementLeaf in id order): what a site computes from the
 * few advertisements it is sent.
 */
export function sessionIdFrom(
  ctx: Readonly<RoundContext>,
  sortedIds: readonly string[],
  root: Uint8Array,
): Uint8Array {
  return sha256(
    encodeFields([LABELS.session, ...contextFields(ctx), sortedIds.length, ...sortedIds, root]),
  );
}

/**
 * The bytes a site signs in the consistency round: label, session id and the sorted survivor list.
 *
 * @example
 * nacl.sign.detached(survivorsBytes(sessionId, ['a', 'b', 'c']), identitySecretKey);
 */
export function survivorsBytes(sessionId: Uint8Array, survivors: readonly string[]): Uint8Array {
  const sorted = [...survivors].sort(compareIds);
  return encodeFields([LABELS.survivors, sessionId, sorted.length, ...sorted]);
}

/**
 * Checks the shape of an encrypted share.
 *
 * @example
 * parseEncryptedShare(JSON.parse(text)).from; // 'site-2'
 */
export function parseEncryptedShare(value: unknown): EncryptedShare {
  const r = asRecord(value, 'encrypted share');
  assertSiteId(r['from'], 'share sender');
  assertSiteId(r['to'], 'share recipient');
  fromBase64(r['sessionId'], 32, 'share sessionId');
  fromBase64(r['nonce'], 24, 'share nonce');
  const ct = fromBase64(r['ciphertext'], undefined, 'share ciphertext');
  if (ct.length < 16 || ct.length > 4096) {
    throw new SecAggError('BAD_INPUT', 'share ciphertext has an impossible length');
  }
  return {
    sessionId: r['sessionId'] as string,
    from: r['from'],
    to: r['to'],
    nonce: r['nonce'] as string,
    ciphertext: r['ciphertext'] as string,
  };
}

/**
 * Checks the shape of a survivor signature.
 *
 * @example
 * parseSurvivorSignature({ siteId: 'a', sessionId, signature });
 */
export function parseSurvivorSignature(value: unknown): SurvivorSignature {
  const r = asRecord(value, 'survivor signature');
  assertSiteId(r['siteId'], 'signer');
  fromBase64(r['sessionId'], 32, 'signature sessionId');
  fromBase64(r['signature'], 64, 'survivor signature');
  return {
    siteId: r['siteId'],
    sessionId: r['sessionId'] as string,
    signature: r['signature'] as string,
  };
}

/**
 * Checks the shape of a consistency request; survivors come back sorted.
 *
 * @example
 * parseConsistencyRequest({ sessionId, survivors: ['b', 'a'] }).survivors; // ['a', 'b']
 */
export function parseConsistencyRequest(value: unknown): ConsistencyRequest {
  const r = asRecord(value, 'consistency request');
  fromBase64(r['sessionId'], 32, 'request sessionId');
  return {
    sessionId: r['sessionId'] as string,
    survivors: parseIdList(r['survivors'], 'survivors'),
  };
}

/**
 * Checks the shape of an unmask request; lists come back sorted (BAD_INPUT on repeats).
 *
 * @example
 * parseUnmaskRequest({ sessionId, alive: ['a', 'b'], dropped: ['c'] });
 */
export function parseUnmaskRequest(value: unknown): UnmaskRequest {
  const r = asRecord(value, 'unmask request');
  fromBase64(r['sessionId'], 32, 'request sessionId');
  const out: UnmaskRequest = {
    sessionId: r['sessionId'] as string,
    alive: parseIdList(r['alive'], 'alive'),
    dropped: parseIdList(r['dropped'], 'dropped'),
  };
  if (r['survivors'] !== undefined) out.survivors = parseIdList(r['survivors'], 'survivors');
  if (r['signatures'] !== undefined) {
    if (!Array.isArray(r['signatures'])) {
      throw new SecAggError('BAD_INPUT', 'signatures must be an array');
    }
    out.signatures = (r['signatures'] as unknown[]).map(parseSurvivorSignature);
  }
  return out;
}

const SHARE_BASE64_LENGTH = Math.ceil(SHARE_BYTES / 3) * 4;

function parseRevealed(value: unknown, what: string): RevealedShare[] {
  if (!Array.isArray(value)) throw new SecAggError('BAD_INPUT', `${what} must be an array`);
  return (value as unknown[]).map((item) => {
    const r = asRecord(item, `${what} entry`);
    assertSiteId(r['owner'], `${what} owner`);
    if (typeof r['share'] !== 'string' || r['share'].length !== SHARE_BASE64_LENGTH) {
      throw new SecAggError(
        'BAD_INPUT',
        `${what} share of ${r['owner']} must be ${SHARE_BYTES} bytes in base64`,
      );
    }
    return { owner: r['owner'], share: r['share'] };
  });
}

/**
 * Checks the shape of an unmask response (share lengths; not their values).
 *
 * @example
 * parseUnmaskResponse(JSON.parse(text)).selfMaskShares.length;
 */
export function parseUnmaskResponse(value: unknown): UnmaskResponse {
  const r = asRecord(value, 'unmask response');
  assertSiteId(r['siteId'], 'responder');
  fromBase64(r['sessionId'], 32, 'response sessionId');
  return {
    siteId: r['siteId'],
    sessionId: r['sessionId'] as string,
    selfMaskShares: parseRevealed(r['selfMaskShares'], 'selfMaskShares'),
    maskKeyShares: parseRevealed(r['maskKeyShares'], 'maskKeyShares'),
  };
}
