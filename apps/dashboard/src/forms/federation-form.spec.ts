import { describe, expect, it } from 'vitest';
import { strategyCatalog } from '@confide/federated';
import { namedStrategy, type Capabilities } from '../api';
import {
  defaultFederationForm,
  federationRequestBody,
  parameterEstimate,
  serverFieldErrors,
  validateFederationForm,
  type FederationFormState,
} from './federation-form';
import { strategyConfigExample, strategySettings } from './strategy-config';

const plain: Capabilities = {
  dp: false,
  secureAggregation: false,
  strategies: [namedStrategy('fedavg')],
};
const full: Capabilities = {
  dp: true,
  secureAggregation: true,
  strategies: [namedStrategy('fedavg')],
};
/** What GET /api/v1/strategies answers: the registry's catalog. */
const registry: Capabilities = { dp: true, secureAggregation: true, strategies: strategyCatalog() };

const form = (over: Partial<FederationFormState> = {}): FederationFormState => ({
  ...defaultFederationForm(),
  name: 'breast-cancer',
  ...over,
});

describe('federation form: client-side checks', () => {
  it('accepts the defaults once a name is given', () => {
    expect(validateFederationForm(form(), plain)).toEqual({});
  });

  it('names each bad field with a message a user can act on', () => {
    const e = validateFederationForm(
      form({
        name: ' ',
        inputDim: '0',
        hidden: '16, x',
        minSites: '2.5',
        learningRate: '0',
        batchSize: '',
        seed: '-1',
      }),
      plain,
    );
    expect(e).toEqual({
      name: 'required',
      inputDim: 'must be at least 1',
      hidden: 'list the layer sizes, e.g. "64, 32"',
      minSites: 'must be a whole number',
      learningRate: 'must be greater than 0',
      batchSize: 'required',
      seed: 'must be at least 0',
    });
  });

  it('refuses a name the server would refuse', () => {
    expect(validateFederationForm(form({ name: '-bad/name' }), plain).name).toBe(
      'use letters, digits, spaces, ".", "_" or "-"',
    );
  });

  it('checks the custom JSON model spec is an object', () => {
    expect(
      validateFederationForm(form({ modelKind: 'json', modelJson: '{ kind: ' }), plain).modelJson,
    ).toMatch(/^not valid JSON/);
    expect(
      validateFederationForm(form({ modelKind: 'json', modelJson: '[1]' }), plain).modelJson,
    ).toBe('must be a JSON object with a "kind" field');
  });

  it('checks differential privacy parameters only when the server offers them and a level is chosen', () => {
    const bad = { dpLevel: 'site', noiseMultiplier: '0', delta: '1', epsilonLimit: 'abc' } as const;
    expect(validateFederationForm(form(bad), plain)).toEqual({});
    expect(validateFederationForm(form(bad), full)).toEqual({
      noiseMultiplier: 'must be greater than 0',
      delta: 'must be less than 1',
      epsilonLimit: 'must be a number',
    });
    expect(validateFederationForm(form({ ...bad, dpLevel: 'none' }), full)).toEqual({});
  });

  it('refuses a secure-aggregation threshold above minSites and a Harary graph without k', () => {
    const e = validateFederationForm(
      form({ secAggEnabled: true, threshold: '5', minSites: '3', graph: 'harary', k: '' }),
      full,
    );
    expect(e).toEqual({
      threshold: 'cannot exceed minSites (3): the sum could never be unmasked',
      k: 'required',
    });
  });
});

describe("federation form: the registry's strategies", () => {
  it('refuses a strategy the aggregator does not have', () => {
    expect(validateFederationForm(form({ strategy: 'fedadam' }), plain).strategy).toBe(
      'choose one of fedavg',
    );
  });

  it('refuses a strategy that needs individual updates while secure aggregation is on', () => {
    const median = form({ strategy: 'median', secAggEnabled: true });
    expect(validateFederationForm(median, registry).strategy).toMatch(
      /^median compares each site's update .* turn secure aggregation off/,
    );
    expect(validateFederationForm({ ...median, secAggEnabled: false }, registry)).toEqual({});
    expect(
      validateFederationForm(form({ strategy: 'fedadam', secAggEnabled: true }), registry),
    ).toEqual({});
  });

  it("checks the settings against the strategy's JSON Schema", () => {
    const check = (strategy: string, strategyConfig: string) =>
      validateFederationForm(form({ strategy, strategyConfig }), registry).strategyConfig;
    expect(check('fedadam', '')).toBeUndefined();
    expect(check('fedadam', '{ "serverLearningRate": 0.05, "beta1": 0.8 }')).toBeUndefined();
    expect(check('fedadam', '{ serverLearningRate: 1 }')).toMatch(/^not valid JSON/);
    expect(check('fedadam', '[1]')).toMatch(/^must be a JSON object/);
    expect(check('fedadam', '{ "lr": 1 }')).toBe(
      'fedadam has no setting "lr"; its settings are serverLearningRate, beta1, tau, beta2',
    );
    expect(check('fedadam', '{ "serverLearningRate": 0 }')).toBe(
      'serverLearningRate: must be greater than 0',
    );
    expect(check('fedadam', '{ "beta1": 1 }')).toBe('beta1: must be less than 1');
    expect(check('krum', '{ "byzantine": 1.5 }')).toBe('byzantine: must be a whole number');
    expect(check('fedavg', '{ "x": 1 }')).toBe('fedavg takes no settings');
  });

  it('lists the settings with their defaults, from the schema', () => {
    const fedadam = registry.strategies.find((s) => s.name === 'fedadam')!;
    expect(strategySettings(fedadam).map((s) => [s.name, s.default])).toEqual([
      ['serverLearningRate', 0.1],
      ['beta1', 0.9],
      ['tau', 0.001],
      ['beta2', 0.99],
    ]);
    expect(JSON.parse(strategyConfigExample(fedadam))).toEqual({
      serverLearningRate: 0.1,
      beta1: 0.9,
      tau: 0.001,
      beta2: 0.99,
    });
  });

  it('sends the settings as an object, and none when blank', () => {
    expect(
      federationRequestBody(
        form({ strategy: 'fedadam', strategyConfig: '{ "serverLearningRate": 0.05 }' }),
        registry,
      ),
    ).toMatchObject({ strategy: 'fedadam', strategyConfig: { serverLearningRate: 0.05 } });
    expect(federationRequestBody(form(), registry)).not.toHaveProperty('strategyConfig');
  });
});

describe('federation form: request body', () => {
  it('sends numbers as numbers and the structured model spec', () => {
    expect(federationRequestBody(form({ hidden: '64, 32', seed: '7' }), plain)).toEqual({
      name: 'breast-cancer',
      modelSpec: {
        kind: 'mlp',
        inputDim: 30,
        hidden: [64, 32],
        activation: 'relu',
        output: 'binary',
      },
      strategy: 'fedavg',
      minSites: 2,
      roundTimeoutSeconds: 300,
      evaluationTimeoutSeconds: 60,
      localEpochs: 1,
      batchSize: 32,
      learningRate: 0.01,
      optimizer: 'adam',
      seed: 7,
    });
  });

  it('builds logistic and multi-class specs, and passes custom JSON through', () => {
    expect(federationRequestBody(form({ modelKind: 'logistic' }), plain)['modelSpec']).toEqual({
      kind: 'logistic',
      inputDim: 30,
    });
    expect(
      federationRequestBody(form({ modelKind: 'mlp', output: 'classes', classes: '10' }), plain)[
        'modelSpec'
      ],
    ).toMatchObject({ output: { classes: 10 } });
    expect(
      federationRequestBody(form({ modelKind: 'json', modelJson: '{"kind":"cnn"}' }), plain)[
        'modelSpec'
      ],
    ).toEqual({ kind: 'cnn' });
  });

  it('leaves out dp and secureAggregation when the server does not accept them', () => {
    const body = federationRequestBody(form({ dpLevel: 'site', secAggEnabled: true }), plain);
    expect(body).not.toHaveProperty('dp');
    expect(body).not.toHaveProperty('secureAggregation');
  });

  it('sends dp and secureAggregation when the server accepts them', () => {
    const body = federationRequestBody(
      form({
        dpLevel: 'site',
        noiseMultiplier: '1.2',
        clipNorm: '0.5',
        delta: '1e-5',
        epsilonLimit: '6',
        secAggEnabled: true,
        threshold: '2',
        graph: 'harary',
        k: '4',
        threatModel: 'semi-malicious',
      }),
      full,
    );
    expect(body['dp']).toEqual({
      level: 'site',
      noiseMultiplier: 1.2,
      clipNorm: 0.5,
      delta: 1e-5,
      epsilonLimit: 6,
    });
    expect(body['secureAggregation']).toEqual({
      enabled: true,
      threshold: 2,
      graph: 'harary',
      k: 4,
      threatModel: 'semi-malicious',
    });
    expect(federationRequestBody(form(), full)).toMatchObject({
      dp: { level: 'none' },
      secureAggregation: { enabled: false },
    });
  });

  it('estimates the parameter count the server will report', () => {
    expect(parameterEstimate(form({ modelKind: 'logistic' }))).toBe(31);
    expect(parameterEstimate(form({ hidden: '16' }))).toBe(30 * 16 + 16 + 16 + 1);
    expect(parameterEstimate(form({ hidden: 'x' }))).toBeNull();
  });
});

describe("federation form: the server's messages", () => {
  it('points each part of a 400 at its field', () => {
    expect(
      serverFieldErrors(
        'invalid request body: minSites: Too small: expected number to be >=1; dp.delta: Too big',
        'mlp',
      ),
    ).toEqual({ minSites: 'Too small: expected number to be >=1', delta: 'Too big' });
    expect(
      serverFieldErrors(
        'invalid modelSpec: spec.hidden[0]: must be an integer in [1, 4096], got 0',
        'mlp',
      ),
    ).toEqual({ hidden: 'must be an integer in [1, 4096], got 0' });
    expect(
      serverFieldErrors(
        'invalid modelSpec: spec.kind: must be "logistic" or "mlp", got "cnn"',
        'json',
      ),
    ).toEqual({
      modelJson: 'must be "logistic" or "mlp", got "cnn"',
    });
  });

  it("points the registry's refusals at the strategy and its settings", () => {
    const config = 'invalid configuration for strategy "fedadam": beta1: Too big: expected <1';
    expect(serverFieldErrors(config, 'mlp')).toEqual({ strategyConfig: config });
    const needs = 'strategy "median" compares each site\'s update with the others\', but ...';
    expect(serverFieldErrors(needs, 'mlp')).toEqual({ strategy: needs });
    expect(
      serverFieldErrors('invalid request body: strategyConfig: Expected object', 'mlp'),
    ).toEqual({ strategyConfig: 'Expected object' });
  });

  it('shows a name conflict on the name field', () => {
    expect(serverFieldErrors('a federation named "x" already exists', 'mlp')).toEqual({
      name: 'a federation named "x" already exists',
    });
  });

  it('ignores messages that name no field', () => {
    expect(serverFieldErrors('internal error; the aggregator log has the details', 'mlp')).toEqual(
      {},
    );
  });
});
