// ESLint flat config for the Confide monorepo.
//
// Two jobs: type-aware linting of the TypeScript (floating promises and non-exhaustive switches are
// the bugs that hurt a round orchestrator most), and module boundaries in the Nx habit (tags
// `type:domain` / `type:util` / `type:app`), enforced here with `no-restricted-imports` so we need
// no @nx/eslint-plugin. DESIGN.md section 2: domain libraries are pure TypeScript.
import js from '@eslint/js';
import { defineConfig, globalIgnores } from 'eslint/config';
import tseslint from 'typescript-eslint';

const DOMAIN_LIBS = [
  'libs/protocol',
  'libs/federated',
  'libs/secure-aggregation',
  'libs/differential-privacy',
  'libs/privacy-ledger',
];

// Node 20 globals for the plain-JS entry points, by hand: `globals` is not a direct dependency.
const NODE_GLOBALS = Object.fromEntries(
  [
    'process',
    'console',
    'Buffer',
    'URL',
    'URLSearchParams',
    'fetch',
    'setTimeout',
    'clearTimeout',
    'setInterval',
    'clearInterval',
    'setImmediate',
    'queueMicrotask',
    'structuredClone',
    'AbortController',
    'TextEncoder',
    'TextDecoder',
  ].map((name) => [name, 'readonly']),
);

// --- module boundaries --------------------------------------------------------------------------

const noAppsFromLibs = {
  group: [
    '@confide/aggregator',
    '@confide/aggregator/**',
    '@confide/client-node',
    '@confide/client-node/**',
    '@confide/cli',
    '@confide/cli/**',
    '**/apps/**',
  ],
  message:
    'module boundaries: libraries must not import from apps (apps depend on libs, never the ' +
    'reverse). Move the shared code into a lib.',
};

const PURE =
  'domain libraries are pure: libs/protocol, federated, secure-aggregation, ' +
  'differential-privacy and privacy-ledger take and return plain data and typed arrays';

const domainRestrictions = [
  noAppsFromLibs,
  {
    group: ['@nestjs/*', '@nestjs/**'],
    message: `${PURE}; no NestJS. Nest controllers, services and gateways live in the apps.`,
  },
  {
    group: ['typeorm', 'typeorm/**', 'pg', 'pg/**', '@electric-sql/*', '@electric-sql/**'],
    message: `${PURE}; no TypeORM, pg or PGlite. Database access belongs in an app repository.`,
  },
  {
    group: ['ws', 'ws/**'],
    message: `${PURE}; no ws. Transport belongs behind the Grid in an app.`,
  },
  {
    group: ['@tensorflow/*', '@tensorflow/**', '@confide/ml', '@confide/ml/**'],
    message: `${PURE}; no tfjs (nor @confide/ml, which pulls it in). Take Float32Arrays.`,
  },
];

// The site runtime runs in a Node process today and could run in a browser tab later: what only
// Node has (files, sockets, worker threads, node:crypto) comes in through its ports.
const siteRuntimeRestrictions = [
  ...domainRestrictions,
  {
    group: [
      'node:*',
      'fs',
      'fs/**',
      'crypto',
      'path',
      'os',
      'net',
      'tls',
      'http',
      'https',
      'worker_threads',
    ],
    message:
      'libs/site-runtime must run in a browser tab too: no Node built-ins. Take the ' +
      'implementation through a port (ModContext, LocalLedgerStore, MaskExecutor).',
  },
];

const UTIL = 'libs/ml is written against @tensorflow/tfjs only';

const mlRestrictions = [
  noAppsFromLibs,
  {
    group: [
      '@tensorflow/tfjs-node',
      '@tensorflow/tfjs-node/**',
      '@tensorflow/tfjs-node-gpu',
      '@tensorflow/tfjs-node-gpu/**',
      '@tensorflow/tfjs-backend-*',
      '@tensorflow/tfjs-backend-*/**',
    ],
    message: `${UTIL}: no backend packages. The client node registers the backend at the edge.`,
  },
  {
    group: [
      '@nestjs/*',
      '@nestjs/**',
      'typeorm',
      'typeorm/**',
      'pg',
      'pg/**',
      '@electric-sql/*',
      '@electric-sql/**',
      'ws',
      'ws/**',
    ],
    message: `${UTIL}: no NestJS, TypeORM, pg/PGlite or ws. I/O lives in the apps.`,
  },
];

export default defineConfig([
  globalIgnores([
    '**/node_modules/',
    '**/dist/',
    '**/.confide/',
    '**/coverage/',
    '**/test-output/',
    '.nx/',
    'tmp/',
    'package-lock.json',
  ]),

  // Plain JavaScript (bin/*.js, this file): no type information.
  {
    files: ['**/*.js', '**/*.mjs', '**/*.cjs'],
    extends: [js.configs.recommended],
    languageOptions: {
      ecmaVersion: 2023,
      sourceType: 'module',
      globals: NODE_GLOBALS,
    },
    rules: {
      'no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_' },
      ],
    },
  },

  // TypeScript, type-aware against the root tsconfig.json (the only tsconfig in the repo).
  {
    files: ['**/*.ts', '**/*.mts', '**/*.cts'],
    extends: [js.configs.recommended, tseslint.configs.recommendedTypeChecked],
    languageOptions: {
      parserOptions: {
        projectService: true,
        tsconfigRootDir: import.meta.dirname,
      },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': ['error', { ignoreVoid: true, ignoreIIFE: false }],
      '@typescript-eslint/switch-exhaustiveness-check': [
        'error',
        { allowDefaultCaseForExhaustiveSwitch: true, requireDefaultForNonUnion: false },
      ],
      '@typescript-eslint/no-unused-vars': [
        'error',
        {
          argsIgnorePattern: '^_',
          varsIgnorePattern: '^_',
          caughtErrorsIgnorePattern: '^_',
          destructuredArrayIgnorePattern: '^_',
          ignoreRestSiblings: true,
        },
      ],
      // Tolerance for ordinary NestJS code: `any` is a smell, not a build break.
      '@typescript-eslint/no-explicit-any': 'warn',
      '@typescript-eslint/no-unsafe-assignment': 'warn',
      '@typescript-eslint/no-unsafe-member-access': 'warn',
      '@typescript-eslint/no-unsafe-call': 'warn',
      '@typescript-eslint/no-unsafe-argument': 'warn',
      '@typescript-eslint/no-unsafe-return': 'warn',
      // Nest services implement async interfaces with bodies that may not await.
      '@typescript-eslint/require-await': 'off',
      // `ws.on('message', async (...) => ...)` and `process.on('SIGTERM', async ...)` are fine;
      // still catch promises used as conditions.
      '@typescript-eslint/no-misused-promises': [
        'error',
        { checksVoidReturn: { arguments: false, attributes: false } },
      ],
    },
  },

  // Tests: mocks and `expect(repo.save).toHaveBeenCalled()` patterns.
  {
    files: ['**/*.spec.ts', '**/*.test.ts', 'test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/unbound-method': 'off',
      '@typescript-eslint/no-explicit-any': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },

  // Module boundaries. Later blocks override earlier ones for the same rule, so each block lists
  // every pattern that applies to its folder.
  {
    files: ['libs/**/*.{ts,mts,cts,js,mjs}'],
    rules: { 'no-restricted-imports': ['error', { patterns: [noAppsFromLibs] }] },
  },
  {
    files: DOMAIN_LIBS.map((dir) => `${dir}/**/*.{ts,mts,cts,js,mjs}`),
    rules: { 'no-restricted-imports': ['error', { patterns: domainRestrictions }] },
  },
  {
    files: ['libs/site-runtime/**/*.{ts,mts,cts,js,mjs}'],
    rules: { 'no-restricted-imports': ['error', { patterns: siteRuntimeRestrictions }] },
  },
  {
    files: ['libs/ml/**/*.{ts,mts,cts,js,mjs}'],
    rules: { 'no-restricted-imports': ['error', { patterns: mlRestrictions }] },
  },
  {
    // The aggregator never trains: importing @confide/ml would load tfjs (about 30 MB of heap that
    // every major garbage collection marks). Its tfjs-free part is @confide/ml/spec.
    files: ['apps/aggregator/src/**/*.ts'],
    ignores: ['apps/aggregator/src/**/*.spec.ts'],
    rules: {
      'no-restricted-imports': [
        'error',
        {
          paths: [
            {
              name: '@confide/ml',
              message: 'The aggregator imports @confide/ml/spec (no tfjs), not @confide/ml.',
            },
          ],
          patterns: [
            {
              group: ['@tensorflow/*', '@tensorflow/**'],
              message: 'The aggregator never loads tfjs.',
            },
          ],
        },
      ],
    },
  },
]);
