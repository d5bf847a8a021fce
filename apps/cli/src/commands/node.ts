import { join, resolve } from 'node:path';
import type { BackendPreference, SitePolicy } from '@confide/client-node';
import {
  choiceOption,
  CliError,
  numberOption,
  str,
  type Command,
  type ParsedOptions,
} from '../command';
import { caOption, readCaOption } from '../ca-option';
import { parseDuration } from '../duration';

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
    'checks every round against the site policy (--policy; defaults below) before it touches the data,\n' +
    'trains locally on --data and sends only the masked update; statistics and evaluation counts leave\n' +
    'only inside secure sums. Evaluates on --eval-data, or on a stratified --eval-fraction of --data held\n' +
    'out with a seed kept in --key-dir (never on rows it trained on).\n' +
    "The aggregator's identity key is pinned per federation in --key-dir/known-servers.json: give it with\n" +
    '--server-key (the fingerprint `confide server` prints), or the first connection pins what it sees.\n' +
    'Reconnects after a lost connection; exits with a clear message if the site is revoked.\n' +
    'Honours HTTPS_PROXY / HTTP_PROXY / NO_PROXY. GPU: sites with CUDA can\n' +
    '`npm install @tensorflow/tfjs-node-gpu` and pass --backend tfjs-node-gpu.',
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
      description: 'held-out evaluation data (same columns); default: --eval-fraction of --data',
    },
    'eval-fraction': {
      type: 'string',
      value: 'F',
      description: 'share of --data held out for evaluation when there is no --eval-data',
      default: '0.2',
    },
    policy: {
      type: 'string',
      value: 'FILE.json',
      description:
        "the site's privacy policy (schema: docs/schemas/site-policy.schema.json); default: the built-in policy",
      env: 'CONFIDE_POLICY',
    },
    'server-key': {
      type: 'string',
      value: 'KEY|FINGERPRINT',
      description:
        "the aggregator's identity key or its fingerprint; a different key is refused (default: pin on first use)",
      env: 'CONFIDE_SERVER_KEY',
    },
    ...caOption,
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
    'max-backoff': {
      type: 'string',
      value: 'DURATION',
      description:
        'the longest wait between reconnect attempts (capped exponential backoff with jitter; 30s, 2m, ...)',
      default: '30s',
    },
    'give-up-after': {
      type: 'string',
      value: 'DURATION',
      description:
        'stop after this long without a connection to the aggregator (default: retry for as long as it runs)',
    },
    quiet: { type: 'boolean', description: 'no progress bars' },
    json: {
      type: 'boolean',
      description:
        'print one JSON line per event on stdout (start with the effective policy and transport, connected, refused, round); messages go to stderr',
    },
  },
  examples: [
    'confide node join --server wss://fl.example.org --federation 3f0c... --data site.csv --label diagnosis --server-key 3f9a0c1b2d4e5f60',
    'confide node join ... --give-up-after 2h    # a batch job that should fail rather than wait for ever',
    'confide node join ... --policy site-policy.json --ca /etc/confide/ca.pem',
  ],
  async run(opts, _pos, io) {
    // Checked before anything loads, so a typo is a usage error at once.
    const maxBackoffMs = parseDuration(String(opts['max-backoff']), 'max-backoff') * 1000;
    const giveUpAfterMs =
      opts['give-up-after'] !== undefined
        ? parseDuration(String(opts['give-up-after']), 'give-up-after') * 1000
        : undefined;
    const backendPref = choiceOption(opts, 'backend', [
      'auto',
      'tfjs-node-gpu',
      'tfjs-node',
      'wasm',
      'cpu',
    ] as const) as BackendPreference;
    // Loaded here, not at the top: tfjs takes a second to load and the other commands do not need it.
    const [
      {
        ClientNode,
        CONTRIBUTIONS_FILE,
        describePolicy,
        fileContributionStore,
        fileLedgerStore,
        filePinStore,
        holdoutSeed,
        KNOWN_SERVERS_FILE,
        LEDGER_FILE,
        loadIdentity,
        parseServerKey,
        policyJson,
        progressBar,
        selectBackend,
      },
      { loadCsv },
    ] = await Promise.all([import('@confide/client-node'), import('@confide/ml')]);
    const json = Boolean(opts['json']);
    const emit = (event: Record<string, unknown>): void => {
      if (json) io.out(JSON.stringify({ at: new Date().toISOString(), ...event }));
    };
    const policy = await policyOption(opts);
    const serverKey = opts['server-key'] as string | undefined;
    if (serverKey !== undefined) {
      try {
        parseServerKey(serverKey);
      } catch (e) {
        throw new CliError((e as Error).message, 2);
      }
    }
    const ca = readCaOption(opts);
    const keyDir = resolve(str(opts, 'key-dir'));
    const identity = await loadIdentity(keyDir);
    const epsilonLimit = numberOption(opts, 'epsilon-limit', { min: 1e-9 });
    const evalFraction = numberOption(opts, 'eval-fraction', { min: 0.01, max: 0.9 })!;
    const label = str(opts, 'label');
    const data = await loadCsv(resolve(str(opts, 'data')), { label });
    const evalData = opts['eval-data']
      ? await loadCsv(resolve(String(opts['eval-data'])), { label, features: data.featureNames })
      : undefined;
    const backend = await selectBackend(backendPref, (m) => io.err(m));
    io.err(
      `tfjs backend: ${backend.backend} (${backend.detail}); ${data.numRows} rows, ${data.numFeatures} features`,
    );
    io.err(`site policy (${(opts['policy'] as string | undefined) ?? 'built-in defaults'}):`);
    for (const line of describePolicy(policy)) io.err(`  ${line}`);
    const server = str(opts, 'server');
    const federationId = str(opts, 'federation');
    const node = new ClientNode({
      server,
      federationId,
      identity,
      data,
      evalData,
      evalFraction,
      holdoutSeed: await holdoutSeed(keyDir),
      policy,
      ...(serverKey !== undefined ? { serverKey } : {}),
      pins: filePinStore(join(keyDir, KNOWN_SERVERS_FILE)),
      ...(ca !== undefined ? { ca } : {}),
      ...(epsilonLimit !== undefined ? { epsilonLimit } : {}),
      ledgerStore: fileLedgerStore(join(keyDir, LEDGER_FILE)),
      contributions: fileContributionStore(join(keyDir, CONTRIBUTIONS_FILE)),
      maxBackoffMs,
      ...(giveUpAfterMs !== undefined ? { giveUpAfterMs } : {}),
      log: (line) => io.err(line),
      progress: opts['quiet'] || json ? undefined : progressBar(process.stderr),
      onWelcome: (m) =>
        emit({
          event: 'connected',
          site: m.siteName,
          siteId: m.siteId,
          serverKey: node.serverKey.publicKey,
          serverKeyPinned: node.serverKey.pinned,
        }),
      onRefused: (r) => emit({ event: 'refused', ...r }),
      onRoundEnd: (m) => {
        emit({ event: 'round', round: m.round, outcome: m.outcome, reason: m.reason });
        emit({ event: 'waiting' });
      },
      onState: ({ state, ...rest }) => emit({ event: state, ...rest }),
    });
    emit({
      event: 'start',
      federationId,
      server,
      policy: policyJson(policy),
      transport: {
        tls: /^(wss|https):/.test(server),
        serverKeyGiven: serverKey !== undefined,
      },
      rows: node.rows,
    });
    io.err(
      `rows: ${node.rows.train} to train on, ${node.rows.eval} held out for evaluation${evalData ? ' (--eval-data)' : ` (${evalFraction * 100}% of --data)`}`,
    );
    process.once('SIGINT', () => node.stop('SIGINT'));
    process.once('SIGTERM', () => node.stop('SIGTERM'));
    const stopped = await node.run();
    if (stopped) {
      emit({ event: 'stopped', code: stopped.code, message: stopped.message });
      throw new CliError(`stopped: ${stopped.message}`);
    }
    emit({ event: 'stopped', code: null });
    io.err('stopped');
    return 0;
  },
};

export const nodePolicyCommand: Command = {
  path: ['node', 'policy'],
  summary: 'Check a site privacy policy file and print the effective policy',
  description:
    'Reads --policy (JSON, schema docs/schemas/site-policy.schema.json), fills in the defaults and prints\n' +
    'the policy a node would enforce; with no file, the built-in defaults. A bad policy gets a named\n' +
    'error (POLICY_UNKNOWN_FIELD, POLICY_OUT_OF_RANGE, POLICY_CONTRADICTION, ...) and exit code 2.',
  options: {
    policy: {
      type: 'string',
      value: 'FILE.json',
      description: 'the policy file (default: none, the built-in defaults)',
      env: 'CONFIDE_POLICY',
    },
    json: { type: 'boolean', description: 'print the effective policy as JSON' },
  },
  examples: ['confide node policy --policy site-policy.json', 'confide node policy --json'],
  async run(opts, _pos, io) {
    const { describePolicy, policyJson } = await import('@confide/client-node');
    const policy = await policyOption(opts);
    if (opts['json']) io.out(JSON.stringify(policyJson(policy), null, 2));
    else for (const line of describePolicy(policy)) io.out(line);
    return 0;
  },
};

/** The site policy named by --policy, else the default one; a usage error naming what is wrong. */
async function policyOption(opts: ParsedOptions): Promise<SitePolicy> {
  const { DEFAULT_POLICY, loadPolicyFile, PolicyError } = await import('@confide/client-node');
  const file = opts['policy'] as string | undefined;
  try {
    return file ? await loadPolicyFile(resolve(file)) : DEFAULT_POLICY;
  } catch (e) {
    if (e instanceof PolicyError) throw new CliError(`${e.code}: ${e.message}`, 2);
    throw new CliError((e as Error).message, 2);
  }
}
