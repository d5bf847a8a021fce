/**
 * @confide/secure-aggregation: secure aggregation of Bonawitz et al. 2017 ("Practical Secure
 * Aggregation for Privacy-Preserving Machine Learning") with the sparse neighbour graphs of SecAgg+
 * (Bell et al. 2020). Pure, message-oriented state machines for the site (SecAggClient) and the
 * aggregator (SecAggServer), plus the primitives they are built from. See README.md for the design.
 */
export { SecAggError, SECAGG_ERROR_MESSAGES, isSecAggError, type SecAggErrorCode } from './errors';
export {
  toBase64,
  fromBase64,
  encodeFields,
  decodeFields,
  bytesEqual,
  wipe,
  compareIds,
} from './bytes';
export { LABELS, sha256, hkdfSha256 } from './kdf';
export {
  naclBackend,
  nodeBackend,
  defaultBackend,
  type CryptoBackend,
  type X25519Secret,
} from './backend';
export {
  SHAMIR_PRIME,
  SECRET_BYTES,
  SHARE_BYTES,
  shamirSplit,
  shamirCombine,
  lagrangeAtZero,
  shareValue,
  shareValueFromBase64,
  combineShareValues,
  type Share,
  type ShareValue,
} from './shamir';
export {
  maskStreamKey,
  expandMaskInto,
  MaskAccumulator,
  CHUNK_ELEMENTS,
  type MaskSign,
} from './prg';
export { MaskWorkerPool } from './parallel';
export {
  quantize,
  quantizeWeighted,
  dequantize,
  maxQuantized,
  checkHeadroom,
  chooseScale,
  appendWeight,
  averageWeighted,
  type QuantizationParams,
} from './quantize';
// Exact sums of reals, in a round with clip FIXED_POINT_CLIP and scale FIXED_POINT_SCALE, e.g.
// each site client.maskInput(encodeFixedPoint(stats)); then decodeFixedPointSum(server.finish()).
export {
  encodeFixedPoint,
  decodeFixedPointSum,
  FIXED_POINT_LIMBS,
  FIXED_POINT_MAX_SITES,
  FIXED_POINT_FRACTION_BITS,
  FIXED_POINT_CLIP,
  FIXED_POINT_SCALE,
  WIDE_FIXED_POINT_LIMBS,
  encodeWideFixedPoint,
  decodeWideFixedPointSum,
  type FixedPointOptions,
} from './fixed-point';
export {
  chooseGraphParameters,
  hararyRequirements,
  majorityThreshold,
  neighbourhoods,
  neighboursOf,
  graphPermutation,
  hararyRing,
  type GraphKind,
  type ThreatModel,
  type GraphParameters,
  type GraphRequirements,
  type Neighbourhoods,
} from './graph';
export { validateParams, encodeParams, type SecAggParams } from './params';
export { completeThreshold, sumGraph, type SumGraph, type SumGraphSettings } from './round-graph';
export {
  advertisementBytes,
  advertisementLeaf,
  computeSessionId,
  sessionIdFrom,
  survivorsBytes,
  parseAdvertisement,
  validateContext,
  type Advertisement,
  type EncryptedShare,
  type ConsistencyRequest,
  type SurvivorSignature,
  type UnmaskRequest,
  type UnmaskResponse,
  type RevealedShare,
  type RoundContext,
  type ParsedAdvertisement,
} from './messages';
export {
  membershipBitmap,
  parseNeighbourhood,
  type NeighbourhoodAdvertisements,
  type ProvenAdvertisement,
} from './neighbourhood';
export { merkleLevels, merkleRoot, merkleProof, merkleRootFrom } from './merkle';
export { shareEncryptionKey, sealShare, openShare, type SharePair } from './share-box';
export {
  SecAggClient,
  type SecAggClientOptions,
  type ClientState,
  type RevealedKind,
} from './client';
export { SecAggServer, type SecAggServerOptions, type ServerState, type MaskJob } from './server';
export {
  simulateRound,
  simulateUntilFinish,
  type SimulatedRound,
  type SimulatedResult,
  type SimulatedRoundState,
} from './simulate';
