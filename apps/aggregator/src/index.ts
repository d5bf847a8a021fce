export { startAggregator, type AggregatorOptions, type RunningAggregator } from './server';
export { TrustedProxyError } from './net/client-address';
export { openDatabase, Database, type DatabaseOptions } from './database/database';
export type * from './database/rows';
export { ledgerEntryFromRow } from './privacy/ledger.repository';
