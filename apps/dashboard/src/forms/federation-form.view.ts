/** The "new federation" form, rendered. The rules live in federation-form.ts. */
import { ApiError, type Capabilities } from '../api';
import { h } from '../dom';
import {
  defaultFederationForm,
  federationRequestBody,
  parameterEstimate,
  serverFieldErrors,
  strategyOf,
  validateFederationForm,
  type FederationField,
  type FederationFormState,
} from './federation-form';
import { checkbox, FormView, selectInput, textInput } from './form-view';
import { strategyConfigExample, strategySettings } from './strategy-config';

export interface FederationFormOptions {
  caps: Capabilities;
  /** Sends the body; an ApiError's message is shown verbatim and mapped to the fields it names. */
  submit: (body: Record<string, unknown>) => Promise<unknown>;
  cancel?: () => void;
  initial?: Partial<FederationFormState>;
}

/** Renders the form; the returned element owns its state. */
export function federationForm(opts: FederationFormOptions): HTMLFormElement {
  const { caps } = opts;
  // Secure aggregation is on by default wherever the server offers it (as the server's own default).
  const state: FederationFormState = {
    ...defaultFederationForm(),
    secAggEnabled: caps.secureAggregation,
    ...opts.initial,
  };
  const v = new FormView<FederationField>();
  const changed = (name: FederationField) => () => {
    v.clearError(name);
    sync();
  };
  const input = (
    name: FederationField,
    attrs: Record<string, string | number | boolean | undefined> = {},
  ): HTMLInputElement => textInput(state, name, attrs, changed(name));
  const num = (name: FederationField, extra: Record<string, string | number> = {}) =>
    input(name, { inputmode: 'decimal', autocomplete: 'off', ...extra });

  const estimate = h('p', { class: 'hint', 'aria-live': 'polite' });
  const modelJson = h('textarea', { rows: 4, spellcheck: 'false', class: 'mono' }, state.modelJson);
  modelJson.addEventListener('input', () => {
    state.modelJson = modelJson.value;
    changed('modelJson')();
  });

  const basics = h(
    'fieldset',
    null,
    h('legend', null, 'Basics'),
    v.field(
      'name',
      'Name',
      input('name', { autocomplete: 'off', maxlength: 100, placeholder: 'breast-cancer' }),
      'Letters, digits, spaces, ".", "_" or "-". Unique on this aggregator.',
    ),
  );

  const model = h(
    'fieldset',
    null,
    h('legend', null, 'Model'),
    h(
      'div',
      { class: 'grid-3' },
      v.field(
        'modelKind',
        'Kind',
        selectInput(
          state,
          'modelKind',
          [
            ['logistic', 'Logistic regression'],
            ['mlp', 'Multi-layer perceptron'],
            ['json', 'Custom (JSON spec)'],
          ],
          changed('modelKind'),
        ),
      ),
      v.field('inputDim', 'Input features', num('inputDim')),
      v.field(
        'hidden',
        'Hidden layers',
        input('hidden', { placeholder: '64, 32' }),
        'Sizes, comma-separated',
      ),
      v.field(
        'activation',
        'Activation',
        selectInput(
          state,
          'activation',
          [
            ['relu', 'ReLU'],
            ['tanh', 'tanh'],
          ],
          changed('activation'),
        ),
      ),
      v.field(
        'output',
        'Output',
        selectInput(
          state,
          'output',
          [
            ['binary', 'Binary (one sigmoid unit)'],
            ['classes', 'Classes (softmax)'],
          ],
          changed('output'),
        ),
      ),
      v.field('classes', 'Classes', num('classes')),
    ),
    v.field(
      'modelJson',
      'Model spec (JSON)',
      modelJson,
      'e.g. { "kind": "mlp", "inputDim": 30, "hidden": [16], "output": "binary" }',
    ),
    estimate,
  );

  // The strategy's summary and its settings come from the aggregator's registry.
  const strategySummary = h('span', { 'data-testid': 'strategy-summary' });
  const settingsHint = h('span', null);
  const strategyConfig = h('textarea', { rows: 2, spellcheck: 'false', class: 'mono' });
  strategyConfig.value = state.strategyConfig;
  strategyConfig.addEventListener('input', () => {
    state.strategyConfig = strategyConfig.value;
    changed('strategyConfig')();
  });
  const strategySelect = selectInput(
    state,
    'strategy',
    caps.strategies.map((s) => [s.name, s.name === 'fedavg' ? 'FedAvg' : s.name]),
    () => {
      // Settings are per strategy: another strategy starts from its own defaults.
      state.strategyConfig = '';
      strategyConfig.value = '';
      v.clearError('strategyConfig');
      changed('strategy')();
    },
  );

  const training = h(
    'fieldset',
    null,
    h('legend', null, 'Training and strategy'),
    v.field('strategy', 'Strategy', strategySelect, strategySummary),
    v.field('strategyConfig', 'Strategy settings (JSON)', strategyConfig, settingsHint),
    h(
      'div',
      { class: 'grid-3' },
      v.field(
        'optimizer',
        'Local optimizer',
        selectInput(
          state,
          'optimizer',
          [
            ['adam', 'Adam'],
            ['sgd', 'SGD'],
          ],
          changed('optimizer'),
        ),
      ),
      v.field('learningRate', 'Learning rate', num('learningRate')),
      v.field(
        'localEpochs',
        'Local epochs per round',
        num('localEpochs', { inputmode: 'numeric' }),
      ),
      v.field('batchSize', 'Batch size', num('batchSize', { inputmode: 'numeric' })),
      v.field(
        'seed',
        'Seed (optional)',
        num('seed', { inputmode: 'numeric' }),
        'Initial weights; random when empty',
      ),
    ),
  );

  const rounds = h(
    'fieldset',
    null,
    h('legend', null, 'Rounds'),
    h(
      'div',
      { class: 'grid-3' },
      v.field('minSites', 'Minimum sites per round', num('minSites', { inputmode: 'numeric' })),
      v.field(
        'roundTimeoutSeconds',
        'Round timeout (s)',
        num('roundTimeoutSeconds', { inputmode: 'numeric' }),
      ),
      v.field(
        'evaluationTimeoutSeconds',
        'Evaluation timeout (s)',
        num('evaluationTimeoutSeconds', { inputmode: 'numeric' }),
      ),
    ),
  );

  const unsupported = (what: string) =>
    h(
      'p',
      { class: 'notice' },
      `This aggregator does not offer ${what} settings yet; the federation is created without them.`,
    );

  const dpParams = h(
    'div',
    { class: 'grid-4' },
    v.field('noiseMultiplier', 'Noise multiplier z', num('noiseMultiplier')),
    v.field('clipNorm', 'Clip norm C', num('clipNorm')),
    v.field('delta', 'δ', num('delta'), 'e.g. 1e-5'),
    v.field('epsilonLimit', 'ε limit per site', num('epsilonLimit')),
  );
  const dp = h(
    'fieldset',
    { disabled: !caps.dp },
    h('legend', null, 'Differential privacy'),
    caps.dp ? null : unsupported('differential privacy'),
    v.field(
      'dpLevel',
      'Protection level',
      selectInput(
        state,
        'dpLevel',
        [
          ['none', 'None'],
          ['record', 'Record-level (DP-SGD at each site)'],
          ['site', 'Site-level (DP-FedAvg)'],
        ],
        changed('dpLevel'),
      ),
    ),
    dpParams,
  );

  const harary = v.field('k', 'Degree k', num('k', { inputmode: 'numeric' }));
  const secAggParams = h(
    'div',
    { class: 'grid-4' },
    v.field(
      'threshold',
      'Threshold t',
      num('threshold', { inputmode: 'numeric', placeholder: 'automatic' }),
      'Survivors needed to unmask',
    ),
    v.field(
      'graph',
      'Neighbour graph',
      selectInput(
        state,
        'graph',
        [
          ['auto', 'Automatic (complete up to 64 sites)'],
          ['complete', 'Complete'],
          ['harary', 'Harary (SecAgg+)'],
        ],
        changed('graph'),
      ),
    ),
    harary,
    v.field(
      'threatModel',
      'Threat model',
      selectInput(
        state,
        'threatModel',
        [
          ['semi-honest', 'Semi-honest'],
          ['semi-malicious', 'Semi-malicious'],
        ],
        changed('threatModel'),
      ),
    ),
  );
  const secAgg = h(
    'fieldset',
    { disabled: !caps.secureAggregation },
    h('legend', null, 'Secure aggregation'),
    caps.secureAggregation ? null : unsupported('secure aggregation'),
    v.field(
      'secAggEnabled',
      'Mask updates so the aggregator only sees their sum',
      checkbox(state, 'secAggEnabled', changed('secAggEnabled')),
    ),
    secAggParams,
  );

  const submitButton = h('button', { type: 'submit', class: 'primary' }, 'Create federation');
  const form = h(
    'form',
    { class: 'form', novalidate: true, 'aria-label': 'New federation' },
    v.banner,
    basics,
    model,
    training,
    rounds,
    dp,
    secAgg,
    h(
      'div',
      { class: 'actions' },
      opts.cancel
        ? h('button', { type: 'button', class: 'secondary', onClick: opts.cancel }, 'Cancel')
        : null,
      submitButton,
    ),
  );

  function sync(): void {
    const structured = state.modelKind !== 'json';
    for (const f of ['inputDim', 'output'] as const) v.row(f)!.hidden = !structured;
    v.row('hidden')!.hidden = state.modelKind !== 'mlp';
    v.row('activation')!.hidden = state.modelKind !== 'mlp';
    v.row('classes')!.hidden = !structured || state.output !== 'classes';
    v.row('modelJson')!.hidden = structured;
    const n = parameterEstimate(state);
    estimate.textContent = n === null ? '' : `${n.toLocaleString('en-US')} trainable parameters`;
    dpParams.hidden = state.dpLevel === 'none';
    secAggParams.hidden = !state.secAggEnabled;
    harary.hidden = state.graph !== 'harary';
    syncStrategy();
  }

  function syncStrategy(): void {
    const info = strategyOf(state, caps);
    const settings = info ? strategySettings(info) : [];
    strategySummary.textContent = info
      ? [
          info.summary,
          info.needsIndividualUpdates
            ? "Needs each site's update: only for federations without secure aggregation."
            : '',
        ]
          .filter(Boolean)
          .join(' ')
      : '';
    v.row('strategyConfig')!.hidden = settings.length === 0;
    strategyConfig.placeholder = info ? strategyConfigExample(info) || '{}' : '';
    settingsHint.replaceChildren(
      'Blank for the defaults. ',
      ...settings.map((s, i) =>
        h(
          'span',
          null,
          i ? '; ' : '',
          h('code', null, s.name),
          // Descriptions often open with the symbol of the paper ("beta1: ..."): not twice.
          s.description ? `: ${s.description.replace(`${s.name}: `, '')}` : '',
          'default' in s ? ` (default ${JSON.stringify(s.default)})` : '',
        ),
      ),
    );
  }
  sync();

  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    v.setBanner(null);
    const errors = validateFederationForm(state, caps);
    const first = v.setErrors(errors);
    if (first) {
      first.focus();
      return;
    }
    submitButton.disabled = true;
    submitButton.textContent = 'Creating…';
    opts
      .submit(federationRequestBody(state, caps))
      .catch((e: unknown) => {
        const message = e instanceof ApiError ? e.message : String(e);
        v.setBanner(message);
        v.setErrors(serverFieldErrors(message, state.modelKind));
        v.banner.scrollIntoView({ block: 'nearest' });
      })
      .finally(() => {
        submitButton.disabled = false;
        submitButton.textContent = 'Create federation';
      });
  });
  return form;
}
