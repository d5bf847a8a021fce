import { fileURLToPath } from 'node:url';
import { defineConfig } from 'vitest/config';

const here = (p: string): string => fileURLToPath(new URL(p, import.meta.url));

export default defineConfig({
  resolve: {
    alias: {
      '@confide/protocol': here('./libs/protocol/src/index.ts'),
      '@confide/federated/testing': here('./libs/federated/src/testing.ts'),
      '@confide/federated': here('./libs/federated/src/index.ts'),
      '@confide/ml/spec': here('./libs/ml/src/spec.ts'),
      '@confide/ml': here('./libs/ml/src/index.ts'),
      '@confide/secure-aggregation': here('./libs/secure-aggregation/src/index.ts'),
      '@confide/differential-privacy': here('./libs/differential-privacy/src/index.ts'),
      '@confide/privacy-ledger': here('./libs/privacy-ledger/src/index.ts'),
      '@confide/site-runtime': here('./libs/site-runtime/src/index.ts'),
      '@confide/aggregator': here('./apps/aggregator/src/index.ts'),
      '@confide/client-node': here('./apps/client-node/src/index.ts'),
    },
  },
  test: {
    include: ['apps/**/*.spec.ts', 'libs/**/*.spec.ts', 'test/**/*.spec.ts'],
    environment: 'node',
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    reporters: ['default'],
  },
});
