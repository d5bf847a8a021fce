/** Converts a snake_case row from `pg` into the camelCase shape of a row type. */
export function camelRow<T>(row: Record<string, unknown>): T {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(row)) {
    out[k.replace(/_([a-z])/g, (_m, c: string) => c.toUpperCase())] = v;
  }
  return out as T;
}

/** Maps every row. */
export function camelRows<T>(rows: unknown): T[] {
  return (rows as Record<string, unknown>[]).map((r) => camelRow<T>(r));
}

/** TypeORM's `query` returns `[rows, count]` for UPDATE ... RETURNING on postgres; this gives the rows. */
export function returned(result: unknown): Record<string, unknown>[] {
  if (
    Array.isArray(result) &&
    result.length === 2 &&
    Array.isArray(result[0]) &&
    typeof result[1] === 'number'
  ) {
    return result[0] as Record<string, unknown>[];
  }
  return result as Record<string, unknown>[];
}
