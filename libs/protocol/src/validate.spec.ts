import { describe, expect, it } from 'vitest';
import {
  ErrorCode,
  parseJsonText,
  parseServerMessage,
  parseSiteMessage,
  PROTOCOL_VERSION,
  ProtocolError,
  SERVER_MESSAGE_TYPES,
  SITE_MESSAGE_TYPES,
} from './index';

function protocolErrorOf(fn: () => unknown): ProtocolError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(ProtocolError);
    return e as ProtocolError;
  }
  throw new Error('expected a ProtocolError, but nothing was thrown');
}

const metrics = { loss: 0.3, accuracy: 0.9, auc: null, f1: 0.8, numExamples: 40 };

/** One valid example of every message a site sends. */
const SITE_EXAMPLES: Record<string, Record<string, unknown>> = {
  login: {
    v: PROTOCOL_VERSION,
    type: 'login',
    id: 'm1',
    federationId: 'f1',
    publicKey: 'cGs=',
    nonce: 'bm9uY2U=',
    clientNonce: 'Y25vbmNl',
    signature: 'c2ln',
    client: 'confide-node/0.1',
  },
  'stats.report': {
    v: PROTOCOL_VERSION,
    type: 'stats.report',
    id: 'm2',
    runId: 'r1',
    round: 1,
    count: 10,
    sum: [1, 2],
    sumSq: [3, 4],
  },
  'round.update': {
    v: PROTOCOL_VERSION,
    type: 'round.update',
    id: 'm3',
    runId: 'r1',
    round: 1,
    numExamples: 50,
    trainLoss: 0.5,
  },
  'round.metrics': {
    v: PROTOCOL_VERSION,
    type: 'round.metrics',
    id: 'm4',
    runId: 'r1',
    round: 1,
    modelVersionId: 'mv1',
    metrics,
  },
  'round.decline': {
    v: PROTOCOL_VERSION,
    type: 'round.decline',
    id: 'm5',
    runId: 'r1',
    round: 1,
    stage: 'training',
    code: 'SCHEMA_MISMATCH',
    reason: 'no label column',
  },
  'ledger.reserve': {
    v: PROTOCOL_VERSION,
    type: 'ledger.reserve',
    id: 'm6',
    runId: 'r1',
    round: 1,
    sum: 'update',
  },
  'ledger.receipt': {
    v: PROTOCOL_VERSION,
    type: 'ledger.receipt',
    id: 'm6r',
    receipt: { seq: 3 },
  },
  'ledger.none': { v: PROTOCOL_VERSION, type: 'ledger.none', id: 'm6n', seq: 3 },
  'secagg.advertise': {
    v: PROTOCOL_VERSION,
    type: 'secagg.advertise',
    id: 'm7',
    runId: 'r1',
    round: 1,
    sum: 'update',
    advertisement: { siteId: 's' },
  },
  'secagg.masked': {
    v: PROTOCOL_VERSION,
    type: 'secagg.masked',
    id: 'm11',
    runId: 'r1',
    round: 1,
    sum: 'evaluation',
  },
  'secagg.shares': {
    v: PROTOCOL_VERSION,
    type: 'secagg.shares',
    id: 'm8',
    runId: 'r1',
    round: 1,
    sum: 'update',
    shares: [],
  },
  'secagg.signature': {
    v: PROTOCOL_VERSION,
    type: 'secagg.signature',
    id: 'm9',
    runId: 'r1',
    round: 1,
    sum: 'update',
    signature: { siteId: 's' },
  },
  'secagg.unmasked': {
    v: PROTOCOL_VERSION,
    type: 'secagg.unmasked',
    id: 'm10',
    runId: 'r1',
    round: 1,
    sum: 'update',
    response: { siteId: 's' },
  },
};

/** One valid example of every message the aggregator sends. */
const SERVER_EXAMPLES: Record<string, Record<string, unknown>> = {
  challenge: {
    v: PROTOCOL_VERSION,
    type: 'challenge',
    id: 's1',
    nonce: 'bm9uY2U=',
    serverId: 'confide-1',
    serverKey: 'cGs=',
    sig: 'c2ln',
  },
  welcome: {
    v: PROTOCOL_VERSION,
    type: 'welcome',
    id: 's2',
    siteId: 'st1',
    siteName: 'h1',
    federationId: 'f1',
    clientNonce: 'Y25vbmNl',
  },
  error: {
    v: PROTOCOL_VERSION,
    type: 'error',
    id: 's3',
    code: 'TIMEOUT',
    message: 'late',
    fatal: false,
  },
  'stats.request': {
    v: PROTOCOL_VERSION,
    type: 'stats.request',
    id: 's4',
    runId: 'r1',
    round: 1,
    federationId: 'f1',
    features: 30,
    secureAggregation: null,
    privacy: null,
    featureBounds: null,
    deadline: '2030-01-01T00:00:00.000Z',
  },
  'round.train': {
    v: PROTOCOL_VERSION,
    type: 'round.train',
    id: 's5',
    runId: 'r1',
    round: 2,
    federationId: 'f1',
    modelVersionId: 'mv1',
    modelHash: 'ab',
    modelSpec: { kind: 'logistic', inputDim: 2 },
    train: { epochs: 1, batchSize: 32, learningRate: 0.01, optimizer: 'adam' },
    standardization: { mean: [0, 1], std: [1, 2] },
    privacy: {
      level: 'record',
      noiseMultiplier: 1.1,
      clipNorm: 1,
      delta: 1e-5,
      epsilonLimit: 1,
      siteSamplingRate: null,
      survivorsAssumed: null,
    },
    secureAggregation: {
      params: { threshold: 2 },
      roster: [
        { siteId: 'a', publicKey: 'cGs=' },
        { siteId: 'b', publicKey: 'cGs=' },
      ],
      weightNormalizer: 300,
      vectorLength: 4,
    },
    deadline: '2030-01-01T00:00:00.000Z',
  },
  'round.evaluate': {
    v: PROTOCOL_VERSION,
    type: 'round.evaluate',
    id: 's6',
    runId: 'r1',
    round: 2,
    federationId: 'f1',
    modelVersionId: 'mv2',
    modelHash: 'cd',
    secureAggregation: null,
    privacy: null,
    evaluation: { classes: 2, bins: 20, lossClip: 10 },
    deadline: '2030-01-01T00:00:00.000Z',
  },
  'sum.open': {
    v: PROTOCOL_VERSION,
    type: 'sum.open',
    id: 's13',
    runId: 'r1',
    round: 2,
    federationId: 'f1',
    sum: 'evaluation',
    secureAggregation: {
      params: { threshold: 2 },
      roster: [
        { siteId: 'a', publicKey: 'cGs=' },
        { siteId: 'b', publicKey: 'cGs=' },
      ],
      weightNormalizer: 1,
      vectorLength: 4,
    },
    privacy: null,
    evaluation: { classes: 2, bins: 20, lossClip: 10 },
    deadline: '2030-01-01T00:00:00.000Z',
  },
  'round.end': {
    v: PROTOCOL_VERSION,
    type: 'round.end',
    id: 's7',
    runId: 'r1',
    round: 2,
    outcome: 'aborted',
    reason: 'too few sites',
  },
  'ledger.slot': {
    v: PROTOCOL_VERSION,
    type: 'ledger.slot',
    id: 's8',
    runId: 'r1',
    round: 2,
    sum: 'update',
    refId: 'm6',
    seq: 3,
    prevHash: 'a'.repeat(64),
    createdAt: '2030-01-01T00:00:00.000Z',
    epsilonLimit: 1,
    delta: 1e-5,
  },
  'ledger.held': {
    v: PROTOCOL_VERSION,
    type: 'ledger.held',
    id: 's8h',
    seq: 3,
    round: 2,
    sum: 'update',
  },
  'secagg.advertisements': {
    v: PROTOCOL_VERSION,
    type: 'secagg.advertisements',
    id: 's9',
    runId: 'r1',
    round: 2,
    sum: 'update',
    advertisements: [],
  },
  'secagg.deliver': {
    v: PROTOCOL_VERSION,
    type: 'secagg.deliver',
    id: 's10',
    runId: 'r1',
    round: 2,
    sum: 'update',
    shares: [],
  },
  'secagg.consistency': {
    v: PROTOCOL_VERSION,
    type: 'secagg.consistency',
    id: 's11',
    runId: 'r1',
    round: 2,
    sum: 'update',
    request: {},
  },
  'secagg.unmask': {
    v: PROTOCOL_VERSION,
    type: 'secagg.unmask',
    id: 's12',
    runId: 'r1',
    round: 2,
    sum: 'update',
    request: {},
  },
};

/** Fields a message may leave out: the aggregator's signature is checked by the node, not the schema. */
const OPTIONAL_FIELDS = new Set([
  'challenge.sig',
  'round.update.numExamples',
  'round.update.trainLoss',
  'round.decline.stage',
]);

const SIDES = [
  { side: 'site', parse: parseSiteMessage, examples: SITE_EXAMPLES, other: SERVER_EXAMPLES },
  { side: 'server', parse: parseServerMessage, examples: SERVER_EXAMPLES, other: SITE_EXAMPLES },
] as const;

describe('the examples', () => {
  it('cover every message type of the protocol', () => {
    expect(Object.keys(SITE_EXAMPLES).sort()).toEqual([...SITE_MESSAGE_TYPES].sort());
    expect(Object.keys(SERVER_EXAMPLES).sort()).toEqual([...SERVER_MESSAGE_TYPES].sort());
  });
});

describe.each(SIDES)('parsing a $side message', ({ parse, examples, other }) => {
  it.each(Object.keys(examples))('accepts a valid %s message and returns it unchanged', (type) => {
    expect(parse(structuredClone(examples[type]))).toEqual(examples[type]);
  });

  it.each([1, 3, 0, '2', null, undefined, 1.5])(
    'refuses protocol version %j as UNSUPPORTED_VERSION',
    (v) => {
      for (const example of Object.values(examples)) {
        const err = protocolErrorOf(() => parse({ ...example, v }));
        expect(err.code).toBe(ErrorCode.UNSUPPORTED_VERSION);
        expect(err.message).toContain(`this peer speaks v${PROTOCOL_VERSION}`);
      }
    },
  );

  it('checks the version before the type, so a future peer learns it is too new', () => {
    expect(
      protocolErrorOf(() => parse({ v: PROTOCOL_VERSION + 1, type: 'from.the.future' })).code,
    ).toBe(ErrorCode.UNSUPPORTED_VERSION);
  });

  it.each(['round.bogus', '', 42, undefined, 'LOGIN', '__proto__', 'toString'])(
    'refuses message type %j as UNKNOWN_MESSAGE_TYPE',
    (type) => {
      const err = protocolErrorOf(() => parse({ v: PROTOCOL_VERSION, id: 'x', type }));
      expect(err.code).toBe(ErrorCode.UNKNOWN_MESSAGE_TYPE);
      expect(err.message).toMatch(/^unknown message type/);
    },
  );

  it("refuses the other side's messages as UNKNOWN_MESSAGE_TYPE", () => {
    for (const example of Object.values(other)) {
      expect(protocolErrorOf(() => parse(example)).code).toBe(ErrorCode.UNKNOWN_MESSAGE_TYPE);
    }
  });

  it.each([null, [], 'login', 7, true])(
    'refuses %j, which is not an object, as MALFORMED_MESSAGE',
    (value) => {
      const err = protocolErrorOf(() => parse(value));
      expect(err.code).toBe(ErrorCode.MALFORMED_MESSAGE);
      expect(err.message).toMatch(/must be a JSON object/);
    },
  );

  it.each(Object.keys(examples))(
    'refuses a %s message missing any required field, naming it',
    (type) => {
      const example = examples[type]!;
      for (const field of Object.keys(example)) {
        if (field === 'v' || field === 'type') continue;
        if (type === 'round.train' && field === 'modelSpec') continue; // z.unknown(): any value, even none
        if (OPTIONAL_FIELDS.has(`${type}.${field}`)) continue;
        const { [field]: _dropped, ...rest } = example;
        const err = protocolErrorOf(() => parse(rest));
        expect(err.code).toBe(ErrorCode.MALFORMED_MESSAGE);
        expect(err.message).toContain(`invalid ${type} message: ${field}:`);
      }
    },
  );
});

describe('parseSiteMessage refuses an invalid field as MALFORMED_MESSAGE naming it', () => {
  it.each([
    ['round.update', { numExamples: 0 }, 'numExamples'],
    ['round.update', { numExamples: 2.5 }, 'numExamples'],
    ['round.update', { trainLoss: Number.NaN }, 'trainLoss'],
    ['round.update', { round: 0 }, 'round'],
    ['round.update', { runId: '' }, 'runId'],
    ['round.update', { id: 'x'.repeat(129) }, 'id'],
    ['login', { signature: 'x'.repeat(4097) }, 'signature'],
    ['login', { client: 42 }, 'client'],
    ['stats.report', { count: -1 }, 'count'],
    ['stats.report', { sum: [1, Number.POSITIVE_INFINITY] }, 'sum.1'],
    ['round.metrics', { metrics: { ...metrics, loss: Number.NEGATIVE_INFINITY } }, 'metrics.loss'],
    ['round.metrics', { metrics: { ...metrics, numExamples: -3 } }, 'metrics.numExamples'],
    ['round.decline', { reason: 'x'.repeat(2001) }, 'reason'],
  ])('%s with %j', (type, patch, field) => {
    const err = protocolErrorOf(() => parseSiteMessage({ ...SITE_EXAMPLES[type], ...patch }));
    expect(err.code).toBe(ErrorCode.MALFORMED_MESSAGE);
    expect(err.message).toContain(`invalid ${type} message: ${field}:`);
  });
});

describe('parseServerMessage refuses an invalid field as MALFORMED_MESSAGE naming it', () => {
  it.each([
    [
      'round.train',
      { train: { epochs: 0, batchSize: 32, learningRate: 0.01, optimizer: 'adam' } },
      'train.epochs',
    ],
    [
      'round.train',
      { train: { epochs: 1, batchSize: 32, learningRate: 0, optimizer: 'adam' } },
      'train.learningRate',
    ],
    [
      'round.train',
      { train: { epochs: 1, batchSize: 32, learningRate: 0.1, optimizer: 'rmsprop' } },
      'train.optimizer',
    ],
    ['round.end', { outcome: 'maybe' }, 'outcome'],
    ['error', { fatal: 'yes' }, 'fatal'],
    ['stats.request', { features: 0 }, 'features'],
  ])('%s with %j', (type, patch, field) => {
    const err = protocolErrorOf(() => parseServerMessage({ ...SERVER_EXAMPLES[type], ...patch }));
    expect(err.code).toBe(ErrorCode.MALFORMED_MESSAGE);
    expect(err.message).toContain(`invalid ${type} message: ${field}:`);
  });
});

describe('parseJsonText', () => {
  it('parses valid JSON text', () => {
    expect(parseJsonText('{"v":1,"a":[1,2]}')).toEqual({ v: 1, a: [1, 2] });
    expect(parseJsonText('null')).toBeNull();
  });

  it.each(['', '{', '{"v":1,}', "{'v':1}", 'NaN', '\u0000', '{"v":1}garbage'])(
    'refuses %j as MALFORMED_MESSAGE',
    (text) => {
      const err = protocolErrorOf(() => parseJsonText(text));
      expect(err.code).toBe(ErrorCode.MALFORMED_MESSAGE);
      expect(err.message).toMatch(/^message is not valid JSON: /);
    },
  );
});
