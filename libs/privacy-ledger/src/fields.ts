// Field checks shared by the validators: each throws a LedgerError naming the field's path.
import { LedgerError, type LedgerErrorCode } from './errors';

export type Fail = (path: string, why: string) => never;

/** A `fail` that throws a LedgerError with `code` and "path: why". */
export function failWith(code: LedgerErrorCode): Fail {
  return (path, why) => {
    throw new LedgerError(code, `${path}: ${why}`);
  };
}

/** The value as a plain object; with `known`, refuses keys outside it (so nothing unhashed rides along). */
export function record(
  x: unknown,
  path: string,
  fail: Fail,
  known?: readonly string[],
): Record<string, unknown> {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) fail(path, 'must be an object');
  const obj = x as Record<string, unknown>;
  if (known) {
    const extra = Object.keys(obj).filter((k) => !known.includes(k));
    if (extra.length > 0) fail(path, `unknown field(s) ${extra.join(', ')}`);
  }
  return obj;
}

/** A finite number; -0 is refused because the canonical encoding cannot tell it from 0. */
export function finite(x: unknown, path: string, fail: Fail): number {
  if (typeof x !== 'number' || !Number.isFinite(x)) fail(path, 'must be a finite number');
  if (Object.is(x, -0)) fail(path, 'must not be -0');
  return x;
}

/** A number with `lo < x` (or `lo <= x`) and `x <= hi` (or `x < hi`). */
export function inRange(
  x: unknown,
  path: string,
  fail: Fail,
  range: { gt?: number; ge?: number; le?: number; lt?: number },
  what: string,
): number {
  const n = finite(x, path, fail);
  const ok =
    (range.gt === undefined || n > range.gt) &&
    (range.ge === undefined || n >= range.ge) &&
    (range.le === undefined || n <= range.le) &&
    (range.lt === undefined || n < range.lt);
  if (!ok) fail(path, `must be ${what}, got ${n}`);
  return n;
}

/** A safe integer >= `min`. */
export function integer(x: unknown, path: string, fail: Fail, min: number): number {
  if (typeof x !== 'number' || !Number.isSafeInteger(x) || x < min) {
    fail(path, `must be an integer >= ${min}, got ${JSON.stringify(x) ?? String(x)}`);
  }
  return x;
}

/** A string of 1..256 characters. */
export function text(x: unknown, path: string, fail: Fail): string {
  if (typeof x !== 'string' || x.length === 0 || x.length > 256) {
    fail(path, 'must be a non-empty string of at most 256 characters');
  }
  return x;
}
