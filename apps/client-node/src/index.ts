export {
  ClientNode,
  NodeStopped,
  protocolUrl,
  type ClientNodeOptions,
  type LocalRoundResult,
  type NodeState,
  type Refusal,
} from './client-node';
export {
  DEFAULT_POLICY,
  describePolicy,
  loadPolicyFile,
  parsePolicy,
  PolicyError,
  policyJson,
  type SitePolicy,
} from './policy';
export { checkRound, type PolicyViolation, type RoundOffer } from '@confide/site-runtime';
export {
  filePinStore,
  KNOWN_SERVERS_FILE,
  memoryPinStore,
  parseServerKey,
  type PinStore,
} from './server-trust';
export { DEFAULT_EVAL_FRACTION, HOLDOUT_SEED_FILE, holdoutSeed } from './site-data';
export {
  CONTRIBUTIONS_FILE,
  fileContributionStore,
  memoryContributionStore,
  type ContributionStore,
} from './contributions';
export { isLoopbackHost, socketOptions } from './transport';
export {
  createIdentityFiles,
  loadIdentity,
  NodeError,
  SECRET_KEY_FILE,
  PUBLIC_KEY_FILE,
} from './keys';
export { progressBar, silentProgress, type Progress } from './progress';
export { selectBackend, type BackendPreference } from './backend';
export { fileLedgerStore, LEDGER_FILE } from './ledger-file';
export type { LocalLedgerStore } from '@confide/site-runtime';
