import { readFile } from 'node:fs/promises';
import { z } from 'zod';
import { NodeError } from './keys';
import {
  DEFAULT_SITE_DELTA,
  DEFAULT_SITE_STATISTICS_SHARE,
  MODEL_KINDS,
  THREAT_RANK,
  type ModelKind,
  type SitePolicy,
} from '@confide/site-runtime';

export {
  DEFAULT_SITE_DELTA,
  DEFAULT_SITE_STATISTICS_SHARE,
  MODEL_KINDS,
  THREAT_RANK,
  type ModelKind,
  type SitePolicy,
};

/**
 * The site's privacy policy: what this node accepts before it touches its data, whatever the
 * aggregator proposes (DESIGN.md section 4, "the aggregator proposes, the site disposes"). The file is
 * JSON; every field has a default, and the defaults are what a node runs with when it has no file.
 * Its JSON Schema is docs/schemas/site-policy.schema.json, generated from `sitePolicySchema` below.
 */

/** Stable codes of a refused policy document. */
export type PolicyErrorCode =
  | 'POLICY_UNKNOWN_FIELD'
  | 'POLICY_OUT_OF_RANGE'
  | 'POLICY_CONTRADICTION'
  | 'POLICY_INVALID_JSON'
  | 'POLICY_INVALID';

/** A policy document the node refuses to run with; the message names the field and what is allowed. */
export class PolicyError extends NodeError {
  constructor(
    readonly code: PolicyErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'PolicyError';
  }
}

// ---- the document -------------------------------------------------------------------------------

const threatModels = ['semi-honest', 'semi-malicious'] as const;
const MAX_ADVERSARIAL_RATE = 0.5;
const MAX_SEMI_MALICIOUS_ADVERSARIAL_RATE = 1 / 3;

const secureAggregationSchema = z.strictObject({
  required: z
    .boolean()
    .default(true)
    .describe(
      'Refuse every round whose updates, statistics or metrics would leave this site outside a secure sum.',
    ),
  minThreatModel: z
    .enum(threatModels)
    .default('semi-honest')
    .describe(
      "The weakest threat model accepted. 'semi-malicious' (a server that may lie about dropouts) is stronger than 'semi-honest'.",
    ),
  adversarialRate: z
    .number()
    .min(0)
    .lt(MAX_ADVERSARIAL_RATE)
    .default(0.05)
    .describe(
      "Fraction of sites assumed to collude with the aggregator; sets the threshold a Harary graph needs. Below 1/2, and below 1/3 when minThreatModel is 'semi-malicious'.",
    ),
});

const dpSchema = z.strictObject({
  level: z
    .enum(['record', 'site'])
    .describe(
      "'record' protects each patient (DP-SGD), 'site' the site's whole contribution (DP-FedAvg). Rounds must use exactly this level.",
    ),
  epsilonLimit: z
    .number()
    .gt(0)
    .describe("Cumulative epsilon this site spends at most; enforced by the node's own ledger."),
  delta: z
    .number()
    .gt(0)
    .lt(1)
    .default(DEFAULT_SITE_DELTA)
    .describe('The delta of the (epsilon, delta) guarantee; rounds may not ask for a larger one.'),
  minNoiseMultiplier: z
    .number()
    .gt(0)
    .optional()
    .describe('Smallest noise multiplier accepted (no minimum when absent).'),
  maxClipNorm: z
    .number()
    .gt(0)
    .optional()
    .describe('Largest clipping norm accepted (no maximum when absent).'),
  statisticsShare: z
    .number()
    .gt(0)
    .lt(1)
    .default(DEFAULT_SITE_STATISTICS_SHARE)
    .describe(
      'The most of its budget (as zCDP, where releases add up) this site lets statistics and evaluation releases spend, whatever share the federation announces.',
    ),
});

const modelsSchema = z.strictObject({
  kinds: z
    .array(z.enum(MODEL_KINDS))
    .min(1)
    .refine((kinds) => new Set(kinds).size === kinds.length, {
      params: { duplicate: true },
    })
    .meta({ uniqueItems: true })
    .default(() => [...MODEL_KINDS])
    .describe('The model kinds this site trains.'),
  maxParameters: z
    .int()
    .min(1)
    .max(1_000_000_000)
    .default(100_000_000)
    .describe('Largest model (number of trainable parameters) this site trains.'),
});

/** The zod schema of a policy document; parsePolicy adds the contradiction checks it cannot express. */
const sitePolicySchema = z
  .strictObject({
    secureAggregation: secureAggregationSchema
      .default(() => secureAggregationSchema.parse({}))
      .describe('Secure aggregation (SecAgg+) this site requires.'),
    minSitesPerSum: z
      .int()
      .min(2)
      .max(10_000)
      .default(3)
      .describe(
        "Fewest sites a secure sum that includes this site's data may hold, after dropouts: the round must offer at least this many, and the node refuses to reveal its shares for a sum over fewer survivors. Does not apply to rounds without secure aggregation, which reveal this site's own contribution and which the policy allows only when secureAggregation.required is false (or, for evaluation, revealOwnMetrics is true).",
      ),
    dp: dpSchema
      .nullable()
      .default(null)
      .describe('Differential privacy this site requires; null: none required.'),
    models: modelsSchema
      .default(() => modelsSchema.parse({}))
      .describe('The models this site trains.'),
    revealOwnMetrics: z
      .boolean()
      .default(false)
      .describe(
        "Allow evaluation rounds without secure aggregation, which reveal this site's own held-out metrics to the aggregator, even when secure aggregation is required.",
      ),
    rowCount: z
      .enum(['exact', 'lowerBound'])
      .default('exact')
      .describe(
        "How the site reports its number of rows: 'exact', or 'lowerBound' (a coarser figure; allowed without dp, where it only reveals less).",
      ),
    requireTls: z
      .boolean()
      .default(false)
      .describe('Refuse to connect to an aggregator over plain ws:// (wss:// only).'),
  })
  .meta({
    title: 'Confide site privacy policy',
    description:
      'What a Confide client node accepts before it touches its data, whatever the aggregator proposes. Every field is optional; the defaults are the policy of a node without a file. Beyond this schema the node refuses contradictions: secureAggregation.adversarialRate of 1/3 or more with minThreatModel "semi-malicious".',
  });

/**
 * The JSON Schema (draft 2020-12) of a policy document, as committed in
 * docs/schemas/site-policy.schema.json.
 *
 * @example
 * writeFileSync('site-policy.schema.json', JSON.stringify(sitePolicyJsonSchema(), null, 2));
 */
export function sitePolicyJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(sitePolicySchema, { io: 'input', target: 'draft-2020-12' });
}

function deepFreeze<T>(value: T): T {
  if (typeof value === 'object' && value !== null) {
    for (const v of Object.values(value)) deepFreeze(v);
    Object.freeze(value);
  }
  return value;
}

/** The policy of a node without a policy file. */
export const DEFAULT_POLICY: SitePolicy = deepFreeze(sitePolicySchema.parse({}));

// The fields of each object of the document, by path ('' is the document itself).
const FIELDS: Readonly<Record<string, string>> = {
  '': Object.keys(sitePolicySchema.shape).join(', '),
  secureAggregation: Object.keys(secureAggregationSchema.shape).join(', '),
  dp: Object.keys(dpSchema.shape).join(', '),
  models: Object.keys(modelsSchema.shape).join(', '),
};

// What each field allows, for error messages ('*' stands for an array index).
const ALLOWED: Readonly<Record<string, string>> = {
  '': `a JSON object with the fields ${FIELDS['']}`,
  secureAggregation: `an object with the fields ${FIELDS['secureAggregation']}`,
  'secureAggregation.required': 'true or false',
  'secureAggregation.minThreatModel': '"semi-honest" or "semi-malicious"',
  'secureAggregation.adversarialRate': `a number from 0 up to (not including) ${MAX_ADVERSARIAL_RATE}`,
  minSitesPerSum: 'an integer from 2 to 10000',
  dp: `null or an object with the fields ${FIELDS['dp']} (level and epsilonLimit required)`,
  'dp.level': '"record" or "site"',
  'dp.epsilonLimit': 'a number greater than 0',
  'dp.delta': 'a number between 0 and 1 (both excluded)',
  'dp.minNoiseMultiplier': 'a number greater than 0',
  'dp.maxClipNorm': 'a number greater than 0',
  'dp.statisticsShare': 'a number between 0 and 1 (both excluded)',
  models: `an object with the fields ${FIELDS['models']}`,
  'models.kinds': `a non-empty list of distinct kinds from ${MODEL_KINDS.map((k) => `"${k}"`).join(', ')}`,
  'models.kinds.*': `one of ${MODEL_KINDS.map((k) => `"${k}"`).join(', ')}`,
  'models.maxParameters': 'an integer from 1 to 1000000000',
  revealOwnMetrics: 'true or false',
  rowCount: '"exact" or "lowerBound"',
  requireTls: 'true or false',
};

function jsonPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const p of path) out += typeof p === 'number' ? `[${p}]` : `${out ? '.' : ''}${String(p)}`;
  return out || '(the document)';
}

function show(value: unknown): string {
  if (value === undefined) return 'missing';
  const text = typeof value === 'number' ? String(value) : JSON.stringify(value);
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}

interface Problem {
  code: PolicyErrorCode;
  text: string;
}

function describeIssue(issue: z.core.$ZodIssue): Problem[] {
  const where = jsonPath(issue.path);
  const allowed =
    ALLOWED[issue.path.map((p) => (typeof p === 'number' ? '*' : String(p))).join('.')];
  const allowedText = allowed ? `; allowed: ${allowed}` : '';
  if (issue.code === 'unrecognized_keys') {
    const fields = FIELDS[issue.path.join('.')] ?? '';
    return issue.keys.map((key) => ({
      code: 'POLICY_UNKNOWN_FIELD',
      text: `${jsonPath([...issue.path, key])} is not a policy field; ${issue.path.length ? where : 'the document'} takes ${fields}`,
    }));
  }
  const input = (issue as { input?: unknown }).input;
  // Out of range: a value of the right type that is not allowed (a number outside its bounds, not an
  // integer or not finite; a string outside its enumeration; a list too short). Invalid: the wrong
  // type, a missing required field or a repeated model kind.
  let code: PolicyErrorCode;
  if (input === undefined || issue.code === 'custom') {
    code = 'POLICY_INVALID';
  } else if (issue.code === 'invalid_type') {
    code = typeof input === 'number' ? 'POLICY_OUT_OF_RANGE' : 'POLICY_INVALID';
  } else {
    code = 'POLICY_OUT_OF_RANGE';
  }
  const what = issue.code === 'custom' ? 'lists a kind twice' : `is ${show(input)}`;
  return [{ code, text: `${where} ${what}${allowedText}` }];
}

const PROBLEM_ORDER: readonly PolicyErrorCode[] = [
  'POLICY_UNKNOWN_FIELD',
  'POLICY_INVALID',
  'POLICY_OUT_OF_RANGE',
];

/** Policies whose fields are each allowed but which promise two things that cannot both hold. */
function contradictions(policy: SitePolicy): string[] {
  const out: string[] = [];
  const sa = policy.secureAggregation;
  if (
    sa.minThreatModel === 'semi-malicious' &&
    sa.adversarialRate >= MAX_SEMI_MALICIOUS_ADVERSARIAL_RATE
  ) {
    out.push(
      `secureAggregation.adversarialRate ${sa.adversarialRate} with minThreatModel "semi-malicious": ` +
        'a semi-malicious round protects against fewer than a third of the sites colluding ' +
        '(its threshold is checked against two thirds of the neighbours); lower adversarialRate ' +
        'below 1/3 or use "semi-honest"',
    );
  }
  return out;
}

/**
 * Validates a policy document (parsed JSON) and fills in the defaults. Refuses unknown fields at
 * every level, values out of range and contradictions with a PolicyError naming the field.
 *
 * @example
 * parsePolicy({ dp: { level: 'record', epsilonLimit: 8 } }).dp; // { level: 'record', epsilonLimit: 8, delta: 1e-5 }
 */
export function parsePolicy(json: unknown, source = 'site policy'): SitePolicy {
  const parsed = sitePolicySchema.safeParse(json, { reportInput: true });
  if (!parsed.success) {
    const problems = parsed.error.issues
      .flatMap(describeIssue)
      .filter((p, i, all) => all.findIndex((q) => q.text === p.text) === i)
      .sort((a, b) => PROBLEM_ORDER.indexOf(a.code) - PROBLEM_ORDER.indexOf(b.code));
    const first = problems[0] as Problem;
    const more = problems.length > 5 ? `; and ${problems.length - 5} more` : '';
    throw new PolicyError(
      first.code,
      `${source}: ${problems
        .slice(0, 5)
        .map((p) => p.text)
        .join('; ')}${more}`,
    );
  }
  const policy: SitePolicy = parsed.data;
  const contradicting = contradictions(policy);
  if (contradicting.length > 0) {
    throw new PolicyError('POLICY_CONTRADICTION', `${source}: ${contradicting.join('; ')}`);
  }
  return deepFreeze(policy);
}

/**
 * Reads and validates a policy file. A file that cannot be read is a NodeError; one that is not JSON
 * or not a valid policy, a PolicyError.
 *
 * @example
 * const policy = await loadPolicyFile('/etc/confide/site-policy.json');
 */
export async function loadPolicyFile(path: string): Promise<SitePolicy> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new NodeError(
      code === 'ENOENT'
        ? `site policy ${path} does not exist`
        : `cannot read site policy ${path}: ${(e as Error).message}`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text) as unknown;
  } catch (e) {
    throw new PolicyError(
      'POLICY_INVALID_JSON',
      `site policy ${path} is not valid JSON: ${(e as Error).message}`,
    );
  }
  return parsePolicy(json, `site policy ${path}`);
}

/**
 * The effective policy as a plain JSON object (absent optional fields left out), which parsePolicy
 * reads back unchanged.
 *
 * @example
 * JSON.stringify(policyJson(DEFAULT_POLICY));
 */
export function policyJson(policy: SitePolicy): SitePolicy {
  const { dp } = policy;
  return {
    secureAggregation: { ...policy.secureAggregation },
    minSitesPerSum: policy.minSitesPerSum,
    dp:
      dp === null
        ? null
        : {
            level: dp.level,
            epsilonLimit: dp.epsilonLimit,
            delta: dp.delta,
            ...(dp.minNoiseMultiplier !== undefined
              ? { minNoiseMultiplier: dp.minNoiseMultiplier }
              : {}),
            ...(dp.maxClipNorm !== undefined ? { maxClipNorm: dp.maxClipNorm } : {}),
            statisticsShare: dp.statisticsShare,
          },
    models: { kinds: [...policy.models.kinds], maxParameters: policy.models.maxParameters },
    revealOwnMetrics: policy.revealOwnMetrics,
    rowCount: policy.rowCount,
    requireTls: policy.requireTls,
  };
}

/**
 * The policy in a few lines for the node to print at start.
 *
 * @example
 * for (const line of describePolicy(policy)) console.log(`  ${line}`);
 */
export function describePolicy(policy: SitePolicy): string[] {
  const sa = policy.secureAggregation;
  const dp = policy.dp;
  const percent = `${+(sa.adversarialRate * 100).toFixed(2)}%`;
  const dpLine =
    dp === null
      ? 'differential privacy: not required'
      : `differential privacy: ${dp.level}-level required, epsilon at most ${dp.epsilonLimit} at delta ${dp.delta}` +
        (dp.minNoiseMultiplier !== undefined
          ? `, noise multiplier at least ${dp.minNoiseMultiplier}`
          : '') +
        (dp.maxClipNorm !== undefined ? `, clip norm at most ${dp.maxClipNorm}` : '') +
        `, at most ${dp.statisticsShare * 100}% of it on statistics and evaluation`;
  return [
    `secure aggregation: ${sa.required ? 'required' : 'not required'}, ${sa.minThreatModel} or stronger, thresholds assuming up to ${percent} of sites collude`,
    `secure sums: at least ${policy.minSitesPerSum} sites (in the round, and still there when it is unmasked)`,
    dpLine,
    `models: ${policy.models.kinds.join(', ')}; at most ${policy.models.maxParameters.toLocaleString('en-US')} parameters`,
    `own evaluation metrics: ${policy.revealOwnMetrics ? 'may be revealed to the aggregator' : 'only inside secure sums'}`,
    `row count: ${policy.rowCount === 'exact' ? 'reported exactly' : 'reported as a lower bound'}`,
    `TLS: ${policy.requireTls ? 'required (wss:// only)' : 'not required'}`,
  ];
}
