import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { NodeError } from './keys';
import {
  DEFAULT_POLICY,
  describePolicy,
  loadPolicyFile,
  parsePolicy,
  PolicyError,
  policyJson,
  sitePolicyJsonSchema,
  type PolicyErrorCode,
} from './policy';

const SCHEMA_PATH = fileURLToPath(
  new URL('../../../docs/schemas/site-policy.schema.json', import.meta.url),
);

function refusal(doc: unknown): { code: PolicyErrorCode; message: string } {
  try {
    parsePolicy(doc);
  } catch (e) {
    expect(e).toBeInstanceOf(PolicyError);
    return { code: (e as PolicyError).code, message: (e as PolicyError).message };
  }
  throw new Error(`accepted ${JSON.stringify(doc)}`);
}

// ---- a validator for the subset of JSON Schema the generated schema uses -------------------------

type Schema = Record<string, unknown>;
const KEYWORDS = new Set([
  '$schema',
  'title',
  'description',
  'default',
  'type',
  'properties',
  'required',
  'additionalProperties',
  'anyOf',
  'enum',
  'items',
  'minItems',
  'uniqueItems',
  'minimum',
  'maximum',
  'exclusiveMinimum',
  'exclusiveMaximum',
]);

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function hasType(type: unknown, v: unknown): boolean {
  switch (type) {
    case 'object':
      return isObject(v);
    case 'array':
      return Array.isArray(v);
    case 'null':
      return v === null;
    case 'integer':
      return Number.isInteger(v);
    case 'number':
      return typeof v === 'number' && Number.isFinite(v);
    case 'string':
    case 'boolean':
      return typeof v === type;
    default:
      throw new Error(`the test validator does not know type ${String(type)}`);
  }
}

function validates(schema: Schema, v: unknown): boolean {
  for (const key of Object.keys(schema)) {
    if (!KEYWORDS.has(key)) throw new Error(`the test validator does not know keyword ${key}`);
  }
  const s = schema as {
    type?: string;
    anyOf?: Schema[];
    enum?: unknown[];
    minimum?: number;
    maximum?: number;
    exclusiveMinimum?: number;
    exclusiveMaximum?: number;
    items?: Schema;
    minItems?: number;
    uniqueItems?: boolean;
    properties?: Record<string, Schema>;
    required?: string[];
    additionalProperties?: boolean;
  };
  if (s.anyOf && !s.anyOf.some((sub) => validates(sub, v))) return false;
  if (s.type !== undefined && !hasType(s.type, v)) return false;
  if (s.enum && !s.enum.includes(v)) return false;
  if (typeof v === 'number') {
    if (s.minimum !== undefined && !(v >= s.minimum)) return false;
    if (s.maximum !== undefined && !(v <= s.maximum)) return false;
    if (s.exclusiveMinimum !== undefined && !(v > s.exclusiveMinimum)) return false;
    if (s.exclusiveMaximum !== undefined && !(v < s.exclusiveMaximum)) return false;
  }
  if (Array.isArray(v)) {
    if (s.minItems !== undefined && v.length < s.minItems) return false;
    if (s.uniqueItems && new Set(v.map((x) => JSON.stringify(x))).size !== v.length) return false;
    if (s.items && !v.every((x) => validates(s.items as Schema, x))) return false;
  }
  if (isObject(v)) {
    if (s.required && !s.required.every((k) => k in v)) return false;
    for (const [k, x] of Object.entries(v)) {
      const sub = s.properties?.[k];
      if (sub ? !validates(sub, x) : s.additionalProperties === false) return false;
    }
  }
  return true;
}

// ---- the document ------------------------------------------------------------------------------

describe('site policy document', () => {
  it('runs with the documented defaults when the node has no policy file', () => {
    expect(DEFAULT_POLICY).toEqual({
      secureAggregation: { required: true, minThreatModel: 'semi-honest', adversarialRate: 0.05 },
      minSitesPerSum: 3,
      dp: null,
      models: { kinds: ['logistic', 'mlp', 'cnn', 'layers'], maxParameters: 100_000_000 },
      revealOwnMetrics: false,
      rowCount: 'exact',
      requireTls: false,
    });
    expect(parsePolicy({})).toEqual(DEFAULT_POLICY);
    expect(Object.isFrozen(DEFAULT_POLICY.models.kinds)).toBe(true);
  });

  it('fills the defaults of a partly written section', () => {
    const p = parsePolicy({
      secureAggregation: { minThreatModel: 'semi-malicious' },
      dp: { level: 'record', epsilonLimit: 8 },
      models: { kinds: ['logistic'] },
    });
    expect(p.secureAggregation).toEqual({
      required: true,
      minThreatModel: 'semi-malicious',
      adversarialRate: 0.05,
    });
    expect(p.dp).toEqual({ level: 'record', epsilonLimit: 8, delta: 1e-5, statisticsShare: 0.1 });
    expect(p.models).toEqual({ kinds: ['logistic'], maxParameters: 100_000_000 });
  });

  it('refuses a misspelt field at every level, naming it and the fields allowed there', () => {
    const cases: [unknown, string][] = [
      [{ requireTLS: true }, 'requireTLS is not a policy field; the document takes'],
      [
        { secureAggregation: { treshold: 3 } },
        'secureAggregation.treshold is not a policy field; secureAggregation takes required, minThreatModel, adversarialRate',
      ],
      [
        { dp: { level: 'site', epsilonLimit: 1, epsilon: 1 } },
        'dp.epsilon is not a policy field; dp takes level, epsilonLimit, delta',
      ],
      [{ models: { maxParams: 10 } }, 'models.maxParams is not a policy field; models takes'],
    ];
    for (const [doc, text] of cases) {
      const r = refusal(doc);
      expect(r.code).toBe('POLICY_UNKNOWN_FIELD');
      expect(r.message).toContain(text);
    }
  });

  it('refuses values out of range, naming the field and what is allowed', () => {
    const cases: [unknown, string][] = [
      [{ minSitesPerSum: 1 }, 'minSitesPerSum is 1; allowed: an integer from 2 to 10000'],
      [{ minSitesPerSum: 10_001 }, 'minSitesPerSum is 10001'],
      [{ minSitesPerSum: 2.5 }, 'minSitesPerSum is 2.5'],
      [{ secureAggregation: { adversarialRate: -0.1 } }, 'secureAggregation.adversarialRate'],
      [{ secureAggregation: { adversarialRate: 0.5 } }, 'up to (not including) 0.5'],
      [{ secureAggregation: { minThreatModel: 'malicious' } }, '"semi-honest" or "semi-malicious"'],
      [{ dp: { level: 'site', epsilonLimit: 0 } }, 'dp.epsilonLimit is 0; allowed: a number'],
      [{ dp: { level: 'site', epsilonLimit: 1, delta: 0 } }, 'dp.delta is 0'],
      [{ dp: { level: 'site', epsilonLimit: 1, delta: 1 } }, 'between 0 and 1'],
      [{ dp: { level: 'site', epsilonLimit: 1, minNoiseMultiplier: 0 } }, 'dp.minNoiseMultiplier'],
      [{ dp: { level: 'site', epsilonLimit: 1, minNoiseMultiplier: -1 } }, 'greater than 0'],
      [{ dp: { level: 'site', epsilonLimit: 1, maxClipNorm: 0 } }, 'dp.maxClipNorm is 0'],
      [{ dp: { level: 'patient', epsilonLimit: 1 } }, 'dp.level is "patient"'],
      [{ models: { kinds: [] } }, 'models.kinds is []; allowed: a non-empty list'],
      [{ models: { kinds: ['mlp', 'rnn'] } }, 'models.kinds[1] is "rnn"; allowed: one of'],
      [{ models: { maxParameters: 0 } }, 'models.maxParameters is 0'],
      [{ models: { maxParameters: 1e9 + 1 } }, 'an integer from 1 to 1000000000'],
      [{ rowCount: 'approximate' }, 'rowCount is "approximate"; allowed: "exact" or "lowerBound"'],
    ];
    for (const [doc, text] of cases) {
      const r = refusal(doc);
      expect(r.code, JSON.stringify(doc)).toBe('POLICY_OUT_OF_RANGE');
      expect(r.message).toContain(text);
    }
  });

  it('refuses values of the wrong type, missing DP fields and a model kind listed twice', () => {
    const cases: [unknown, string][] = [
      [[], '(the document) is []; allowed: a JSON object'],
      [null, '(the document) is null'],
      [{ requireTls: 'yes' }, 'requireTls is "yes"; allowed: true or false'],
      [{ secureAggregation: null }, 'secureAggregation is null; allowed: an object'],
      [{ minSitesPerSum: '3' }, 'minSitesPerSum is "3"'],
      [{ dp: true }, 'dp is true; allowed: null or an object'],
      [{ dp: { level: 'record' } }, 'dp.epsilonLimit is missing'],
      [{ models: { kinds: ['mlp', 'mlp'] } }, 'models.kinds lists a kind twice'],
    ];
    for (const [doc, text] of cases) {
      const r = refusal(doc);
      expect(r.code, JSON.stringify(doc)).toBe('POLICY_INVALID');
      expect(r.message).toContain(text);
    }
  });

  it('reports every problem of a document in one message without zod internals', () => {
    const r = refusal({ secureAggregation: { treshold: 2 }, minSitesPerSum: 0, requireTls: 1 });
    expect(r.code).toBe('POLICY_UNKNOWN_FIELD');
    expect(r.message).toMatch(/^site policy: secureAggregation\.treshold is not a policy field/);
    expect(r.message).toContain('minSitesPerSum is 0');
    expect(r.message).toContain('requireTls is 1');
    expect(r.message).not.toMatch(/Invalid input|Too small|expected|Zod|\n/);
  });

  it('refuses a semi-malicious minimum that assumes a third or more of the sites collude', () => {
    const r = refusal({
      secureAggregation: { minThreatModel: 'semi-malicious', adversarialRate: 0.34 },
    });
    expect(r.code).toBe('POLICY_CONTRADICTION');
    expect(r.message).toContain('secureAggregation.adversarialRate 0.34');
    expect(r.message).toContain('fewer than a third');
  });

  it('accepts combinations that look odd but promise nothing contradictory', () => {
    for (const doc of [
      // DP without secure aggregation: the site's own update carries the noise.
      { secureAggregation: { required: false }, dp: { level: 'site', epsilonLimit: 1 } },
      // A lower-bound row count without DP only reveals less.
      { rowCount: 'lowerBound' },
      { requireTls: true, secureAggregation: { required: false } },
      // The site allows its own metrics in the clear, and secure sums for everything else.
      { revealOwnMetrics: true },
      { secureAggregation: { minThreatModel: 'semi-malicious', adversarialRate: 0.33 } },
      { secureAggregation: { minThreatModel: 'semi-honest', adversarialRate: 0.49 } },
    ]) {
      expect(() => parsePolicy(doc), JSON.stringify(doc)).not.toThrow();
    }
  });

  it('loads a policy file, naming the file in what it refuses', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'confide-policy-'));
    try {
      const good = join(dir, 'good.json');
      await writeFile(good, JSON.stringify({ requireTls: true, minSitesPerSum: 5 }));
      expect(await loadPolicyFile(good)).toMatchObject({ requireTls: true, minSitesPerSum: 5 });

      const broken = join(dir, 'broken.json');
      await writeFile(broken, '{ "requireTls": true, }');
      await expect(loadPolicyFile(broken)).rejects.toMatchObject({
        code: 'POLICY_INVALID_JSON',
        message: expect.stringContaining(`site policy ${broken} is not valid JSON`) as string,
      });

      const wrong = join(dir, 'wrong.json');
      await writeFile(wrong, '{ "minSitesPerSum": 1 }');
      await expect(loadPolicyFile(wrong)).rejects.toMatchObject({
        code: 'POLICY_OUT_OF_RANGE',
        message: expect.stringContaining(`site policy ${wrong}: minSitesPerSum is 1`) as string,
      });

      const missing = join(dir, 'missing.json');
      const error = await loadPolicyFile(missing).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(NodeError);
      expect((error as Error).message).toBe(`site policy ${missing} does not exist`);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('prints the policy in one line per concern', () => {
    expect(describePolicy(DEFAULT_POLICY)).toEqual([
      'secure aggregation: required, semi-honest or stronger, thresholds assuming up to 5% of sites collude',
      'secure sums: at least 3 sites (in the round, and still there when it is unmasked)',
      'differential privacy: not required',
      'models: logistic, mlp, cnn, layers; at most 100,000,000 parameters',
      'own evaluation metrics: only inside secure sums',
      'row count: reported exactly',
      'TLS: not required',
    ]);
    const strict = parsePolicy({
      dp: { level: 'record', epsilonLimit: 3, minNoiseMultiplier: 1.1, maxClipNorm: 1 },
      requireTls: true,
    });
    expect(describePolicy(strict)).toContain(
      'differential privacy: record-level required, epsilon at most 3 at delta 0.00001, noise multiplier at least 1.1, clip norm at most 1, at most 10% of it on statistics and evaluation',
    );
    expect(describePolicy(strict)).toContain('TLS: required (wss:// only)');
  });

  it('writes the effective policy as JSON that reads back the same', () => {
    for (const p of [
      DEFAULT_POLICY,
      parsePolicy({
        dp: { level: 'site', epsilonLimit: 2, maxClipNorm: 0.5 },
        rowCount: 'lowerBound',
      }),
    ]) {
      const json = JSON.parse(JSON.stringify(policyJson(p))) as unknown;
      expect(json).toEqual(policyJson(p));
      expect(parsePolicy(json)).toEqual(p);
    }
    expect(policyJson(parsePolicy({ dp: { level: 'site', epsilonLimit: 2 } })).dp).toEqual({
      level: 'site',
      epsilonLimit: 2,
      delta: 1e-5,
      statisticsShare: 0.1,
    });
  });
});

describe('site policy JSON Schema', () => {
  it('is published as generated from the parser (docs/schemas/site-policy.schema.json)', async () => {
    const generated = sitePolicyJsonSchema();
    // UPDATE_SCHEMAS=1 rewrites the file; run prettier --write on it afterwards.
    if (process.env['UPDATE_SCHEMAS'] === '1') {
      await writeFile(SCHEMA_PATH, `${JSON.stringify(generated, null, 2)}\n`);
    }
    const committed = JSON.parse(await readFile(SCHEMA_PATH, 'utf8')) as unknown;
    expect(
      committed,
      'docs/schemas/site-policy.schema.json is stale: run UPDATE_SCHEMAS=1 npx vitest run apps/client-node/src/policy.spec.ts',
    ).toEqual(generated);
    expect(generated['$schema']).toBe('https://json-schema.org/draft/2020-12/schema');
  });

  it('agrees with parsePolicy on valid and invalid documents', () => {
    const schema = sitePolicyJsonSchema();
    const valid: unknown[] = [
      {},
      policyJson(DEFAULT_POLICY),
      { secureAggregation: { required: false, adversarialRate: 0 }, minSitesPerSum: 2 },
      { minSitesPerSum: 10_000, requireTls: true, revealOwnMetrics: true },
      { dp: null },
      { dp: { level: 'record', epsilonLimit: 0.5, delta: 1e-9, minNoiseMultiplier: 0.8 } },
      { dp: { level: 'site', epsilonLimit: 10, maxClipNorm: 2 } },
      { models: { kinds: ['cnn', 'layers'], maxParameters: 1 } },
      { models: { maxParameters: 1_000_000_000 } },
      { rowCount: 'lowerBound' },
    ];
    const invalid: unknown[] = [
      [],
      null,
      'policy',
      { extra: 1 },
      { secureAggregation: { required: 'true' } },
      { secureAggregation: { adversarialRate: 0.5 } },
      { secureAggregation: { minThreatModel: 'honest' } },
      { secureAggregation: { extra: 1 } },
      { minSitesPerSum: 1 },
      { minSitesPerSum: 3.5 },
      { minSitesPerSum: 10_001 },
      { dp: {} },
      { dp: { level: 'record' } },
      { dp: { epsilonLimit: 1 } },
      { dp: { level: 'record', epsilonLimit: 0 } },
      { dp: { level: 'record', epsilonLimit: 1, delta: 1 } },
      { dp: { level: 'record', epsilonLimit: 1, minNoiseMultiplier: 0 } },
      { dp: { level: 'record', epsilonLimit: 1, maxClipNorm: -1 } },
      { dp: { level: 'record', epsilonLimit: 1, extra: 1 } },
      { models: { kinds: [] } },
      { models: { kinds: ['rnn'] } },
      { models: { kinds: ['mlp', 'mlp'] } },
      { models: { maxParameters: 0 } },
      { models: { maxParameters: 1.5 } },
      { revealOwnMetrics: 'no' },
      { rowCount: 'approx' },
      { requireTls: null },
    ];
    // What the schema cannot say: parsePolicy refuses these as contradictions.
    const contradictions: unknown[] = [
      { secureAggregation: { minThreatModel: 'semi-malicious', adversarialRate: 1 / 3 } },
    ];
    for (const doc of valid) {
      expect(validates(schema, doc), JSON.stringify(doc)).toBe(true);
      expect(() => parsePolicy(doc), JSON.stringify(doc)).not.toThrow();
    }
    for (const doc of invalid) {
      expect(validates(schema, doc), JSON.stringify(doc)).toBe(false);
      expect(() => parsePolicy(doc), JSON.stringify(doc)).toThrow(PolicyError);
    }
    for (const doc of contradictions) {
      expect(validates(schema, doc)).toBe(true);
      expect(refusal(doc).code).toBe('POLICY_CONTRADICTION');
    }
  });
});
