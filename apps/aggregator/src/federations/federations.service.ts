import { randomInt } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { initialWeights, MlError, parameterCount, parseModelSpec } from '@confide/ml/spec';
import { FederationRepository } from './federation.repository';
import { createFederationSchema } from './federation.schema';
import { ModelVersionRepository } from '../models/model-version.repository';
import { AdminEventRepository } from '../common/admin-event.repository';
import { ApiError } from '../common/errors';
import { parseInput } from '../common/validation';
import { DATABASE } from '../common/tokens';
import type { Database } from '../database/database';
import type { FederationConfig, FederationRow } from '../database/rows';

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
    if (await this.federations.findByName(input.name)) {
      throw new ApiError('CONFLICT', `a federation named "${input.name}" already exists`);
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
      dp: input.dp,
      secureAggregation: input.secureAggregation,
    };
    const weights = initialWeights(spec, config.seed);
    return this.db.transaction(async (em) => {
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
