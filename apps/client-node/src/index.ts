export {
  ClientNode,
  NodeStopped,
  protocolUrl,
  type ClientNodeOptions,
  type LocalRoundResult,
} from './client-node';
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
export type { LocalLedgerStore } from './client-node';
