import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isSecAggError } from './errors';
import {
  appendWeight,
  assertFiniteValues,
  averageWeighted,
  checkHeadroom,
  chooseScale,
  dequantize,
  maxQuantized,
  QUANTIZE_CHUNK as C,
  quantize,
  quantizeWeighted,
  weightedQuantizer,
} from './quantize';
import { resetSimdForTests } from './simd';

const finite = fc.double({ min: -1e6, max: 1e6, noNaN: true, noDefaultInfinity: true });
const paramsArb = fc.record({
  clip: fc.double({ min: 1e-3, max: 100, noNaN: true }),
  scale: fc.constantFrom(1, 2 ** 4, 2 ** 10, 2 ** 16),
});

describe('quantization', () => {
  it('stays within 1/scale of the clipped value', () => {
    fc.assert(
      fc.property(fc.array(finite, { minLength: 1, maxLength: 50 }), paramsArb, (xs, p) => {
        fc.pre(p.clip * p.scale < 2 ** 30);
        const back = dequantize(quantize(Float64Array.from(xs), p), p);
        xs.forEach((x, i) => {
          const clipped = Math.min(p.clip, Math.max(-p.clip, x));
          expect(Math.abs((back[i] as number) - clipped)).toBeLessThan(1 / p.scale + 1e-12);
        });
      }),
      { numRuns: 200 },
    );
  });

  it('never exceeds max |q| = ceil(clip * scale)', () => {
    fc.assert(
      fc.property(fc.array(finite, { minLength: 1, maxLength: 50 }), paramsArb, (xs, p) => {
        fc.pre(p.clip * p.scale < 2 ** 30);
        const q = quantize(xs, p);
        const max = maxQuantized(p);
        for (const v of q) expect(Math.abs(v | 0)).toBeLessThanOrEqual(max);
      }),
    );
  });

  it('rounds without bias (stochastic rounding from the CSPRNG)', () => {
    const p = { clip: 1, scale: 1 };
    const x = new Float64Array(20000).fill(0.3);
    const q = quantize(x, p);
    const mean = dequantize(q, p).reduce((a, b) => a + b, 0) / x.length;
    // Binomial(20000, 0.3)/20000 has standard deviation 0.0032; allow 5 sigma.
    expect(Math.abs(mean - 0.3)).toBeLessThan(0.017);
    expect(new Set(q).size).toBe(2);
  });

  it('sums n sites without wrapping when the headroom check passes', () => {
    fc.assert(
      fc.property(fc.integer({ min: 2, max: 64 }), fc.boolean(), (n, negative) => {
        const clip = 3;
        const scale = chooseScale(clip, n);
        const p = { clip, scale };
        checkHeadroom(p, n);
        const sum = new Uint32Array(1);
        const x = Float64Array.of(negative ? -clip : clip);
        for (let i = 0; i < n; i++) sum[0] = (sum[0] as number) + (quantize(x, p)[0] as number);
        expect(dequantize(sum, p)[0]).toBeCloseTo((negative ? -clip : clip) * n, 6);
      }),
    );
  });

  it('finds the first NaN or Infinity of a float32 update, and passes every finite value', () => {
    const edges = [
      0, -0, 1, -1, 1.401298464324817e-45, 3.4028234663852886e38, -3.4028234663852886e38,
    ];
    for (const length of [1, 3, 4, 5, 9, 1000]) {
      const xs = Float32Array.from({ length }, (_, i) => edges[i % edges.length]!);
      expect(() => assertFiniteValues(xs)).not.toThrow();
      for (const at of new Set([0, length >> 1, length - 1])) {
        for (const bad of [NaN, Infinity, -Infinity]) {
          const ys = Float32Array.from(xs);
          ys[at] = bad;
          if (at + 1 < length) ys[length - 1] = NaN; // a later one is not the one named
          expect(() => assertFiniteValues(ys)).toThrow(`coordinate ${at} is ${bad}`);
          // A view at an offset reads its own values only.
          if (at + 1 < length) {
            const after = new Float32Array(ys.buffer, 4 * at + 4);
            expect(() => assertFiniteValues(after)).toThrow(
              `coordinate ${after.length - 1} is NaN`,
            );
          }
          if (at > 0) expect(() => assertFiniteValues(ys.subarray(0, at))).not.toThrow();
        }
      }
    }
  });

  it('refuses parameters without headroom', () => {
    expect(() => checkHeadroom({ clip: 1, scale: 2 ** 24 }, 200)).toThrow(/headroom/);
    expect(() => checkHeadroom({ clip: 0, scale: 1 }, 2)).toThrow(/clip/);
    expect(() => checkHeadroom({ clip: 1, scale: Infinity }, 2)).toThrow(/scale/);
    expect(chooseScale(1, 1000)).toBe(2 ** 21);
  });

  it('refuses NaN and Infinity before anything else', () => {
    for (const bad of [NaN, Infinity, -Infinity]) {
      try {
        quantize([0, bad], { clip: 1, scale: 2 });
        expect.unreachable();
      } catch (e) {
        expect(isSecAggError(e, 'NON_FINITE_INPUT')).toBe(true);
      }
      expect(() => appendWeight([bad], 0.5)).toThrow(/coordinate 0/);
    }
  });
});

describe('SIMD quantization', () => {
  /** Deterministic random values that include 0, 2^31 and 2^32 - 1. */
  const counter = (seed: number): ((out: Uint32Array) => void) => {
    let k = seed;
    return (out) => {
      for (let i = 0; i < out.length; i++) {
        k++;
        out[i] =
          k % 7 === 0
            ? 0
            : k % 11 === 0
              ? 0xffffffff
              : k % 13 === 0
                ? 2 ** 31
                : Math.imul(k, 2654435761) >>> 0;
      }
    };
  };
  /** Runs f with the JavaScript loop instead of the kernels. */
  const withoutSimd = <T>(f: () => T): T => {
    process.env['CONFIDE_SECAGG_NO_SIMD'] = '1';
    resetSimdForTests();
    try {
      return f();
    } finally {
      delete process.env['CONFIDE_SECAGG_NO_SIMD'];
      resetSimdForTests();
    }
  };
  // Large values stay finite in float32 too (the float32 runs round every value to float32).
  const special = fc.constantFrom(0, -0, 1, -1, 0.5, -0.5, 5e-324, -5e-324, 1e30, -1e30, 2 ** -17);

  it("gives the JavaScript loop's values bit for bit (float32 and float64, odd lengths, edges)", () => {
    expect(weightedQuantizer([1], 1, { clip: 1, scale: 4 }).simd).toBe(true);
    fc.assert(
      fc.property(
        fc.array(fc.oneof(finite, special), { minLength: 1, maxLength: 300 }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        paramsArb,
        fc.boolean(),
        fc.nat(1000),
        (xs, weight, params, float32, seed) => {
          // Values at and around +/-clip and halfway between grid points, as well as the random ones.
          const values = [
            ...xs,
            params.clip,
            -params.clip,
            params.clip * 0.999,
            1.5 / params.scale,
          ];
          const update = float32 ? Float32Array.from(values) : Float64Array.from(values);
          const simd = quantizeWeighted(update, weight, params, counter(seed));
          const js = withoutSimd(() => quantizeWeighted(update, weight, params, counter(seed)));
          expect(Array.from(simd)).toEqual(Array.from(js));
        },
      ),
      { numRuns: 300 },
    );
    // Results at the ends of the int32 range the kernel handles (|q| up to 2^31 - 1), with the
    // smallest and largest random values.
    for (const p of [
      { clip: 2 ** 31 - 1, scale: 1 },
      { clip: 2 ** 15 - 2 ** -16, scale: 2 ** 16 },
    ]) {
      expect(weightedQuantizer([1], 1, p).simd).toBe(true);
      const xs = Float64Array.of(p.clip, -p.clip, p.clip - 0.5, -p.clip + 0.25, 0.5, -0.5, 0, -0);
      for (const fill of [0, 1, 0x7fffffff, 0x80000000, 0xffffffff]) {
        const rnd = (out: Uint32Array): void => void out.fill(fill);
        expect(Array.from(quantize(xs, p, rnd))).toEqual(
          Array.from(withoutSimd(() => quantize(xs, p, rnd))),
        );
      }
    }
    // Whole chunks and a chunk boundary, with the weight as the odd last coordinate.
    const long = Float32Array.from({ length: 40001 }, (_, i) => Math.sin(i) * 1.3);
    const p = { clip: 1, scale: 2 ** 16 };
    expect(Buffer.from(quantizeWeighted(long, 0.3, p, counter(1)).buffer)).toEqual(
      Buffer.from(withoutSimd(() => quantizeWeighted(long, 0.3, p, counter(1))).buffer),
    );
  });

  it('adds into a vector mod 2^32 exactly what it would write (with and without SIMD)', () => {
    const p = { clip: 1.5, scale: 2 ** 16 };
    for (const length of [1, 2, 5, C - 1, C, C + 3, 3 * C + 6]) {
      const update = Float32Array.from({ length }, (_, i) => Math.sin(i * 0.7) * 2);
      const base = Uint32Array.from({ length: length + 1 }, (_, i) => Math.imul(i + 1, 2246822519));
      const want = Uint32Array.from(base);
      const q = quantizeWeighted(update, 0.7, p, counter(3));
      for (let i = 0; i < want.length; i++) want[i] = (want[i]! + q[i]!) >>> 0;
      for (const run of [<T>(f: () => T): T => f(), withoutSimd]) {
        const got = Uint32Array.from(base);
        run(() => {
          const acc = weightedQuantizer(update, 0.7, p, counter(3));
          acc.quantizeAll(got, true);
          acc.destroy();
        });
        expect(Buffer.from(got.buffer).equals(Buffer.from(want.buffer))).toBe(true);
      }
    }
  });

  it('names the first NaN or Infinity as the JavaScript loop does', () => {
    for (const at of [0, 1, 2, C - 1, C, 5 * C - 2]) {
      for (const bad of [NaN, Infinity, -Infinity]) {
        const xs = new Float64Array(5 * C + 1).fill(0.25);
        xs[at] = bad;
        xs[5 * C] = NaN; // a later one is not the one named
        expect(() => quantizeWeighted(xs, 0.5, { clip: 1, scale: 4 })).toThrow(
          `coordinate ${at} is ${bad}`,
        );
      }
    }
  });

  it('leaves ranges that could overflow int32 to the JavaScript loop', () => {
    const p = { clip: 2 ** 31 - 0.5, scale: 1 };
    expect(weightedQuantizer([1], 1, p).simd).toBe(false);
    // 2^31 - 0.5 rounded up (the largest random value) is 2^31, which int32 could not hold.
    expect(Array.from(quantize([2 ** 31], p, (out) => out.fill(0xffffffff)))).toEqual([2 ** 31]);
  });
});

describe('weighted averaging', () => {
  it('appends the weight and divides it back out', () => {
    expect(Array.from(appendWeight(new Float32Array([2, 4]), 0.5))).toEqual([1, 2, 0.5]);
    const { average, totalWeight } = averageWeighted(Float64Array.of(1, 2, 0.5));
    expect(Array.from(average)).toEqual([2, 4]);
    expect(totalWeight).toBe(0.5);
  });

  it('gives the weighted mean of several sites through quantization', () => {
    const p = { clip: 4, scale: 2 ** 16 };
    const updates = [Float32Array.of(1, -1), Float32Array.of(3, 1), Float32Array.of(-2, 2)];
    const weights = [0.2, 0.5, 1];
    const sum = new Uint32Array(3);
    updates.forEach((u, i) => {
      const q = quantize(appendWeight(u, weights[i] as number), p);
      for (let j = 0; j < 3; j++) sum[j] = (sum[j] as number) + (q[j] as number);
    });
    const { average, totalWeight } = averageWeighted(dequantize(sum, p));
    expect(totalWeight).toBeCloseTo(1.7, 4);
    expect(average[0]).toBeCloseTo((0.2 * 1 + 0.5 * 3 - 2) / 1.7, 3);
    expect(average[1]).toBeCloseTo((-0.2 + 0.5 + 2) / 1.7, 3);
  });

  it('quantizeWeighted equals quantize(appendWeight(...)) bit for bit, across random batches', () => {
    // A deterministic "CSPRNG" so both paths see the same random values; lengths straddle the
    // QUANTIZE_CHUNK-value random batches, so the appended weight lands at the end of a batch and alone
    // in one.
    const counter = (): ((out: Uint32Array) => void) => {
      let k = 0;
      return (out) => {
        for (let i = 0; i < out.length; i++) out[i] = Math.imul(++k, 2654435761) >>> 0;
      };
    };
    fc.assert(
      fc.property(
        fc.constantFrom(1, 7, C - 1, C, C + 1, 3 * C + 5),
        fc.double({ min: 0, max: 1, noNaN: true }),
        paramsArb,
        fc.boolean(),
        (n, weight, params, float32) => {
          const raw = Float64Array.from(
            { length: n },
            (_, i) => Math.sin(i * 12.9898) * 2 * params.clip,
          );
          const update = float32 ? Float32Array.from(raw) : raw;
          const a = quantize(appendWeight(update, weight), params, counter());
          const b = quantizeWeighted(update, weight, params, counter());
          expect(b.length).toBe(n + 1);
          expect(Buffer.from(b.buffer).equals(Buffer.from(a.buffer))).toBe(true);
        },
      ),
      { numRuns: 40 },
    );
    expect(Array.from(quantizeWeighted([2, 4], 0.25, { clip: 1, scale: 4 }))).toEqual([2, 4, 1]);
    expect(() => quantizeWeighted([1, NaN], 0.5, { clip: 1, scale: 4 })).toThrow(
      /coordinate 1 is NaN/,
    );
    expect(() => quantizeWeighted([Infinity], 0, { clip: 1, scale: 4 })).toThrow(/coordinate 0/);
    expect(() => quantizeWeighted([1], 2, { clip: 1, scale: 4 })).toThrow(/weight/);
  });

  it('checks the weight', () => {
    expect(() => appendWeight([1], 1.5)).toThrow(/weight/);
    expect(() => appendWeight([1], -0.1)).toThrow(/weight/);
    expect(() => averageWeighted(Float64Array.of(1, 0))).toThrow(/not positive/);
  });
});
