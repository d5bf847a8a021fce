/**
 * @confide/privacy-ledger: the append-only, hash-chained, site-signed epsilon ledger (DESIGN.md 6),
 * its budget arithmetic (RDP composition, projection, forecast) and the auditor's verifier. Pure: the
 * DP accountant is injected, file and database I/O belong to the apps.
 */
export { LedgerError, LedgerErrorCode } from './errors';
export { canonicalJson, sha256Hex } from './canonical';
export {
  addRdp,
  type LedgerAccountant,
  type MechanismParams,
  type NoiseKind,
  noiseOf,
  ordersFingerprint,
  releaseOf,
  type ReleaseKind,
  type ProtectionLevel,
  scaleRdp,
  validateMechanism,
  validateOrders,
} from './mechanism';
export {
  composeHistory,
  cumulativeEpsilon,
  forecastRoundsLeft,
  projectNextRound,
  type RoundProjection,
  type SiteHistory,
} from './budget';
export {
  canonicalEncoding,
  chainHead,
  createReceipt,
  ENTRY_HASH_DOMAIN,
  entryHash,
  GENESIS_HASH,
  type LedgerEntry,
  type LedgerEntryBody,
  type ReceiptInput,
  signReceipt,
  type UnsignedLedgerEntry,
  validateEntryBody,
  validateLedgerEntry,
  verifyReceipt,
} from './entry';
export {
  type Discrepancy,
  type DiscrepancyKind,
  diffEntries,
  RELATIVE_TOLERANCE,
  type VerificationCheck,
  type VerificationReport,
  verifyLedger,
  verifyLedgerExport,
  type VerifyLedgerInput,
} from './verify';
export {
  LEDGER_EXPORT_FORMAT,
  type LedgerExport,
  ledgerToCsv,
  type LedgerSite,
  parseLedgerExport,
  parseLocalLedger,
  serializeLedgerExport,
  serializeLocalEntry,
} from './formats';
export { confideAccountant } from './accountant';
export { recordLevelRelease, siteLevelRelease, sumRelease } from './release';
