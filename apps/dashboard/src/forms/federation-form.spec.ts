import { describe, expect, it } from 'vitest';
import type { Capabilities } from '../api';
import {
  defaultFederationForm,
  federationRequestBody,
  parameterEstimate,
  serverFieldErrors,
  validateFederationForm,
  type FederationFormState,
} from './federation-form';

const plain: Capabilities = { dp: false, secureAggregation: false, strategies: ['fedavg'] };
const full: Capabilities = { dp: true, secureAggregation: true, strategies: ['fedavg'] };

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
