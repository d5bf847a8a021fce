import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isSecAggError, type SecAggErrorCode } from './errors';
import {
  decodeFixedPointSum,
  decodeWideFixedPointSum,
  encodeFixedPoint,
  encodeWideFixedPoint,
  WIDE_FIXED_POINT_LIMBS,
  FIXED_POINT_CLIP,
  FIXED_POINT_LIMBS,
  FIXED_POINT_MAX_SITES,
  FIXED_POINT_SCALE,
} from './fixed-point';
import { validateParams, type SecAggParams } from './params';
import { simulateRound } from './simulate';

const TOP = 2 ** 32 - 1; // limb 3 of a negative value: -1 as uint32

function expectCode(f: () => unknown, code: SecAggErrorCode, message?: RegExp): void {
  try {
    f();
  } catch (e) {
    if (!isSecAggError(e)) throw e;
    expect(e.code, e.message).toBe(code);
    if (message) expect(e.message).toMatch(message);
    return;
  }
  throw new Error(`expected ${code}`);
}

/** The limb-wise mod-2^32 sum, as the unmasked secure sum gives it. */
function limbSum(encodings: readonly Uint32Array[]): Uint32Array {
  const out = new Uint32Array(encodings[0]?.length ?? 0);
  for (const e of encodings) {
    for (let j = 0; j < out.length; j++) out[j] = (out[j] as number) + (e[j] as number);
  }
  return out;
}

/** Reference rounding, independent of the library's: Math.round is half-up, so fix odd ties. */
function roundTiesEven(y: number): number {
  const r = Math.round(y);
  return r - y === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Values for F fraction bits, over the whole encodable range (room to spare for rounding up). */
const valuesFor = (f: number, minLength: number, maxLength = minLength): fc.Arbitrary<number[]> =>
  fc.array(fc.double({ min: -(2 ** (47 - f)), max: 2 ** (47 - f), noNaN: true }), {
    minLength,
    maxLength,
  });

const fractionBits = fc.constantFrom(0, 1, 8, 20, 32, 40);

describe('fixed-point encoding for exact secure sums', () => {
  it('encodes known values as 16-bit limbs, lowest first, with a signed top limb', () => {
    const enc = (xs: number[], fractionBits?: number): number[] => [
      ...encodeFixedPoint(xs, fractionBits === undefined ? undefined : { fractionBits }),
    ];
    expect(FIXED_POINT_LIMBS).toBe(4);
    expect(enc([0])).toEqual([0, 0, 0, 0]);
    expect(enc([-0])).toEqual([0, 0, 0, 0]);
    expect(enc([1])).toEqual([0, 16, 0, 0]); // 2^20 = 16 * 2^16
    expect(enc([-1])).toEqual([0, 65520, 65535, TOP]); // 2^64 - 2^20
    expect(enc([0.5])).toEqual([0, 8, 0, 0]);
    expect(enc([-(2 ** 27)])).toEqual([0, 0, 32768, TOP]); // 2^64 - 2^47
    expect(enc([1.5, -1], 1)).toEqual([3, 0, 0, 0, 65534, 65535, 65535, TOP]);
    // The extremes: |V| = 2^48 - 1.
    expect(enc([2 ** 28 - 2 ** -20])).toEqual([65535, 65535, 65535, 0]);
    expect(enc([-(2 ** 28 - 2 ** -20)])).toEqual([1, 0, 0, TOP]);
    expect(enc([2 ** 48 - 1], 0)).toEqual([65535, 65535, 65535, 0]);
  });

  it('rounds to the nearest multiple of 2^-F, ties to even', () => {
    const v = (x: number, fractionBits: number): number =>
      decodeFixedPointSum(encodeFixedPoint([x], { fractionBits }), { fractionBits })[0] as number;
    expect([2.5, 3.5, -2.5, -3.5, 0.5, -0.5, 0.49, 1.51].map((x) => v(x, 0))).toEqual([
      2, 4, -2, -4, 0, 0, 0, 2,
    ]);
    expect(v(2 ** -21, 20)).toBe(0);
    expect(v(3 * 2 ** -21, 20)).toBe(2 ** -19);
    expect(v(0.1, 20)).toBe(104858 / 2 ** 20); // 0.1 * 2^20 = 104857.6
    expect(v(-0.1, 20)).toBe(-104858 / 2 ** 20);
  });

  it('decodes a single encoding to the value rounded to F fraction bits', () => {
    fc.assert(
      fc.property(
        fractionBits.chain((f) => fc.tuple(fc.constant(f), valuesFor(f, 1, 20))),
        ([f, xs]) => {
          const back = decodeFixedPointSum(encodeFixedPoint(xs, { fractionBits: f }), {
            fractionBits: f,
          });
          xs.forEach((x, i) => {
            expect(back[i]).toBe(roundTiesEven(x * 2 ** f) / 2 ** f + 0); // no -0 in a sum
            expect(Math.abs((back[i] as number) - x)).toBeLessThanOrEqual(2 ** -(f + 1));
          });
        },
      ),
      { numRuns: 200 },
    );
  });

  it('sums n sites limb by limb mod 2^32 to within n * 2^-(F+1) of the float sum', () => {
    fc.assert(
      fc.property(
        fractionBits.chain((f) =>
          fc.tuple(
            fc.constant(f),
            fc.integer({ min: 1, max: 8 }).chain((m) =>
              fc.array(valuesFor(f, m), {
                minLength: 1,
                maxLength: 50,
              }),
            ),
          ),
        ),
        ([f, sites]) => {
          const n = sites.length;
          const options = { fractionBits: f };
          const sum = decodeFixedPointSum(
            limbSum(sites.map((xs) => encodeFixedPoint(xs, options))),
            options,
          );
          for (let j = 0; j < sum.length; j++) {
            const column = sites.map((xs) => xs[j] as number);
            const floatSum = column.reduce((a, b) => a + b, 0);
            const magnitude = column.reduce((a, b) => a + Math.abs(b), 0) + n * 2 ** -f;
            // Rounding each value (n half-steps), then float64 rounding of the reference and result.
            const tolerance = n * 2 ** -(f + 1) + n * 2 ** -52 * magnitude;
            expect(Math.abs((sum[j] as number) - floatSum)).toBeLessThanOrEqual(tolerance);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('sums values of any magnitude below 2^60 through the wide encoding to within n * 2^-21 plus float64 rounding', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.array(fc.double({ min: -(2 ** 60), max: 2 ** 60, noNaN: true }), {
            minLength: 3,
            maxLength: 3,
          }),
          { minLength: 1, maxLength: 40 },
        ),
        (sites) => {
          const encoded = sites.map((xs) => encodeWideFixedPoint(xs));
          expect(encoded[0]!.length).toBe(3 * WIDE_FIXED_POINT_LIMBS);
          const sum = decodeWideFixedPointSum(limbSum(encoded));
          for (let j = 0; j < 3; j++) {
            const column = sites.map((xs) => xs[j]!);
            const floatSum = column.reduce((a, b) => a + b, 0);
            const magnitude = column.reduce((a, b) => a + Math.abs(b), 0);
            const tolerance = sites.length * 2 ** -21 + 4 * sites.length * 2 ** -52 * magnitude;
            expect(Math.abs(sum[j]! - floatSum)).toBeLessThanOrEqual(tolerance);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('sums values already on the 2^-F grid exactly, rounding only the final float64', () => {
    const grid = fc.bigInt({ min: -(2n ** 48n) + 1n, max: 2n ** 48n - 1n });
    fc.assert(
      fc.property(
        fractionBits,
        fc.array(fc.array(grid, { minLength: 3, maxLength: 3 }), { minLength: 1, maxLength: 50 }),
        (f, sites) => {
          const options = { fractionBits: f };
          const encodings = sites.map((vs) =>
            encodeFixedPoint(
              vs.map((v) => Number(v) * 2 ** -f),
              options,
            ),
          );
          const sum = decodeFixedPointSum(limbSum(encodings), options);
          for (let j = 0; j < 3; j++) {
            const exact = sites.reduce((a, vs) => a + (vs[j] as bigint), 0n);
            expect(sum[j]).toBe(Number(exact) * 2 ** -f);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('sums FIXED_POINT_MAX_SITES encodings of the largest magnitudes without wrapping', () => {
    const extremes = [2 ** 28 - 2 ** -20, -(2 ** 28 - 2 ** -20), -(2 ** -20), 2 ** -20];
    const one = encodeFixedPoint(extremes);
    const sum = new Uint32Array(one.length);
    for (let s = 0; s < FIXED_POINT_MAX_SITES; s++) {
      for (let j = 0; j < one.length; j++) sum[j] = (sum[j] as number) + (one[j] as number);
    }
    const n = BigInt(FIXED_POINT_MAX_SITES);
    const v = 2n ** 48n - 1n;
    expect([...decodeFixedPointSum(sum)]).toEqual([
      Number(n * v) * 2 ** -20,
      Number(-n * v) * 2 ** -20,
      -FIXED_POINT_MAX_SITES * 2 ** -20,
      FIXED_POINT_MAX_SITES * 2 ** -20,
    ]);
  });

  it('describes the limb range to validateParams: headroom for FIXED_POINT_MAX_SITES sites, not one more', () => {
    const p: SecAggParams = {
      threshold: 2,
      graph: 'complete',
      threatModel: 'semi-honest',
      clip: FIXED_POINT_CLIP,
      scale: FIXED_POINT_SCALE,
      maxSites: FIXED_POINT_MAX_SITES,
    };
    expect(validateParams(p).maxSites).toBe(2 ** 15);
    expect(validateParams({ ...p, maxSites: 2 }).clip).toBe(2 ** 16 - 1);
    expectCode(() => validateParams({ ...p, maxSites: FIXED_POINT_MAX_SITES + 1 }), 'BAD_PARAMS');
    // Every limb an encoding produces lies within [-clip, clip] as a signed value.
    const limbs = encodeFixedPoint([2 ** 28 - 2 ** -20, -(2 ** 28 - 2 ** -20), -(2 ** -20), 0.3]);
    for (const l of limbs) expect(Math.abs(l | 0)).toBeLessThanOrEqual(FIXED_POINT_CLIP);
  });

  it('unmasks to the sum of the surviving sites inputs through a whole secure round', () => {
    const params: SecAggParams = {
      threshold: 2,
      graph: 'complete',
      threatModel: 'semi-honest',
      clip: FIXED_POINT_CLIP,
      scale: FIXED_POINT_SCALE,
      maxSites: FIXED_POINT_MAX_SITES,
    };
    fc.assert(
      fc.property(
        fc.integer({ min: 3, max: 6 }).chain((n) =>
          fc.record({
            sites: fc.array(valuesFor(20, 5), {
              minLength: n,
              maxLength: n,
            }),
            dropped: fc.subarray([...Array(n).keys()], { maxLength: n - 2 }),
          }),
        ),
        ({ sites, dropped }) => {
          const inputs = sites.map((xs) => encodeFixedPoint(xs));
          const { sum, survivors } = simulateRound({
            params,
            inputs,
            dropBeforeMasking: dropped,
          });
          const decoded = decodeFixedPointSum(sum);
          expect(decoded).toEqual(
            decodeFixedPointSum(limbSum(survivors.map((i) => inputs[i] as Uint32Array))),
          );
          for (let j = 0; j < 5; j++) {
            const column = survivors.map((i) => sites[i]?.[j] as number);
            const want = column.reduce((a, b) => a + b, 0);
            const magnitude = column.reduce((a, b) => a + Math.abs(b), 0) + 1;
            const n = survivors.length;
            expect(Math.abs((decoded[j] as number) - want)).toBeLessThanOrEqual(
              n * 2 ** -21 + n * 2 ** -52 * magnitude,
            );
          }
        },
      ),
      { numRuns: 6 },
    );
  });

  it('refuses NaN, Infinity and values too large for 2^15 summands, naming the coordinate', () => {
    expectCode(() => encodeFixedPoint([1, NaN]), 'NON_FINITE_INPUT', /coordinate 1 is NaN/);
    expectCode(
      () => encodeFixedPoint(Float32Array.of(0, 0, -Infinity)),
      'NON_FINITE_INPUT',
      /coordinate 2 is -Infinity/,
    );
    expectCode(
      () => encodeFixedPoint([0, 2 ** 28]),
      'BAD_INPUT',
      /coordinate 1 is 268435456: with 20 fraction bits \|x\| must be below 2\^28/,
    );
    // Rounds up to 2^48: refused, though x itself is below 2^28.
    expectCode(() => encodeFixedPoint([2 ** 28 - 2 ** -22]), 'BAD_INPUT', /coordinate 0/);
    expectCode(() => encodeFixedPoint([-(2 ** 48)], { fractionBits: 0 }), 'BAD_INPUT');
    expectCode(() => encodeFixedPoint([1e300]), 'BAD_INPUT', /coordinate 0 is 1e\+300/);
    expectCode(() => encodeFixedPoint([1, '2' as unknown as number]), 'BAD_INPUT', /coordinate 1/);
    expectCode(() => encodeFixedPoint(null as unknown as number[]), 'BAD_INPUT');
    expect(encodeFixedPoint([])).toEqual(new Uint32Array(0));
  });

  it('refuses fraction bits outside the integers 0..40', () => {
    for (const fractionBits of [-1, 41, 1.5, NaN]) {
      expectCode(() => encodeFixedPoint([1], { fractionBits }), 'BAD_PARAMS', /fractionBits/);
      expectCode(
        () => decodeFixedPointSum(new Uint32Array(4), { fractionBits }),
        'BAD_PARAMS',
        /fractionBits/,
      );
    }
    expect(encodeFixedPoint([1], { fractionBits: 40 })).toEqual(Uint32Array.of(0, 0, 256, 0));
    expect(encodeFixedPoint([1], {})).toEqual(encodeFixedPoint([1]));
  });

  it('refuses a sum whose length is not a multiple of 4 or whose limbs no valid sum can have', () => {
    expectCode(() => decodeFixedPointSum(new Uint32Array(5)), 'BAD_INPUT', /not a multiple of 4/);
    expectCode(
      () => decodeFixedPointSum([0, 0, 0, 0] as unknown as Uint32Array),
      'BAD_INPUT',
      /Uint32Array/,
    );
    expectCode(
      () => decodeFixedPointSum(Uint32Array.of(0, 0, 0, 0, 0, 2 ** 31, 0, 0)),
      'BAD_INPUT',
      /value 1 has a limb sum of 2\^31 or more/,
    );
    expect(decodeFixedPointSum(new Uint32Array(0))).toEqual(new Float64Array(0));
  });
});
