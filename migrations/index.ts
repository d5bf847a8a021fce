import { InitialSchema1763900000000 } from './1763900000000-initial-schema';

/** Every migration, oldest first: the only way the schema changes. */
export const MIGRATIONS = [InitialSchema1763900000000];
