import type { z } from 'zod';
import { describeZodError } from '@confide/protocol';
import { ApiError } from './errors';

/** Parses a request body or query with a zod schema; a failure is a 400 naming each bad field. */
export function parseInput<S extends z.ZodType>(
  schema: S,
  value: unknown,
  what = 'request body',
): z.output<S> {
  const r = schema.safeParse(value ?? {});
  if (!r.success)
    throw new ApiError('VALIDATION_FAILED', `invalid ${what}: ${describeZodError(r.error)}`);
  return r.data;
}
