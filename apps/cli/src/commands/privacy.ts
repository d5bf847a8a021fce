import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import {
  computeEpsilon,
  DpError,
  DpErrorCode,
  findNoiseMultiplier,
  type Accountant,
  type RdpConversion,
} from '@confide/differential-privacy';
import {
  choiceOption,
  CliError,
  UsageError,
  type Command,
  type OptionSpec,
  type ParsedOptions,
} from '../command';

const ACCOUNTANTS = ['rdp', 'pld'] as const;
const CONVERSIONS = ['balle', 'classic'] as const;

const accountingOptions: Record<string, OptionSpec> = {
  accountant: {
    type: 'string',
    value: 'rdp|pld',
    description:
      "rdp: Renyi DP as Opacus' RDPAccountant; pld: privacy loss distribution as dp_accounting (tighter, slower)",
    default: 'rdp',
  },
  conversion: {
    type: 'string',
    value: 'balle|classic',
    description:
      'RDP to (epsilon, delta): balle (Balle et al. 2020, as Opacus) or classic (Mironov 2017)',
    default: 'balle',
  },
  json: { type: 'boolean', description: 'print JSON (one object per line with --batch)' },
};

/** One accounting question, validated. */
interface Query {
  q: number;
  sigma: number;
  steps: number;
  delta: number;
  accountant: Accountant;
  conversion: RdpConversion;
}

/** A number from a string option or a JSON field: `what` names it in the error. */
function parseNumber(raw: unknown, what: string): number {
  const n = typeof raw === 'string' && raw.trim() !== '' ? Number(raw) : raw;
  if (typeof n !== 'number' || !Number.isFinite(n)) {
    throw new UsageError(`${what} must be a number; got ${JSON.stringify(raw) ?? String(raw)}`);
  }
  return n;
}

function samplingRate(raw: unknown, what: string): number {
  const q = parseNumber(raw, what);
  if (!(q > 0 && q <= 1)) throw new UsageError(`${what} must be in (0, 1]; got ${q}`);
  return q;
}

function noiseMultiplier(raw: unknown, what: string): number {
  const s = parseNumber(raw, what);
  if (!(s > 0)) {
    throw new UsageError(`${what} must be > 0 (0 would mean no privacy at all); got ${s}`);
  }
  return s;
}

function stepCount(raw: unknown, what: string): number {
  const t = parseNumber(raw, what);
  if (!Number.isSafeInteger(t) || t < 1) {
    throw new UsageError(`${what} must be a positive integer; got ${t}`);
  }
  return t;
}

function deltaValue(raw: unknown, what: string): number {
  const d = parseNumber(raw, what);
  if (!(d > 0 && d < 1)) throw new UsageError(`${what} must be in (0, 1); got ${d}`);
  return d;
}

function required(opts: ParsedOptions, name: string, hint = ''): string {
  const v = opts[name];
  if (typeof v !== 'string' || v === '') throw new UsageError(`--${name} is required${hint}`);
  return v;
}

function accountingChoice(opts: ParsedOptions): {
  accountant: Accountant;
  conversion: RdpConversion;
} {
  const accountant = choiceOption(opts, 'accountant', ACCOUNTANTS) ?? 'rdp';
  const conversion = choiceOption(opts, 'conversion', CONVERSIONS) ?? 'balle';
  if (accountant === 'pld' && conversion === 'classic') {
    throw new UsageError('--conversion applies to the rdp accountant only');
  }
  return { accountant, conversion };
}

/** The result object both modes print: { epsilon, delta, order, accountant }. */
function evaluate(query: Query): {
  epsilon: number | null;
  delta: number;
  order: number | null;
  accountant: Accountant;
} {
  const { q, sigma, steps, delta, accountant, conversion } = query;
  const r = computeEpsilon(
    { q, sigma, steps },
    delta,
    accountant === 'rdp' ? { accountant, conversion } : { accountant },
  );
  // JSON has no Infinity: an unbounded epsilon (possible with pld at a tiny sigma) is null.
  return {
    epsilon: Number.isFinite(r.epsilon) ? r.epsilon : null,
    delta,
    order: r.order,
    accountant,
  };
}

function describeEpsilon(query: Query, r: ReturnType<typeof evaluate>): string {
  const eps = r.epsilon === null ? 'infinite' : formatNumber(r.epsilon);
  const how =
    query.accountant === 'rdp'
      ? `RDP accountant, ${query.conversion === 'balle' ? 'Balle et al. 2020' : 'classic'} conversion, order ${r.order ?? '-'}`
      : 'PLD accountant';
  return (
    `epsilon = ${eps} at delta = ${query.delta} after ${query.steps} steps at q = ${query.q}, ` +
    `noise multiplier ${query.sigma} (${how})`
  );
}

function formatNumber(x: number): string {
  return Number(x.toPrecision(6)).toString();
}

const BATCH_FIELDS = new Set(['q', 'sigma', 'steps', 'delta', 'accountant', 'conversion']);

/** Parses one --batch line; errors name the line. */
function parseBatchLine(
  line: string,
  lineNo: number,
  defaults: { accountant: Accountant; conversion: RdpConversion },
): Query {
  const at = `line ${lineNo}`;
  let obj: unknown;
  try {
    obj = JSON.parse(line);
  } catch (e) {
    throw new UsageError(`${at}: not valid JSON (${(e as Error).message})`);
  }
  if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) {
    throw new UsageError(
      `${at}: expected a JSON object like {"q":0.01,"sigma":1.1,"steps":1000,"delta":1e-5}`,
    );
  }
  const o = obj as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (!BATCH_FIELDS.has(k)) {
      throw new UsageError(
        `${at}: unknown field "${k}" (allowed: ${[...BATCH_FIELDS].join(', ')})`,
      );
    }
  }
  for (const k of ['q', 'sigma', 'steps', 'delta']) {
    if (o[k] === undefined) throw new UsageError(`${at}: field "${k}" is missing`);
  }
  const accountant = o['accountant'] ?? defaults.accountant;
  if (!ACCOUNTANTS.includes(accountant as Accountant)) {
    throw new UsageError(`${at}: accountant must be rdp or pld; got ${JSON.stringify(accountant)}`);
  }
  const conversion = o['conversion'] ?? defaults.conversion;
  if (!CONVERSIONS.includes(conversion as RdpConversion)) {
    throw new UsageError(
      `${at}: conversion must be balle or classic; got ${JSON.stringify(conversion)}`,
    );
  }
  if (accountant === 'pld' && conversion === 'classic') {
    throw new UsageError(`${at}: conversion applies to the rdp accountant only`);
  }
  // Strings are not accepted for numbers here: the file is JSON, so numbers are numbers.
  for (const k of ['q', 'sigma', 'steps', 'delta']) {
    if (typeof o[k] !== 'number') {
      throw new UsageError(`${at}: field "${k}" must be a number; got ${JSON.stringify(o[k])}`);
    }
  }
  return {
    q: samplingRate(o['q'], `${at}: q`),
    sigma: noiseMultiplier(o['sigma'], `${at}: sigma`),
    steps: stepCount(o['steps'], `${at}: steps`),
    delta: deltaValue(o['delta'], `${at}: delta`),
    accountant: accountant as Accountant,
    conversion: conversion as RdpConversion,
  };
}

/** Library errors that are about the request (not bugs) become operator-facing errors. */
function rethrow(e: unknown): never {
  if (e instanceof DpError) {
    if (e.code === DpErrorCode.BUDGET_TOO_LOW) throw new CliError(e.message);
    throw new UsageError(e.message);
  }
  throw e;
}

const SINGLE = ['sampling-rate', 'noise-multiplier', 'steps', 'delta'] as const;

export const privacyCommands: Command[] = [
  {
    path: ['privacy', 'epsilon'],
    summary: 'Epsilon spent by DP-SGD / DP-FedAvg steps (Poisson-subsampled Gaussian)',
    description:
      'Epsilon at a delta after STEPS releases of the Poisson-subsampled Gaussian mechanism with\n' +
      'sampling rate Q and noise multiplier Z, by the RDP accountant (equal to Opacus) or the PLD\n' +
      "accountant (as Google's dp_accounting). With --batch, one JSON object per line of FILE\n" +
      '({"q", "sigma", "steps", "delta", optional "accountant", "conversion"}), answered in order.',
    options: {
      'sampling-rate': { type: 'string', value: 'Q', description: 'sampling rate q, in (0, 1]' },
      'noise-multiplier': {
        type: 'string',
        value: 'Z',
        description: 'noise standard deviation / clipping norm, > 0',
      },
      steps: { type: 'string', value: 'T', description: 'number of steps (releases), >= 1' },
      delta: { type: 'string', value: 'D', description: 'target delta, in (0, 1)' },
      batch: { type: 'string', value: 'FILE', description: 'JSON-lines file of queries' },
      ...accountingOptions,
    },
    examples: [
      'confide privacy epsilon --sampling-rate 0.004267 --noise-multiplier 1.1 --steps 14063 --delta 1e-5',
      'confide privacy epsilon --sampling-rate 0.01 --noise-multiplier 1 --steps 1000 --delta 1e-5 --accountant pld --json',
      'confide privacy epsilon --batch queries.jsonl --json',
    ],
    async run(opts, _p, io) {
      const defaults = accountingChoice(opts);
      const print = (query: Query): void => {
        let r: ReturnType<typeof evaluate>;
        try {
          r = evaluate(query);
        } catch (e) {
          rethrow(e);
        }
        io.out(opts['json'] ? JSON.stringify(r) : describeEpsilon(query, r));
      };
      const batch = opts['batch'];
      if (typeof batch === 'string') {
        const given = SINGLE.filter((k) => opts[k] !== undefined);
        if (given.length) {
          throw new UsageError(
            `--batch takes every query from the file; drop --${given.join(', --')}`,
          );
        }
        let text: string;
        try {
          text = await readFile(resolve(batch), 'utf8');
        } catch (e) {
          throw new CliError(`cannot read ${batch}: ${(e as Error).message}`);
        }
        // Validate every line before answering any, so a bad line 40 does not leave 39 answers.
        const queries: Query[] = [];
        text.split(/\r?\n/).forEach((line, i) => {
          if (line.trim() === '') return;
          queries.push(parseBatchLine(line, i + 1, defaults));
        });
        if (queries.length === 0) throw new UsageError(`${batch} contains no queries`);
        for (const q of queries) print(q);
        return;
      }
      const hint = ' (or give --batch FILE)';
      print({
        q: samplingRate(required(opts, 'sampling-rate', hint), '--sampling-rate'),
        sigma: noiseMultiplier(required(opts, 'noise-multiplier', hint), '--noise-multiplier'),
        steps: stepCount(required(opts, 'steps', hint), '--steps'),
        delta: deltaValue(required(opts, 'delta', hint), '--delta'),
        ...defaults,
      });
    },
  },
  {
    path: ['privacy', 'noise'],
    summary: 'The smallest noise multiplier that meets a target epsilon',
    description:
      'The smallest noise multiplier Z such that STEPS releases at sampling rate Q spend at most\n' +
      'EPSILON at DELTA (bisection to 0.01% with RDP, 0.1% with PLD; the answer always meets the target).',
    options: {
      epsilon: { type: 'string', value: 'E', description: 'target epsilon, > 0', required: true },
      delta: { type: 'string', value: 'D', description: 'target delta, in (0, 1)', required: true },
      'sampling-rate': {
        type: 'string',
        value: 'Q',
        description: 'sampling rate q, in (0, 1]',
        required: true,
      },
      steps: { type: 'string', value: 'T', description: 'number of steps, >= 1', required: true },
      ...accountingOptions,
    },
    examples: [
      'confide privacy noise --epsilon 8 --delta 1e-5 --sampling-rate 0.04 --steps 2250 --json',
    ],
    async run(opts, _p, io) {
      const { accountant, conversion } = accountingChoice(opts);
      const targetEpsilon = parseNumber(required(opts, 'epsilon'), '--epsilon');
      if (!(targetEpsilon > 0)) throw new UsageError(`--epsilon must be > 0; got ${targetEpsilon}`);
      const delta = deltaValue(required(opts, 'delta'), '--delta');
      const q = samplingRate(required(opts, 'sampling-rate'), '--sampling-rate');
      const steps = stepCount(required(opts, 'steps'), '--steps');
      let r: { noiseMultiplier: number; epsilon: number };
      try {
        r = findNoiseMultiplier({
          targetEpsilon,
          delta,
          q,
          steps,
          accountant,
          ...(accountant === 'rdp' ? { conversion } : {}),
        });
      } catch (e) {
        rethrow(e);
      }
      io.out(
        opts['json']
          ? JSON.stringify({ noiseMultiplier: r.noiseMultiplier })
          : `noise multiplier ${formatNumber(r.noiseMultiplier)} gives epsilon ${formatNumber(r.epsilon)} <= ${targetEpsilon} ` +
              `at delta = ${delta} after ${steps} steps at q = ${q} (${accountant.toUpperCase()} accountant)`,
      );
    },
  },
];
