import { readFile, writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { strategyCatalog } from '@confide/federated';
import { admin, client, federationOpt, jsonOption, jsonOrFileOption, print } from './admin-common';
import { tokenCommands } from './admin-tokens';
import { ledgerCommands } from './admin-ledger';
import {
  choiceOption,
  CliError,
  numberOption,
  str,
  type Command,
  type ParsedOptions,
} from '../command';

type Fed = {
  id: string;
  name: string;
  parameters: number;
  strategy: string;
  config: { minSites: number };
  currentModelVersionId: string;
};
type Site = { id: string; name: string; status: string; fingerprint: string; connected: boolean };
type Round = {
  number: number;
  state: string;
  reason: string | null;
  durationMs: number | null;
  participants: { name: string; status: string }[];
  metrics: { evaluation: { accuracy: number; auc: number | null; loss: number } | null } | null;
};

export const adminCommands: Command[] = [
  ...tokenCommands,
  ...ledgerCommands,
  admin(
    ['federation', 'create'],
    'Create a federation',
    {
      name: { type: 'string', value: 'NAME', description: 'unique name', required: true },
      model: {
        type: 'string',
        value: 'JSON|@FILE',
        description:
          'model spec, e.g. \'{"kind":"mlp","inputDim":30,"hidden":[16],"output":"binary"}\'',
        required: true,
      },
      'min-sites': {
        type: 'string',
        value: 'N',
        description: 'fewest sites a round needs',
        default: '2',
      },
      'round-timeout': {
        type: 'string',
        value: 'SECONDS',
        description: 'round deadline',
        default: '300',
      },
      epochs: { type: 'string', value: 'N', description: 'local epochs per round', default: '1' },
      'batch-size': { type: 'string', value: 'N', description: 'local batch size', default: '32' },
      'learning-rate': {
        type: 'string',
        value: 'LR',
        description: 'local learning rate',
        default: '0.01',
      },
      optimizer: { type: 'string', value: 'NAME', description: 'sgd|adam', default: 'adam' },
      strategy: {
        type: 'string',
        value: 'NAME',
        description: `server strategy: ${strategyCatalog()
          .map((e) => e.name + (e.needsIndividualUpdates ? '*' : ''))
          .join(', ')} (*: needs each site's update, so secure aggregation off)`,
        default: 'fedavg',
      },
      'strategy-config': {
        type: 'string',
        value: 'JSON|@FILE',
        description:
          "the strategy's settings, e.g. '{\"serverLearningRate\":0.01}' for fedadam (default: its defaults)",
      },
      seed: { type: 'string', value: 'N', description: 'seed of the initial weights' },
      dp: {
        type: 'string',
        value: 'JSON',
        description:
          'differential privacy, e.g. \'{"level":"record","noiseMultiplier":3,"clipNorm":1,"delta":1e-5,"epsilonLimit":2}\' (default: none)',
      },
      'secure-aggregation': {
        type: 'string',
        value: 'JSON',
        description:
          'secure aggregation settings, e.g. \'{"enabled":true,"threatModel":"semi-malicious"}\' (default: on)',
      },
      'data-schema': {
        type: 'string',
        value: 'JSON|@FILE',
        description:
          'public facts about the sites\' data: \'{"featureBounds":{"lo":[...],"hi":[...]}}\' (DP statistics clip to them)',
      },
      standardization: {
        type: 'string',
        value: 'MODE',
        description:
          'federated (a statistics sum) | local (each site its own); default: federated, local under DP without feature bounds',
      },
      'sampling-fraction': {
        type: 'string',
        value: 'Q',
        description:
          'share of connected sites each round takes (default 1): drawn by the aggregator, at least --min-sites, and recorded in the round; under site-level DP each site flips its own coin instead',
      },
      'no-evaluation': {
        type: 'boolean',
        description:
          'do not evaluate new models on the sites (under DP each evaluation is charged)',
      },
      weighting: {
        type: 'string',
        value: 'MODE',
        description: 'records (each site by its record count, capped) | equal; default records',
      },
      'max-weight': {
        type: 'string',
        value: 'N',
        description:
          'the most records any site may claim (announced every round; a larger claim excludes the site); default 1000000',
      },
      'max-update-norm': {
        type: 'string',
        value: 'X',
        description:
          "largest L2 norm of a site's plain update (default: the secure-aggregation clip x sqrt(parameters))",
      },
    },
    async (opts, _p, io) => {
      const { modelSpec } = await jsonOrFileOption(opts, 'model', 'modelSpec');
      const seed = numberOption(opts, 'seed', { integer: true, min: 0 });
      const f = await client(opts).post<Fed>('/api/v1/federations', {
        name: str(opts, 'name'),
        modelSpec,
        minSites: numberOption(opts, 'min-sites', { integer: true, min: 1 }),
        roundTimeoutSeconds: numberOption(opts, 'round-timeout', { integer: true, min: 1 }),
        localEpochs: numberOption(opts, 'epochs', { integer: true, min: 1 }),
        batchSize: numberOption(opts, 'batch-size', { integer: true, min: 1 }),
        learningRate: numberOption(opts, 'learning-rate', { min: 0 }),
        optimizer: choiceOption(opts, 'optimizer', ['sgd', 'adam'] as const),
        // The aggregator checks the name and the settings against its registry and says what is wrong.
        strategy: str(opts, 'strategy'),
        ...(await jsonOrFileOption(opts, 'strategy-config', 'strategyConfig')),
        ...(seed === undefined ? {} : { seed }),
        ...jsonOption(opts, 'dp'),
        ...jsonOption(opts, 'secure-aggregation', 'secureAggregation'),
        ...(await jsonOrFileOption(opts, 'data-schema', 'dataSchema')),
        ...(opts['standardization'] !== undefined
          ? {
              standardization: choiceOption(opts, 'standardization', [
                'federated',
                'local',
              ] as const),
            }
          : {}),
        ...(opts['sampling-fraction'] !== undefined
          ? { sampling: { fraction: numberOption(opts, 'sampling-fraction', { min: 0, max: 1 }) } }
          : {}),
        ...(opts['no-evaluation'] ? { evaluation: { enabled: false } } : {}),
        ...weightingOptions(opts),
        ...(opts['max-update-norm'] !== undefined
          ? { maxUpdateNorm: numberOption(opts, 'max-update-norm', { min: 1e-12 }) }
          : {}),
      });
      print(opts, io, f, () => f.id);
      if (!opts['json']) io.err(`Created federation "${f.name}" (${f.parameters} parameters).`);
    },
    [
      `confide admin federation create --name breast-cancer --model '{"kind":"logistic","inputDim":30}' --epochs 5`,
      `confide admin federation create --name robust --model '{"kind":"logistic","inputDim":30}' --strategy median --secure-aggregation '{"enabled":false}'`,
      `confide admin federation create --name adaptive --model '{"kind":"logistic","inputDim":30}' --strategy fedadam --strategy-config '{"serverLearningRate":0.01}'`,
    ],
  ),
  admin(
    ['federation', 'recollect-stats'],
    "Forget a federation's standardisation statistics; the next run collects them again",
    { ...federationOpt },
    async (opts, _p, io) => {
      const r = await client(opts).post<{ federationId: string }>(
        `/api/v1/federations/${str(opts, 'federation')}/statistics/recollect`,
      );
      print(
        opts,
        io,
        r,
        () => `statistics of ${r.federationId} cleared; the next run's first round collects them`,
      );
    },
    ['confide admin federation recollect-stats --federation 3f0c...'],
  ),
  admin(['federation', 'list'], 'List federations', {}, async (opts, _p, io) => {
    const all = await client(opts).get<Fed[]>('/api/v1/federations');
    print(
      opts,
      io,
      all,
      () =>
        all
          .map(
            (f) =>
              `${f.id}  ${f.name}  ${f.strategy}  ${f.parameters} params  minSites=${f.config.minSites}`,
          )
          .join('\n') || '(no federations)',
    );
  }),
  admin(
    ['site', 'enrol'],
    'Enrol a site by name and public key (then approve it)',
    {
      ...federationOpt,
      name: {
        type: 'string',
        value: 'NAME',
        description: 'site name, e.g. hospital-1',
        required: true,
      },
      'public-key': {
        type: 'string',
        value: 'KEY|@FILE',
        description: 'base64 public key from `confide node keys`, or @identity.pub',
        required: true,
      },
      approve: { type: 'boolean', description: 'approve it at once' },
      'epsilon-limit': {
        type: 'string',
        value: 'E',
        description: "this site's privacy budget (DP federations; default: the federation's)",
      },
      'max-weight': {
        type: 'string',
        value: 'N',
        description:
          "the most records this site's update may weigh in a plain federation (default: the federation's cap)",
      },
    },
    async (opts, _p, io) => {
      const keyArg = str(opts, 'public-key');
      const publicKey = keyArg.startsWith('@')
        ? (await readFile(resolve(keyArg.slice(1)), 'utf8')).trim()
        : keyArg;
      const api = client(opts);
      const fed = str(opts, 'federation');
      const epsilonLimit = numberOption(opts, 'epsilon-limit', { min: 1e-9 });
      const maxWeight = numberOption(opts, 'max-weight', { integer: true, min: 1 });
      let s = await api.post<Site>(`/api/v1/federations/${fed}/sites`, {
        name: str(opts, 'name'),
        publicKey,
        ...(epsilonLimit === undefined ? {} : { epsilonLimit }),
        ...(maxWeight === undefined ? {} : { maxWeight }),
      });
      if (opts['approve'])
        s = await api.post<Site>(`/api/v1/federations/${fed}/sites/${s.id}/approve`);
      print(opts, io, s, () => s.id);
      if (!opts['json']) io.err(`Site "${s.name}" is ${s.status} (fingerprint ${s.fingerprint}).`);
    },
  ),
  ...(['approve', 'revoke'] as const).map((action) =>
    admin(
      ['site', action],
      action === 'approve'
        ? 'Approve an enrolled site'
        : 'Revoke a site (its connection is closed)',
      {
        ...federationOpt,
        site: { type: 'string', value: 'ID', description: 'site id', required: true },
      },
      async (opts, _p, io) => {
        const s = await client(opts).post<Site>(
          `/api/v1/federations/${str(opts, 'federation')}/sites/${str(opts, 'site')}/${action}`,
        );
        print(opts, io, s, () => `${s.name}: ${s.status}`);
      },
    ),
  ),
  admin(
    ['site', 'budget'],
    "Change a site's privacy budget (logged with the reason)",
    {
      ...federationOpt,
      site: { type: 'string', value: 'ID', description: 'site id', required: true },
      'epsilon-limit': {
        type: 'string',
        value: 'E',
        description: 'the new epsilon limit',
        required: true,
      },
      reason: {
        type: 'string',
        value: 'TEXT',
        description: 'why (kept in the budget log)',
        required: true,
      },
    },
    async (opts, _p, io) => {
      const b = await client(opts).post<{ epsilonLimit: number }>(
        `/api/v1/federations/${str(opts, 'federation')}/sites/${str(opts, 'site')}/budget`,
        {
          epsilonLimit: numberOption(opts, 'epsilon-limit', { min: 1e-9 }),
          reason: str(opts, 'reason'),
        },
      );
      print(opts, io, b, () => `epsilon limit is now ${b.epsilonLimit}`);
    },
  ),
  admin(
    ['site', 'list'],
    'List the sites of a federation',
    { ...federationOpt },
    async (opts, _p, io) => {
      const all = await client(opts).get<Site[]>(
        `/api/v1/federations/${str(opts, 'federation')}/sites`,
      );
      print(
        opts,
        io,
        all,
        () =>
          all
            .map(
              (s) =>
                `${s.id}  ${s.name.padEnd(16)} ${s.status.padEnd(9)} ${s.connected ? 'connected' : 'offline  '}  ${s.fingerprint}`,
            )
            .join('\n') || '(no sites)',
      );
    },
  ),
  admin(
    ['rounds', 'start'],
    'Start N rounds now',
    {
      ...federationOpt,
      rounds: { type: 'string', value: 'N', description: 'how many rounds', required: true },
    },
    async (opts, _p, io) => {
      const rounds = numberOption(opts, 'rounds', { integer: true, min: 1, max: 100_000 });
      const run = await client(opts).post<{ id: string }>(
        `/api/v1/federations/${str(opts, 'federation')}/runs`,
        { rounds },
      );
      print(opts, io, run, () => run.id);
      if (!opts['json'])
        io.err(
          `Started a run of ${String(rounds)} round(s); follow it with \`confide admin rounds list\`.`,
        );
    },
    ['confide admin rounds start --federation 3f0c... --rounds 10'],
  ),
  admin(
    ['rounds', 'stop'],
    'Stop the running run after its current round',
    { ...federationOpt },
    async (opts, _p, io) => {
      const run = await client(opts).post<{ id: string }>(
        `/api/v1/federations/${str(opts, 'federation')}/runs/stop`,
      );
      print(opts, io, run, () => `stopped run ${run.id}`);
    },
  ),
  admin(
    ['rounds', 'list'],
    'List rounds with state and metrics',
    { ...federationOpt },
    async (opts, _p, io) => {
      const r = await client(opts).get<{ rounds: Round[] }>(
        `/api/v1/federations/${str(opts, 'federation')}/rounds`,
      );
      print(opts, io, r, () => r.rounds.map(roundLine).join('\n') || '(no rounds yet)');
    },
  ),
  admin(
    ['status'],
    'Show a federation: sites, the running run and the latest rounds',
    { ...federationOpt },
    async (opts, _p, io) => {
      const api = client(opts);
      const id = str(opts, 'federation');
      const [fed, sites, runs, rounds, privacy] = await Promise.all([
        api.get<Fed>(`/api/v1/federations/${id}`),
        api.get<Site[]>(`/api/v1/federations/${id}/sites`),
        api.get<
          Array<{
            id: string;
            status: string;
            roundsDone: number;
            roundsRequested: number;
            reason: string | null;
          }>
        >(`/api/v1/federations/${id}/runs`),
        api.get<{ rounds: Round[]; live: unknown }>(`/api/v1/federations/${id}/rounds`),
        api.get<Privacy>(`/api/v1/federations/${id}/privacy`),
      ]);
      print(
        opts,
        io,
        { federation: fed, sites, runs, rounds: rounds.rounds, live: rounds.live, privacy },
        () =>
          [
            `federation ${fed.name} (${fed.id}), ${fed.parameters} parameters, minSites=${fed.config.minSites}`,
            `sites: ${sites.map((s) => `${s.name} ${s.status}${s.connected ? ' (connected)' : ''}`).join(', ') || 'none'}`,
            `runs: ${runs.map((r) => `${r.status} ${r.roundsDone}/${r.roundsRequested}${r.reason ? ` (${r.reason})` : ''}`).join('; ') || 'none'}`,
            ...(privacy.level === 'none'
              ? ['privacy: no differential privacy']
              : [
                  `privacy (${privacy.level} level, delta ${String(privacy.delta)}): epsilon spent / limit, rounds the budget still allows`,
                  ...privacy.sites.map(
                    (p) =>
                      `  ${p.name.padEnd(16)} ${p.epsilon.toFixed(4)} / ${p.limit ?? '-'}   rounds left: ${p.roundsLeft ?? 'unknown until its first release'}`,
                  ),
                ]),
            ...rounds.rounds.slice(-5).map(roundLine),
          ].join('\n'),
      );
    },
  ),
  admin(
    ['model', 'download'],
    'Download a model version as little-endian float32 weights',
    {
      ...federationOpt,
      version: {
        type: 'string',
        value: 'ID',
        description: "model version id or 'current'",
        default: 'current',
      },
      out: {
        type: 'string',
        value: 'FILE',
        description: 'where to write the weights',
        required: true,
      },
    },
    async (opts, _p, io) => {
      const m = await client(opts).modelWeights(str(opts, 'federation'), str(opts, 'version'));
      const out = resolve(str(opts, 'out'));
      await writeFile(out, Buffer.from(m.weights.buffer));
      print(
        opts,
        io,
        { versionId: m.versionId, hash: m.hash, parameters: m.weights.length, file: out },
        () =>
          `wrote ${m.weights.length} parameters of version ${m.versionId} to ${out} (sha256 ${m.hash})`,
      );
    },
  ),
];

/** The `weighting` body field from --weighting and --max-weight (absent: the server's default). */
function weightingOptions(opts: ParsedOptions): Record<string, unknown> {
  const maxWeight = numberOption(opts, 'max-weight', { integer: true, min: 1 });
  if (opts['weighting'] === undefined && maxWeight === undefined) return {};
  return {
    weighting: {
      ...(opts['weighting'] !== undefined
        ? { mode: choiceOption(opts, 'weighting', ['records', 'equal'] as const) }
        : {}),
      ...(maxWeight === undefined ? {} : { maxWeight }),
    },
  };
}

/** GET .../privacy */
type Privacy = {
  level: string;
  delta: number | null;
  sites: Array<{
    siteId: string;
    name: string;
    epsilon: number;
    limit: number | null;
    roundsLeft: number | null;
  }>;
};

function roundLine(r: Round): string {
  const ev = r.metrics?.evaluation;
  const metrics = ev
    ? ` accuracy ${ev.accuracy.toFixed(4)} auc ${ev.auc === null ? '-' : ev.auc.toFixed(4)} loss ${ev.loss.toFixed(4)}`
    : '';
  const who = r.participants.map((p) => `${p.name}:${p.status}`).join(',');
  return `round ${String(r.number).padStart(3)}  ${r.state.padEnd(10)}${metrics}  ${r.durationMs ?? '-'} ms  [${who}]${r.reason ? `  ${r.reason}` : ''}`;
}

/** Maps API failures to CLI errors. */
export function apiFailure(e: unknown): CliError | null {
  if (e instanceof Error && e.name === 'ApiRequestError') {
    const err = e as Error & { code: string; status: number };
    return new CliError(`${err.code}: ${err.message}`, 1);
  }
  return null;
}
