import { InitialSchema1763900000000 } from './1763900000000-initial-schema';
import { PrivacyLedger1763900000200 } from './1763900000200-privacy-ledger';
import { Schedules1763900000300 } from './1763900000300-schedules';
import { LedgerIntegerNoise1763900000400 } from './1763900000400-ledger-integer-noise';
import { LedgerReleaseKind1763900000500 } from './1763900000500-ledger-release-kind';
import { SiteMaxWeight1763900000600 } from './1763900000600-site-max-weight';
import { ApiTokenExpiry1763900000620 } from './1763900000620-api-token-expiry';
import { WeightChunks1763900000630 } from './1763900000630-weight-chunks';
import { LedgerReservation1763900000700 } from './1763900000700-ledger-reservation';
import { StrategyState1763900000800 } from './1763900000800-strategy-state';

/** Every migration, oldest first: the only way the schema changes. */
export const MIGRATIONS = [
  InitialSchema1763900000000,
  PrivacyLedger1763900000200,
  Schedules1763900000300,
  LedgerIntegerNoise1763900000400,
  LedgerReleaseKind1763900000500,
  SiteMaxWeight1763900000600,
  ApiTokenExpiry1763900000620,
  WeightChunks1763900000630,
  LedgerReservation1763900000700,
  StrategyState1763900000800,
];
