import { randomInt } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import {
  checkFeatureBounds,
  initialWeights,
  MlError,
  parameterCount,
  parseModelSpec,
} from '@confide/ml/spec';
import { shareNoiseMultiplier } from '@confide/differential-privacy';
import {
  checkStrategyCompatible,
  parseStrategyConfig,
  strategyDefinition,
  StrategyError,
  StrategyErrorCode,
} from '@confide/federated';
import { FederationRepository } from './federation.repository';
import { createFederationSchema } from './federation.schema';
import { ModelVersionRepository } from '../models/model-version.repository';
import { AdminEventRepository } from '../common/admin-event.repository';
import { ApiError } from '../common/errors';
import { parseInput } from '../common/validation';
import { DATABASE } from '../common/tokens';
import type { Database } from '../database/database';
import type { FederationConfig, FederationRow } from '../database/rows';

/**
 * The strategy's configuration with its defaults applied, refusing an unknown strategy, a bad
 * configuration, and a strategy that needs each site's update in a federation whose sites send only
 * a (secure or self-sampled) sum, each under its own named error.
 */
function checkStrategy(input: {
  strategy: string;
  strategyConfig?: unknown;
  secureAggregation: { enabled: boolean };
  sampling: { fraction: number };
  dp: { level: string };
}): unknown {
  try {
    const config = parseStrategyConfig(input.strategy, input.strategyConfig);
    checkStrategyCompatible(input.strategy, { secureAggregation: input.secureAggregation.enabled });
    const selfSampling = input.dp.level === 'site' && input.sampling.fraction < 1;
    if (strategyDefinition(input.strategy).needsIndividualUpdates && selfSampling) {
      // Under site-level DP's self-sampling unsampled sites send zero updates so nobody learns who
      // took part: only an average corrects for them (by the sampling rate); a median or Krum would
      // be pulled towards zero. The aggregator's own draw (no site-level DP) has no such zeros: only
      // the sampled sites train, and they send real updates.
      throw new StrategyError(
        StrategyErrorCode.STRATEGY_NEEDS_INDIVIDUAL_UPDATES,
        `strategy "${input.strategy}" compares each site's update with the others', but with ` +
          'site-level DP and sampling.fraction below 1 unsampled sites send zero updates that ' +
          'only an average corrects for; use sampling.fraction 1 or a strategy that works on the sum',
      );
    }
    return config;
  } catch (e) {
    if (!(e instanceof StrategyError)) throw e;
    switch (e.code) {
      case StrategyErrorCode.UNKNOWN_STRATEGY:
        throw new ApiError('UNKNOWN_STRATEGY', e.message);
      case StrategyErrorCode.STRATEGY_CONFIG_INVALID:
        throw new ApiError('STRATEGY_CONFIG_INVALID', e.message);
      case StrategyErrorCode.STRATEGY_NEEDS_INDIVIDUAL_UPDATES:
        throw new ApiError('STRATEGY_NEEDS_INDIVIDUAL_UPDATES', e.message);
      case StrategyErrorCode.STRATEGY_DEFINITION_INVALID:
      case StrategyErrorCode.STRATEGY_INPUT_INVALID:
      case StrategyErrorCode.STRATEGY_STATE_INVALID:
      case StrategyErrorCode.STRATEGY_TOO_FEW_UPDATES:
        throw new ApiError('VALIDATION_FAILED', e.message);
    }
  }
}

/** Creating and reading federations. */
@Injectable()
export class FederationsService {
  constructor(
    @Inject(DATABASE) private readonly db: Database,
    @Inject(FederationRepository) private readonly federations: FederationRepository,
    @Inject(ModelVersionRepository) private readonly models: ModelVersionRepository,
    @Inject(AdminEventRepository) private readonly events: AdminEventRepository,
  ) {}

  /** Validates the settings, stores the federation and its initial model version (seeded weights). */
  async create(body: unknown, actor: string): Promise<FederationRow> {
    const input = parseInput(createFederationSchema, body);
    let spec;
    try {
      spec = parseModelSpec(input.modelSpec);
    } catch (e) {
      if (e instanceof MlError)
        throw new ApiError('VALIDATION_FAILED', `invalid modelSpec: ${e.message}`);
      throw e;
    }
    if (parameterCount(spec) > 50_000_000) {
      throw new ApiError(
        'VALIDATION_FAILED',
        'invalid modelSpec: more than 50M parameters is not supported',
      );
    }
    const bounds = input.dataSchema.featureBounds ?? null;
    if (bounds) {
      try {
        checkFeatureBounds(bounds, spec.inputDim);
      } catch (e) {
        throw new ApiError(
          'VALIDATION_FAILED',
          `dataSchema.featureBounds: ${(e as Error).message}`,
        );
      }
    }
    const dpOn = input.dp.level !== 'none';
    const standardization = input.standardization ?? (dpOn && !bounds ? 'local' : 'federated');
    if (dpOn && standardization === 'federated') {
      if (!bounds) {
        throw new ApiError(
          'VALIDATION_FAILED',
          'federated standardisation under differential privacy needs dataSchema.featureBounds (the statistics are a release whose sensitivity the bounds fix); declare them or use standardization: "local"',
        );
      }
      if (!input.secureAggregation.enabled) {
        throw new ApiError(
          'VALIDATION_FAILED',
          'federated standardisation under differential privacy runs as a secure sum: enable secure aggregation or use standardization: "local"',
        );
      }
    }
    const strategyConfig = checkStrategy(input);
    const mu = (strategyConfig as { proximalMu?: unknown } | null)?.proximalMu;
    if (input.dp.level === 'record' && typeof mu === 'number' && mu > 0) {
      // DP-SGD clips and noises each example's gradient; a proximal term added outside that
      // would change the mechanism the receipts account for, so it is not applied there.
      throw new ApiError(
        'STRATEGY_CONFIG_INVALID',
        `strategy "${input.strategy}" adds a proximal term (proximalMu ${mu}) to local training, which record-level DP (DP-SGD) training does not apply; use dp.level "site" or "none", or proximalMu 0`,
      );
    }
    if (await this.federations.findByName(input.name)) {
      throw new ApiError('CONFLICT', `a federation named "${input.name}" already exists`);
    }
    let dp: FederationConfig['dp'] = input.dp;
    if (input.dp.level !== 'none') {
      // evaluationRounds only sizes the statistics noise below; it is not kept.
      const { evaluationRounds, ...rest } = input.dp;
      dp = {
        ...rest,
        statisticsNoiseMultiplier:
          rest.statisticsNoiseMultiplier ??
          shareNoiseMultiplier({
            epsilon: rest.epsilonLimit,
            delta: rest.delta,
            share: rest.statisticsShare,
            releases:
              (input.evaluation.enabled ? evaluationRounds : 0) +
                (standardization === 'federated' ? 1 : 0) || 1,
          }),
      };
    }
    const config: FederationConfig = {
      minSites: input.minSites,
      roundTimeoutMs: input.roundTimeoutSeconds * 1000,
      evaluationTimeoutMs: input.evaluationTimeoutSeconds * 1000,
      train: {
        epochs: input.localEpochs,
        batchSize: input.batchSize,
        learningRate: input.learningRate,
        optimizer: input.optimizer,
      },
      seed: input.seed ?? randomInt(0, 2 ** 31 - 1),
      dp,
      secureAggregation: input.secureAggregation,
      featureBounds: bounds,
      standardization,
      samplingFraction: input.sampling.fraction,
      evaluation: input.evaluation.enabled,
      weighting: input.weighting,
      ...(input.maxUpdateNorm !== undefined ? { maxUpdateNorm: input.maxUpdateNorm } : {}),
      strategyConfig,
    };
    // Written before the transaction, chunk by chunk: a large model never holds the (embedded)
    // database's only connection for longer than one chunk.
    const weights = await this.models.store(initialWeights(spec, config.seed));
    const created = this.db.transaction(async (em) => {
      const fed = await this.federations.insert(em, {
        name: input.name,
        modelSpec: spec,
        strategy: input.strategy,
        config,
      });
      const v0 = await this.models.insert(em, {
        federationId: fed.id,
        roundNumber: null,
        parentId: null,
        weights,
      });
      await this.federations.setCurrentModel(em, fed.id, v0.id);
      await this.events.record(actor, 'federation.create', fed.id, { name: fed.name }, em);
      return { ...fed, currentModelVersionId: v0.id };
    });
    return created.catch(async (e: unknown) => {
      // The creation's own error is the one to report; an hour-old orphan is swept anyway.
      await this.models.discard(weights).catch(() => undefined);
      throw e;
    });
  }

  /** Forgets the federation's statistics (the next round collects them again). */
  async clearFeatureStats(id: string): Promise<void> {
    await this.federations.clearFeatureStats(id);
  }

  async get(id: string): Promise<FederationRow> {
    const fed = await this.federations.findById(id);
    if (!fed) throw new ApiError('NOT_FOUND', `no federation with id ${id}`);
    return fed;
  }

  list(): Promise<FederationRow[]> {
    return this.federations.list();
  }
}
