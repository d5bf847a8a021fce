import { Controller, Get } from '@nestjs/common';
import { ApiOperation, ApiTags } from '@nestjs/swagger';
import { strategyCatalog, type StrategyCatalogEntry } from '@confide/federated';
import { Roles } from '../auth/roles.guard';

/** The strategy registry as clients read it: the dashboard's form and the CLI derive from it. */
@ApiTags('federations')
@Controller('api/v1/strategies')
export class StrategiesController {
  @Get()
  @Roles('admin', 'auditor')
  @ApiOperation({
    summary:
      'List the aggregation strategies: name, summary, whether it needs individual updates ' +
      '(then not with secure aggregation), and the JSON Schema of its strategyConfig',
  })
  list(): StrategyCatalogEntry[] {
    return strategyCatalog();
  }
}
