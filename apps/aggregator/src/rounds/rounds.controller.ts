import { Body, Controller, Get, HttpCode, Inject, Param, Post, Req } from '@nestjs/common';
import { ApiBody, ApiOperation, ApiTags } from '@nestjs/swagger';
import { z } from 'zod';
import { RoundOrchestrator } from './round-orchestrator.service';
import { RoundRepository } from './round.repository';
import { FederationsService } from '../federations/federations.service';
import { AdminEventRepository } from '../common/admin-event.repository';
import { ApiError } from '../common/errors';
import { parseInput } from '../common/validation';
import { actorOf, Roles, type AuthedRequest } from '../auth/roles.guard';

const startRunSchema = z.object({ rounds: z.number().int().min(1).max(100_000) }).strict();

@ApiTags('rounds')
@Controller('api/v1/federations/:federationId')
export class RoundsController {
  constructor(
    @Inject(RoundOrchestrator) private readonly orchestrator: RoundOrchestrator,
    @Inject(RoundRepository) private readonly rounds: RoundRepository,
    @Inject(FederationsService) private readonly federations: FederationsService,
    @Inject(AdminEventRepository) private readonly events: AdminEventRepository,
  ) {}

  @Post('runs')
  @HttpCode(201)
  @Roles('admin')
  @ApiOperation({ summary: 'Start N rounds now (one run at a time per federation)' })
  @ApiBody({
    schema: {
      type: 'object',
      required: ['rounds'],
      properties: { rounds: { type: 'integer', example: 10 } },
    },
  })
  async startRun(
    @Param('federationId') federationId: string,
    @Body() body: unknown,
    @Req() req: AuthedRequest,
  ) {
    await this.federations.get(federationId);
    const input = parseInput(startRunSchema, body);
    const running = await this.rounds.runningRun(federationId);
    if (running) {
      throw new ApiError(
        'CONFLICT',
        `run ${running.id} is still running (${running.roundsDone}/${running.roundsRequested} rounds); stop it first`,
      );
    }
    let run;
    try {
      run = await this.orchestrator.startRun(federationId, input.rounds);
    } catch (e) {
      if (/training_run_one_running/.test((e as Error).message)) {
        throw new ApiError('CONFLICT', 'another run was started at the same time');
      }
      throw e;
    }
    await this.events.record(actorOf(req), 'run.start', run.id, {
      federationId,
      rounds: input.rounds,
    });
    return run;
  }

  @Post('runs/stop')
  @HttpCode(200)
  @Roles('admin')
  @ApiOperation({ summary: 'Stop the running run after its current round' })
  async stopRun(@Param('federationId') federationId: string, @Req() req: AuthedRequest) {
    await this.federations.get(federationId);
    const run = await this.orchestrator.stopRun(federationId);
    if (!run) throw new ApiError('INVALID_STATE', 'this federation has no running run');
    await this.events.record(actorOf(req), 'run.stop', run.id, { federationId });
    return run;
  }

  @Post('statistics/recollect')
  @HttpCode(200)
  @Roles('admin')
  @ApiOperation({
    summary:
      "Forget the federation's standardisation statistics; the next run's first round collects them again",
  })
  async recollectStatistics(
    @Param('federationId') federationId: string,
    @Req() req: AuthedRequest,
  ) {
    const fed = await this.federations.get(federationId);
    // Mid-run, the model would suddenly see its inputs scaled another way.
    const running = await this.rounds.runningRun(federationId);
    if (running) {
      throw new ApiError(
        'CONFLICT',
        `run ${running.id} is running; stop it before re-collecting the statistics`,
      );
    }
    await this.federations.clearFeatureStats(federationId);
    await this.events.record(actorOf(req), 'statistics.recollect', federationId, {
      previous: fed.featureStats,
    });
    return { federationId, featureStats: null, collectedBy: 'the next round' };
  }

  @Get('runs')
  @Roles('admin', 'auditor')
  @ApiOperation({ summary: 'List runs' })
  async listRuns(@Param('federationId') federationId: string) {
    await this.federations.get(federationId);
    return this.rounds.listRuns(federationId);
  }

  @Get('rounds')
  @Roles('admin', 'auditor')
  @ApiOperation({ summary: 'List rounds with their state, participants and metrics' })
  async listRounds(@Param('federationId') federationId: string) {
    await this.federations.get(federationId);
    return {
      rounds: await this.rounds.listRounds(federationId),
      live: this.orchestrator.liveRound(federationId),
    };
  }

  @Get('rounds/:number')
  @Roles('admin', 'auditor')
  @ApiOperation({ summary: 'One round with its state transitions' })
  async getRound(@Param('federationId') federationId: string, @Param('number') number: string) {
    await this.federations.get(federationId);
    const n = Number(number);
    const round =
      Number.isInteger(n) && n > 0 ? await this.rounds.findRound(federationId, n) : null;
    if (!round) throw new ApiError('NOT_FOUND', `no round ${number} in federation ${federationId}`);
    return { ...round, events: await this.rounds.roundEvents(round.id) };
  }
}
