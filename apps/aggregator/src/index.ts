export { startAggregator, type AggregatorOptions, type RunningAggregator } from './server';
export { TrustedProxyError } from './net/client-address';
export {
  openDatabase,
  Database,
  grantToApplicationRole,
  redactUrl,
  type DatabaseOptions,
} from './database/database';
export { generatePassword, setUpRoles, type DatabaseRoles } from './database/database-roles';
export { DatabaseInUseError } from './database/embedded-database';
export type * from './database/rows';
export { ledgerEntryFromRow } from './privacy/ledger.repository';
