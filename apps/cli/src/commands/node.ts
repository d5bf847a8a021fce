import { join, resolve } from 'node:path';
import type { BackendPreference } from '@confide/client-node';
import { choiceOption, CliError, numberOption, str, type Command } from '../command';

const DEFAULT_KEY_DIR = '.confide/node';

export const nodeKeysCommand: Command = {
  path: ['node', 'keys'],
  summary: "Create this site's Ed25519 identity key pair",
  description:
    "Creates the site's identity: identity.key (secret, mode 0600) and identity.pub in --key-dir.\n" +
    'Send the printed public key to the federation admin, who enrols and approves it.',
  options: {
    'key-dir': {
      type: 'string',
      value: 'DIR',
      description: 'where the keys live',
      default: DEFAULT_KEY_DIR,
      env: 'CONFIDE_KEY_DIR',
    },
    force: { type: 'boolean', description: 'replace an existing identity (needs a new enrolment)' },
    json: {
      type: 'boolean',
      description: 'print { publicKey, fingerprint, secretKeyFile } as JSON',
    },
  },
  examples: ['confide node keys --key-dir /etc/confide/site'],
  async run(opts, _pos, io) {
    const dir = resolve(str(opts, 'key-dir'));
    const { createIdentityFiles } = await import('@confide/client-node');
    const r = await createIdentityFiles(dir, Boolean(opts['force']));
    if (opts['json']) {
      io.out(
        JSON.stringify({
          publicKey: r.identity.publicKey,
          fingerprint: r.fingerprint,
          secretKeyFile: r.secretPath,
          publicKeyFile: r.publicPath,
        }),
      );
    } else {
      io.err(`Wrote ${r.secretPath} (mode 0600) and ${r.publicPath}.`);
      io.err(`Fingerprint: ${r.fingerprint}`);
      io.err('Public key (give this to the federation admin to enrol the site):');
      io.out(r.identity.publicKey);
    }
    return 0;
  },
};

export const nodeJoinCommand: Command = {
  path: ['node', 'join'],
  summary: 'Join a federation and train on local data when rounds run',
  description:
    'Connects to the aggregator, logs in with the site key, and serves rounds until stopped (Ctrl-C):\n' +
    'trains locally on --data, sends only the model update, evaluates new models on --eval-data.\n' +
    'Reconnects after a lost connection; exits with a clear message if the site is revoked.\n' +
    'GPU: sites with CUDA can `npm install @tensorflow/tfjs-node-gpu` and pass --backend tfjs-node-gpu.',
  options: {
    server: {
      type: 'string',
      value: 'URL',
      description: 'aggregator URL (ws://, wss://, http:// or https://)',
      required: true,
      env: 'CONFIDE_SERVER',
    },
    federation: {
      type: 'string',
      value: 'ID',
      description: 'federation id',
      required: true,
      env: 'CONFIDE_FEDERATION',
    },
    data: {
      type: 'string',
      value: 'FILE.csv',
      description: 'training data: CSV with a header row',
      required: true,
    },
    label: {
      type: 'string',
      value: 'COLUMN',
      description: 'label column of the CSV',
      required: true,
    },
    'eval-data': {
      type: 'string',
      value: 'FILE.csv',
      description: 'held-out evaluation data (same columns); default: --data',
    },
    'key-dir': {
      type: 'string',
      value: 'DIR',
      description: 'identity key directory',
      default: DEFAULT_KEY_DIR,
      env: 'CONFIDE_KEY_DIR',
    },
    backend: {
      type: 'string',
      value: 'NAME',
      description: 'auto|tfjs-node-gpu|tfjs-node|wasm|cpu',
      default: 'auto',
    },
    'epsilon-limit': {
      type: 'string',
      value: 'E',
      description:
        "this site's own privacy budget, enforced locally (default: the limit the federation announces)",
    },
    quiet: { type: 'boolean', description: 'no progress bars' },
  },
  examples: [
    'confide node join --server wss://fl.example.org --federation 3f0c... --data site.csv --label diagnosis',
  ],
  async run(opts, _pos, io) {
    const backendPref = choiceOption(opts, 'backend', [
      'auto',
      'tfjs-node-gpu',
      'tfjs-node',
      'wasm',
      'cpu',
    ] as const) as BackendPreference;
    // Loaded here, not at the top: tfjs takes a second to load and the other commands do not need it.
    const [
      { ClientNode, loadIdentity, progressBar, selectBackend, fileLedgerStore, LEDGER_FILE },
      { loadCsv },
    ] = await Promise.all([import('@confide/client-node'), import('@confide/ml')]);
    const keyDir = resolve(str(opts, 'key-dir'));
    const identity = await loadIdentity(keyDir);
    const epsilonLimit = numberOption(opts, 'epsilon-limit', { min: 1e-9 });
    const label = str(opts, 'label');
    const data = await loadCsv(resolve(str(opts, 'data')), { label });
    const evalData = opts['eval-data']
      ? await loadCsv(resolve(String(opts['eval-data'])), { label, features: data.featureNames })
      : undefined;
    const backend = await selectBackend(backendPref, (m) => io.err(m));
    io.err(
      `tfjs backend: ${backend.backend} (${backend.detail}); ${data.numRows} training rows, ${data.numFeatures} features`,
    );
    const node = new ClientNode({
      server: str(opts, 'server'),
      federationId: str(opts, 'federation'),
      identity,
      data,
      evalData,
      ...(epsilonLimit !== undefined ? { epsilonLimit } : {}),
      ledgerStore: fileLedgerStore(join(keyDir, LEDGER_FILE)),
      log: (line) => io.err(line),
      progress: opts['quiet'] ? undefined : progressBar(process.stderr),
    });
    process.once('SIGINT', () => node.stop());
    process.once('SIGTERM', () => node.stop());
    const stopped = await node.run();
    if (stopped) throw new CliError(`stopped: ${stopped.message}`);
    io.err('stopped');
    return 0;
  },
};
