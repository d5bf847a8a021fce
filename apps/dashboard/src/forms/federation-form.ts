/**
 * The "new federation" form as data: its state (strings, as typed), client-side checks, the request
 * body, and the mapping of the server's error messages back to fields. Pure; the view renders it.
 */
import type { Capabilities, StrategyInfo } from '../api';
import { secureAggregationConflict, strategyConfigProblem } from './strategy-config';

export interface FederationFormState {
  name: string;
  modelKind: 'logistic' | 'mlp' | 'json';
  inputDim: string;
  hidden: string;
  activation: 'relu' | 'tanh';
  output: 'binary' | 'classes';
  classes: string;
  modelJson: string;
  strategy: string;
  /** The strategy's settings as JSON; blank means its defaults. */
  strategyConfig: string;
  optimizer: 'adam' | 'sgd';
  learningRate: string;
  localEpochs: string;
  batchSize: string;
  minSites: string;
  roundTimeoutSeconds: string;
  evaluationTimeoutSeconds: string;
  seed: string;
  dpLevel: 'none' | 'record' | 'site';
  noiseMultiplier: string;
  clipNorm: string;
  delta: string;
  epsilonLimit: string;
  secAggEnabled: boolean;
  threshold: string;
  graph: 'auto' | 'complete' | 'harary';
  k: string;
  threatModel: 'semi-honest' | 'semi-malicious';
}

export type FederationField = keyof FederationFormState;
export type FieldErrors<F extends string = FederationField> = Partial<Record<F, string>>;

/** What a new form starts with: the server's defaults. */
export function defaultFederationForm(): FederationFormState {
  return {
    name: '',
    modelKind: 'mlp',
    inputDim: '30',
    hidden: '16',
    activation: 'relu',
    output: 'binary',
    classes: '3',
    modelJson: '{ "kind": "logistic", "inputDim": 30 }',
    strategy: 'fedavg',
    strategyConfig: '',
    optimizer: 'adam',
    learningRate: '0.01',
    localEpochs: '1',
    batchSize: '32',
    minSites: '2',
    roundTimeoutSeconds: '300',
    evaluationTimeoutSeconds: '60',
    seed: '',
    dpLevel: 'none',
    noiseMultiplier: '1.1',
    clipNorm: '1.0',
    delta: '1e-5',
    epsilonLimit: '8',
    secAggEnabled: false,
    threshold: '',
    graph: 'auto',
    k: '',
    threatModel: 'semi-honest',
  };
}

const NAME = /^[A-Za-z0-9][A-Za-z0-9 ._-]*$/;

/** An integer in [min, max] written as digits, or an error message. */
export function intProblem(text: string, min: number, max: number): string | null {
  const t = text.trim();
  if (!t) return 'required';
  if (!/^-?\d+$/.test(t)) return 'must be a whole number';
  const n = Number(t);
  if (n < min) return `must be at least ${min}`;
  if (n > max) return `must be at most ${max.toLocaleString('en-US')}`;
  return null;
}

/** A finite number with `lo < x` (or `lo <= x` when inclusive) and `x <= hi`, or an error message. */
export function numberProblem(
  text: string,
  lo: number,
  hi: number,
  opts: { loInclusive?: boolean; hiInclusive?: boolean } = {},
): string | null {
  const t = text.trim();
  if (!t) return 'required';
  const n = Number(t);
  if (!Number.isFinite(n)) return 'must be a number';
  const { loInclusive = false, hiInclusive = true } = opts;
  if (loInclusive ? n < lo : n <= lo)
    return loInclusive ? `must be at least ${lo}` : `must be greater than ${lo}`;
  if (hiInclusive ? n > hi : n >= hi)
    return hiInclusive ? `must be at most ${hi}` : `must be less than ${hi}`;
  return null;
}

/** "64, 32" -> [64, 32]; null when not a list of positive integers. */
export function parseHidden(text: string): number[] | null {
  const parts = text
    .split(/[\s,]+/)
    .map((p) => p.trim())
    .filter(Boolean);
  if (!parts.length || parts.some((p) => !/^\d+$/.test(p) || Number(p) < 1)) return null;
  return parts.map(Number);
}

/** The model spec the form describes (or the parsed JSON for "custom"); throws on bad JSON. */
export function modelSpecOf(s: FederationFormState): unknown {
  if (s.modelKind === 'json') return JSON.parse(s.modelJson) as unknown;
  const output = s.output === 'binary' ? 'binary' : { classes: Number(s.classes) };
  if (s.modelKind === 'logistic') {
    return s.output === 'binary'
      ? { kind: 'logistic', inputDim: Number(s.inputDim) }
      : { kind: 'logistic', inputDim: Number(s.inputDim), output };
  }
  return {
    kind: 'mlp',
    inputDim: Number(s.inputDim),
    hidden: parseHidden(s.hidden) ?? [],
    activation: s.activation,
    output,
  };
}

/** Weights and biases of the dense layers the structured model fields describe; null for JSON. */
export function parameterEstimate(s: FederationFormState): number | null {
  if (s.modelKind === 'json') return null;
  const input = Number(s.inputDim);
  const out = s.output === 'binary' ? 1 : Number(s.classes);
  const hidden = s.modelKind === 'mlp' ? parseHidden(s.hidden) : [];
  if (!hidden || !Number.isInteger(input) || !Number.isInteger(out) || input < 1 || out < 1) {
    return null;
  }
  const sizes = [input, ...hidden, out];
  let n = 0;
  for (let i = 1; i < sizes.length; i++) n += sizes[i - 1]! * sizes[i]! + sizes[i]!;
  return n;
}

/**
 * Client-side checks, mirroring the server's rules so most mistakes are caught before a round trip;
 * the server stays the authority and its messages are shown as they come.
 */
export function validateFederationForm(s: FederationFormState, caps: Capabilities): FieldErrors {
  const e: FieldErrors = {};
  const set = (f: FederationField, problem: string | null): void => {
    if (problem) e[f] = problem;
  };
  const name = s.name.trim();
  if (!name) e.name = 'required';
  else if (name.length > 100) e.name = 'at most 100 characters';
  else if (!NAME.test(name)) e.name = 'use letters, digits, spaces, ".", "_" or "-"';

  if (s.modelKind === 'json') {
    try {
      const spec = JSON.parse(s.modelJson) as unknown;
      if (typeof spec !== 'object' || spec === null || Array.isArray(spec)) {
        e.modelJson = 'must be a JSON object with a "kind" field';
      }
    } catch (err) {
      e.modelJson = `not valid JSON: ${(err as Error).message}`;
    }
  } else {
    set('inputDim', intProblem(s.inputDim, 1, 1_000_000));
    if (s.modelKind === 'mlp' && !parseHidden(s.hidden)) {
      e.hidden = 'list the layer sizes, e.g. "64, 32"';
    }
    if (s.output === 'classes') set('classes', intProblem(s.classes, 2, 10_000));
  }
  const strategy = strategyOf(s, caps);
  if (!strategy) {
    e.strategy = `choose one of ${caps.strategies.map((x) => x.name).join(', ')}`;
  } else {
    set('strategy', secureAggregationConflict(strategy, caps.secureAggregation && s.secAggEnabled));
    set('strategyConfig', strategyConfigProblem(s.strategyConfig, strategy));
  }
  set('learningRate', numberProblem(s.learningRate, 0, 10));
  set('localEpochs', intProblem(s.localEpochs, 1, 1000));
  set('batchSize', intProblem(s.batchSize, 1, 1_000_000));
  set('minSites', intProblem(s.minSites, 1, 10_000));
  set('roundTimeoutSeconds', intProblem(s.roundTimeoutSeconds, 1, 7 * 24 * 3600));
  set('evaluationTimeoutSeconds', intProblem(s.evaluationTimeoutSeconds, 1, 24 * 3600));
  if (s.seed.trim()) set('seed', intProblem(s.seed, 0, 2 ** 31 - 1));

  if (caps.dp && s.dpLevel !== 'none') {
    set('noiseMultiplier', numberProblem(s.noiseMultiplier, 0, 1000));
    set('clipNorm', numberProblem(s.clipNorm, 0, 1e6));
    set('delta', numberProblem(s.delta, 0, 1, { hiInclusive: false }));
    set('epsilonLimit', numberProblem(s.epsilonLimit, 0, 1e6));
  }
  if (caps.secureAggregation && s.secAggEnabled) {
    if (s.threshold.trim()) {
      set('threshold', intProblem(s.threshold, 2, 10_000));
      const min = Number(s.minSites);
      if (!e.threshold && Number.isInteger(min) && Number(s.threshold) > min) {
        e.threshold = `cannot exceed minSites (${min}): the sum could never be unmasked`;
      }
    }
    if (s.graph === 'harary') set('k', intProblem(s.k, 2, 100_000));
  }
  return e;
}

/** The registry entry of the strategy the form names, if the aggregator has it. */
export function strategyOf(s: FederationFormState, caps: Capabilities): StrategyInfo | undefined {
  return caps.strategies.find((x) => x.name === s.strategy);
}

/** The POST /api/v1/federations body; optional sections only when the server accepts them. */
export function federationRequestBody(
  s: FederationFormState,
  caps: Capabilities,
): Record<string, unknown> {
  const body: Record<string, unknown> = {
    name: s.name.trim(),
    modelSpec: modelSpecOf(s),
    strategy: s.strategy,
    ...(s.strategyConfig.trim() ? { strategyConfig: JSON.parse(s.strategyConfig) as unknown } : {}),
    minSites: Number(s.minSites),
    roundTimeoutSeconds: Number(s.roundTimeoutSeconds),
    evaluationTimeoutSeconds: Number(s.evaluationTimeoutSeconds),
    localEpochs: Number(s.localEpochs),
    batchSize: Number(s.batchSize),
    learningRate: Number(s.learningRate),
    optimizer: s.optimizer,
  };
  if (s.seed.trim()) body['seed'] = Number(s.seed);
  if (caps.dp) {
    body['dp'] =
      s.dpLevel === 'none'
        ? { level: 'none' }
        : {
            level: s.dpLevel,
            noiseMultiplier: Number(s.noiseMultiplier),
            clipNorm: Number(s.clipNorm),
            delta: Number(s.delta),
            epsilonLimit: Number(s.epsilonLimit),
          };
  }
  if (caps.secureAggregation) {
    body['secureAggregation'] = s.secAggEnabled
      ? {
          enabled: true,
          ...(s.threshold.trim() ? { threshold: Number(s.threshold) } : {}),
          // 'auto' (complete graph up to 64 sites, Harary above) is the server's default: leave it out.
          ...(s.graph === 'auto' ? {} : { graph: s.graph }),
          ...(s.graph === 'harary' ? { k: Number(s.k) } : {}),
          threatModel: s.threatModel,
        }
      : { enabled: false };
  }
  return body;
}

const SERVER_PATHS: Array<[RegExp, FederationField]> = [
  [/^name\b/, 'name'],
  [/^modelSpec\b/, 'modelJson'],
  [/^spec\.inputDim\b/, 'inputDim'],
  [/^spec\.hidden\b/, 'hidden'],
  [/^spec\.activation\b/, 'activation'],
  [/^spec\.output\b/, 'classes'],
  [/^spec\b/, 'modelJson'],
  [/^strategyConfig\b/, 'strategyConfig'],
  [/^strategy\b/, 'strategy'],
  [/^optimizer\b/, 'optimizer'],
  [/^learningRate\b/, 'learningRate'],
  [/^localEpochs\b/, 'localEpochs'],
  [/^batchSize\b/, 'batchSize'],
  [/^minSites\b/, 'minSites'],
  [/^roundTimeoutSeconds\b/, 'roundTimeoutSeconds'],
  [/^evaluationTimeoutSeconds\b/, 'evaluationTimeoutSeconds'],
  [/^seed\b/, 'seed'],
  [/^dp\.level\b/, 'dpLevel'],
  [/^dp\.noiseMultiplier\b/, 'noiseMultiplier'],
  [/^dp\.clipNorm\b/, 'clipNorm'],
  [/^dp\.delta\b/, 'delta'],
  [/^dp\.epsilonLimit\b/, 'epsilonLimit'],
  [/^dp\b/, 'dpLevel'],
  [/^secureAggregation\.threshold\b/, 'threshold'],
  [/^secureAggregation\.graph\b/, 'graph'],
  [/^secureAggregation\.k\b/, 'k'],
  [/^secureAggregation\.threatModel\b/, 'threatModel'],
  [/^secureAggregation\b/, 'secAggEnabled'],
];

/**
 * Attaches the server's 400 message to the fields it names ("invalid request body: minSites: Too
 * small; dp.delta: ..." or "invalid modelSpec: spec.hidden[0]: ..."). The whole message is still
 * shown verbatim above the form; this only points at the fields.
 */
export function serverFieldErrors(
  message: string,
  modelKind: FederationFormState['modelKind'],
): FieldErrors {
  const e: FieldErrors = {};
  const body = message.replace(/^invalid (request body|modelSpec):\s*/, '');
  if (/^a federation named/.test(message)) {
    e.name = message;
    return e;
  }
  // The registry's own refusals (UNKNOWN_STRATEGY, STRATEGY_CONFIG_INVALID, ..._INDIVIDUAL_UPDATES).
  if (/^invalid configuration for strategy\b/.test(message)) {
    e.strategyConfig = message;
    return e;
  }
  if (/^(unknown strategy\b|strategy ")/.test(message)) {
    e.strategy = message;
    return e;
  }
  for (const part of body.split(/;\s*/)) {
    const m = /^([A-Za-z][\w.[\]]*):\s*(.+)$/.exec(part);
    if (!m) continue;
    const [, path = '', text = ''] = m;
    const hit = SERVER_PATHS.find(([re]) => re.test(path));
    if (!hit) continue;
    let field = hit[1];
    if (modelKind === 'json' && path.startsWith('spec')) field = 'modelJson';
    e[field] ??= text;
  }
  return e;
}
