import { Body, Controller, Delete, Get, HttpCode, Inject, Param, Post, Req } from '@nestjs/common';
import { ApiBody, ApiOperation, ApiTags } from '@nestjs/swagger';
import { createScheduleOpenApi, SchedulesService } from './schedules.service';
import { actorOf, Roles, type AuthedRequest } from '../auth/roles.guard';

@ApiTags('rounds')
@Controller('api/v1/federations/:federationId/schedules')
export class SchedulesController {
  constructor(@Inject(SchedulesService) private readonly schedules: SchedulesService) {}

  @Post()
  @HttpCode(201)
  @Roles('admin')
  @ApiOperation({
    summary:
      'Schedule rounds on a calendar: a cron expression in a time zone, N rounds per trigger, until an optional end',
  })
  @ApiBody({ schema: createScheduleOpenApi as object })
  create(
    @Param('federationId') federationId: string,
    @Body() body: unknown,
    @Req() req: AuthedRequest,
  ) {
    return this.schedules.create(federationId, body, actorOf(req));
  }

  @Get()
  @Roles('admin', 'auditor')
  @ApiOperation({ summary: 'List schedules with their next trigger and last outcome' })
  list(@Param('federationId') federationId: string) {
    return this.schedules.list(federationId);
  }

  @Post(':scheduleId/pause')
  @HttpCode(200)
  @Roles('admin')
  @ApiOperation({ summary: 'Pause a schedule (triggers while paused are skipped)' })
  pause(
    @Param('federationId') federationId: string,
    @Param('scheduleId') scheduleId: string,
    @Req() req: AuthedRequest,
  ) {
    return this.schedules.pause(federationId, scheduleId, actorOf(req));
  }

  @Post(':scheduleId/resume')
  @HttpCode(200)
  @Roles('admin')
  @ApiOperation({ summary: 'Resume a paused schedule from now' })
  resume(
    @Param('federationId') federationId: string,
    @Param('scheduleId') scheduleId: string,
    @Req() req: AuthedRequest,
  ) {
    return this.schedules.resume(federationId, scheduleId, actorOf(req));
  }

  @Delete(':scheduleId')
  @HttpCode(204)
  @Roles('admin')
  @ApiOperation({ summary: 'Delete a schedule' })
  async remove(
    @Param('federationId') federationId: string,
    @Param('scheduleId') scheduleId: string,
    @Req() req: AuthedRequest,
  ): Promise<void> {
    await this.schedules.delete(federationId, scheduleId, actorOf(req));
  }
}
