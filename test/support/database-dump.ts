import type { RunningAggregator } from '@confide/aggregator';

/** One stored value: a non-null column of a row, as text (bytea as hex). */
export interface StoredValue {
  table: string;
  column: string;
  /** The column's information_schema data_type ('jsonb', 'ARRAY', 'bytea', 'integer', ...). */
  type: string;
  text: string;
}

/**
 * Every column of every row of every table in the aggregator's database, as text (bytea as hex).
 * Tables are listed from information_schema, so a table added later is covered too.
 */
export async function dumpDatabase(
  agg: Pick<RunningAggregator, 'db'>,
): Promise<{ tables: string[]; values: StoredValue[] }> {
  const q = (sql: string, params: unknown[] = []): Promise<Array<Record<string, unknown>>> =>
    agg.db.manager.query(sql, params);
  const tables = (
    await q(
      `SELECT table_name FROM information_schema.tables
        WHERE table_catalog = current_database() AND table_schema = 'public'
          AND table_type = 'BASE TABLE'
        ORDER BY table_name`,
    )
  ).map((r) => String(r['table_name']));
  const values: StoredValue[] = [];
  for (const table of tables) {
    const cols = (
      await q(
        `SELECT column_name, data_type FROM information_schema.columns
          WHERE table_catalog = current_database() AND table_schema = 'public' AND table_name = $1
          ORDER BY ordinal_position`,
        [table],
      )
    ).map((c) => ({ name: String(c['column_name']), type: String(c['data_type']) }));
    const select = cols
      .map((c, i) =>
        c.type === 'bytea' ? `encode("${c.name}", 'hex') AS c${i}` : `"${c.name}"::text AS c${i}`,
      )
      .join(', ');
    for (const row of await q(`SELECT ${select} FROM "${table}"`)) {
      cols.forEach((c, i) => {
        // Every column is selected as ::text, so the value is a string or null.
        const text = row[`c${i}`] as string | null | undefined;
        if (text !== null && text !== undefined) {
          values.push({ table, column: c.name, type: c.type, text });
        }
      });
    }
  }
  return { tables, values };
}

/** The length of the longest array of numbers in a SQL array or JSON value (0 when none). */
export function longestNumberArray(v: StoredValue): number {
  if (v.type === 'ARRAY') return v.text.replace(/^\{|\}$/g, '').split(',').length;
  if (v.type !== 'jsonb' && v.type !== 'json') return 0;
  let longest = 0;
  const walk = (x: unknown): void => {
    if (Array.isArray(x)) {
      if (x.every((e) => typeof e === 'number')) longest = Math.max(longest, x.length);
      x.forEach(walk);
    } else if (x !== null && typeof x === 'object') {
      Object.values(x).forEach(walk);
    }
  };
  walk(JSON.parse(v.text));
  return longest;
}
