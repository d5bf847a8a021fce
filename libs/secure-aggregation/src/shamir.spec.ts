import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isSecAggError } from './errors';
import {
  combineShareValuesRobust,
  lagrangeAtZero,
  lagrangeAtZeroMany,
  prepareCombinations,
  SHAMIR_PRIME,
  SHARE_BYTES,
  shamirCombine,
  shamirSplit,
  shareValue,
  type Share,
  type ShareValue,
} from './shamir';

const P = SHAMIR_PRIME;
const mod = (v: bigint): bigint => ((v % P) + P) % P;
const bytesToBig = (b: Uint8Array): bigint => b.reduce((v, x) => (v << 8n) | BigInt(x), 0n);
const bigToBytes = (v: bigint, n: number): Uint8Array => {
  const out = new Uint8Array(n);
  for (let i = n - 1; i >= 0; i--, v >>= 8n) out[i] = Number(v & 0xffn);
  return out;
};
const pow = (b: bigint, e: bigint): bigint => {
  let r = 1n;
  for (b = mod(b); e > 0n; e >>= 1n, b = mod(b * b)) if (e & 1n) r = mod(r * b);
  return r;
};
/** Evaluates at x0 the polynomial through `points` (Lagrange), independently of the library. */
const interpolate = (points: readonly [bigint, bigint][], x0: bigint): bigint => {
  let sum = 0n;
  for (const [xi, yi] of points) {
    let num = 1n;
    let den = 1n;
    for (const [xj] of points) {
      if (xj === xi) continue;
      num = mod(num * (x0 - xj));
      den = mod(den * (xi - xj));
    }
    sum = mod(sum + yi * num * pow(den, P - 2n));
  }
  return sum;
};

const secretArb = fc.uint8Array({ minLength: 32, maxLength: 32 });
/** n, t and the indices of a random t-subset of 1..n. */
const splitArb = fc
  .integer({ min: 2, max: 20 })
  .chain((n) => fc.tuple(fc.constant(n), fc.integer({ min: 1, max: n })))
  .chain(([n, t]) =>
    fc.tuple(
      fc.constant(n),
      fc.constant(t),
      fc.shuffledSubarray(
        Array.from({ length: n }, (_, i) => i),
        { minLength: t, maxLength: t },
      ),
    ),
  );

describe('shamirSplit evaluates the polynomial exactly', () => {
  it('equals a BigInt evaluation of the same coefficients, for large x and coefficients near p', () => {
    // Coefficients from a scripted "CSPRNG" (read back as the library reads them: 66 bytes, the top
    // byte masked to one bit, values >= p redrawn), shares checked against plain BigInt Horner mod p.
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 60 }),
        fc.uniqueArray(fc.integer({ min: 1, max: 1 << 20 }), { minLength: 60, maxLength: 80 }),
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.boolean(),
        (threshold, xs, secret, extreme) => {
          const drawn: bigint[] = [];
          let calls = 0;
          const random = (n: number): Uint8Array => {
            // Extreme: all ones (after the top byte is masked: p itself, which must be redrawn),
            // then all ones but the last byte (p - 256, near the top of the field), in turn;
            // otherwise pseudo-random bytes.
            const call = calls++;
            const b = new Uint8Array(n);
            for (let i = 0; i < n; i++) b[i] = extreme ? 0xff : (i * 151 + call * 59 + 7) & 0xff;
            if (extreme && call % 2 === 1) b[n - 1] = 0x00;
            const v = bytesToBig(Uint8Array.from(b, (x, i) => (i === 0 ? x & 1 : x)));
            if (v < P) drawn.push(v);
            return b;
          };
          const shares = shamirSplit(secret, xs, threshold, random);
          const coefficients = [bytesToBig(secret), ...drawn];
          expect(coefficients.length).toBe(threshold);
          shares.forEach((s, k) => {
            const x = BigInt(xs[k] as number);
            let y = 0n;
            for (let j = coefficients.length - 1; j >= 0; j--)
              y = mod(y * x + (coefficients[j] as bigint));
            expect(s.x).toBe(xs[k]);
            expect(Buffer.from(s.y).equals(Buffer.from(bigToBytes(y, SHARE_BYTES)))).toBe(true);
          });
        },
      ),
      { numRuns: 60 },
    );
  });
});

describe('Shamir secret sharing over GF(2^521 - 1)', () => {
  it('uses the Mersenne prime 2^521 - 1 and 66-byte shares', () => {
    expect(P).toBe(2n ** 521n - 1n);
    expect(SHARE_BYTES).toBe(66);
    // Fermat check with a few bases (2^521 - 1 is a known Mersenne prime).
    for (const a of [2n, 3n, 5n, 7n]) expect(pow(a, P - 1n)).toBe(1n);
  });

  it('reconstructs the secret from any t of n shares', () => {
    fc.assert(
      fc.property(secretArb, splitArb, (secret, [n, t, subset]) => {
        const xs = Array.from({ length: n }, (_, i) => i + 1);
        const shares = shamirSplit(secret, xs, t);
        expect(
          shamirCombine(
            subset.map((i) => shares[i] as Share),
            t,
          ),
        ).toEqual(secret);
      }),
      { numRuns: 200 },
    );
  });

  it('gives a different value from t - 1 shares', () => {
    fc.assert(
      fc.property(secretArb, splitArb, (secret, [n, t, subset]) => {
        fc.pre(t >= 2);
        const shares = shamirSplit(
          secret,
          Array.from({ length: n }, (_, i) => i + 1),
          t,
        );
        const fewer = subset.slice(0, t - 1).map((i) => shares[i] as Share);
        let value: Uint8Array | undefined;
        try {
          value = shamirCombine(fewer, t - 1);
        } catch (e) {
          // Interpolating a wrong polynomial usually lands outside 32 bytes: BAD_SHARE.
          expect(isSecAggError(e, 'BAD_SHARE')).toBe(true);
        }
        if (value) expect(value).not.toEqual(secret);
        expect(() => shamirCombine(fewer, t)).toThrow(/cannot reconstruct/);
      }),
      { numRuns: 200 },
    );
  });

  it('leaves t - 1 shares consistent with every secret', () => {
    fc.assert(
      fc.property(secretArb, secretArb, splitArb, (secret, other, [n, t, subset]) => {
        fc.pre(t >= 2 && n > t - 1);
        const xs = Array.from({ length: n }, (_, i) => i + 1);
        const shares = shamirSplit(secret, xs, t);
        const known = subset.slice(0, t - 1).map((i) => shares[i] as Share);
        // The polynomial of degree t - 1 through (0, other) and the t - 1 known shares exists; its
        // value at a missing x completes a valid t-set that reconstructs `other`.
        const points: [bigint, bigint][] = [
          [0n, bytesToBig(other)],
          ...known.map((s): [bigint, bigint] => [BigInt(s.x), shareValue(s.y)]),
        ];
        const missing = xs.find((x) => !known.some((s) => s.x === x)) as number;
        const forged: Share = {
          x: missing,
          y: bigToBytes(interpolate(points, BigInt(missing)), 66),
        };
        expect(shamirCombine([...known, forged], t)).toEqual(other);
      }),
      { numRuns: 60 },
    );
  });

  it('computes Lagrange coefficients that sum to one and caches them per x-set', () => {
    const xs = [3, 7, 8, 20];
    const l = lagrangeAtZero(xs);
    expect(mod(l.reduce((a, b) => a + b, 0n))).toBe(1n);
    expect(lagrangeAtZero(xs)).toBe(l);
    expect(lagrangeAtZero([1, 2])).toEqual([2n, P - 1n]);
  });

  it('computes the coefficients of many x-sets together, as each alone', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.uniqueArray(fc.integer({ min: 1, max: 5000 }), { minLength: 1, maxLength: 12 }),
          { minLength: 1, maxLength: 6 },
        ),
        (sets) => {
          // Sets unseen so far (the cache is not what is tested): the first element is shifted.
          const fresh = sets.map((xs, k) => xs.map((x, i) => (i === 0 ? x + 6000 + k : x)));
          const many = lagrangeAtZeroMany(fresh);
          fresh.forEach((xs, k) => {
            // c_i = prod_{j != i} x_j / (x_j - x_i), each with its own inverse (Fermat).
            const want = xs.map((xi, i) => {
              let num = 1n;
              let den = 1n;
              xs.forEach((xj, j) => {
                if (j === i) return;
                num = mod(num * BigInt(xj));
                den = mod(den * BigInt(xj - xi));
              });
              return mod(num * pow(den, P - 2n));
            });
            expect(many[k]).toEqual(want);
            expect(lagrangeAtZero(xs)).toBe(many[k]);
          });
        },
      ),
      { numRuns: 30 },
    );
    expect(() =>
      lagrangeAtZeroMany([
        [1, 2],
        [3, 3],
      ]),
    ).toThrow(/repeats/);
  });

  it('rebuilds secrets from coefficients prepared together for their share lists', () => {
    const t = 3;
    const lists = [11, 12, 13].map((seed) => {
      const secret = new Uint8Array(32).fill(seed);
      const xs = [seed, seed + 5, seed + 9, seed + 30, seed + 31];
      const shares = shamirSplit(secret, xs, t).map((s) => ({ x: s.x, value: shareValue(s.y) }));
      return { secret, shares };
    });
    prepareCombinations(
      lists.map((l) => l.shares),
      t,
    );
    for (const { secret, shares } of lists) {
      expect(lagrangeAtZero(shares.slice(0, t).map((s) => s.x))).toBeDefined();
      const r = combineShareValuesRobust([...shares].reverse(), t);
      expect(Array.from(r.secret)).toEqual(Array.from(secret));
      expect(r.corrupt).toEqual([]);
    }
  });

  it('detects inconsistent shares and checks its inputs', () => {
    const secret = new Uint8Array(32).fill(0xab);
    const shares = shamirSplit(secret, [1, 2, 3], 2);
    const bad = { x: 1, y: new Uint8Array(66).fill(0x01) };
    expect(() => shamirCombine([bad, shares[1] as Share], 2)).toThrow(/inconsistent|not a field/);
    expect(() => shareValue(new Uint8Array(66).fill(0xff))).toThrow(/field element/);
    expect(() => shareValue(new Uint8Array(65))).toThrow(/66 bytes/);
    expect(() => shamirSplit(new Uint8Array(31), [1, 2], 2)).toThrow(/32 bytes/);
    expect(() => shamirSplit(secret, [1, 1], 2)).toThrow(/repeats/);
    expect(() => shamirSplit(secret, [0, 1], 2)).toThrow(/x-coordinates/);
    expect(() => shamirSplit(secret, [1, 2], 3)).toThrow(/threshold/);
    expect(() =>
      shamirCombine([shares[0] as Share, { x: 1, y: (shares[0] as Share).y }], 2),
    ).toThrow(/repeats/);
  });
});

describe('robust reconstruction (combineShareValuesRobust)', () => {
  const values = (shares: readonly Share[]): ShareValue[] =>
    shares.map((s) => ({ x: s.x, value: shareValue(s.y) }));
  // Small, distinct errors (equal ones can cancel at zero, as 3 f(1) - 3 f(2) + f(3) does), far
  // below 2^256: the kind a check on the secret's size alone would miss.
  const corruptAt = (vs: ShareValue[], xs: readonly number[]): ShareValue[] =>
    vs.map((v) =>
      xs.includes(v.x) ? { x: v.x, value: mod(v.value + 1000003n * BigInt(v.x) ** 3n + 17n) } : v,
    );

  it('recovers the secret past up to (m - t) / 2 corrupt shares and names them', () => {
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 32, maxLength: 32 }),
        fc.integer({ min: 2, max: 6 }),
        fc.integer({ min: 1, max: 2 }),
        fc.integer({ min: 0, max: 1000 }),
        (secret, t, e, pick) => {
          const m = t + 2 * e;
          const xs = Array.from({ length: m }, (_, i) => i + 1);
          const vs = values(shamirSplit(secret, xs, t));
          // Corrupt e shares, always including the smallest x (the fast path's first choice).
          const bad = [1, ...xs.slice(1).filter((_, i) => (pick >> i) & 1)].slice(0, e);
          while (bad.length < e) bad.push(m - bad.length + 1);
          bad.sort((a, b) => a - b);
          const r = combineShareValuesRobust(corruptAt(vs, bad), t);
          expect(Array.from(r.secret)).toEqual(Array.from(secret));
          expect(r.corrupt).toEqual(bad);
        },
      ),
      { numRuns: 40 },
    );
  });

  it('checks the t smallest against the t largest x, and uses the caller check', () => {
    const secret = new Uint8Array(32).fill(7);
    const vs = values(shamirSplit(secret, [1, 2, 3, 4, 5, 6, 7], 3));
    expect(combineShareValuesRobust(vs, 3).corrupt).toEqual([]);
    // A corrupt share among the largest x is caught by the comparison, and named.
    expect(combineShareValuesRobust(corruptAt(vs, [7]), 3).corrupt).toEqual([7]);
    // One in neither set is not read at all (and does no harm).
    expect(combineShareValuesRobust(corruptAt(vs, [4]), 3).corrupt).toEqual([]);
    // A caller check that refuses the first result sends it to the search (as a wrong mask key).
    let calls = 0;
    const r = combineShareValuesRobust(vs, 3, (s) => ++calls > 1 && s[0] === 7);
    expect(Array.from(r.secret)).toEqual(Array.from(secret));
    expect(calls).toBeGreaterThan(1);
  });

  it('refuses what cannot be corrected: too many corrupt shares, or no spare shares', () => {
    const secret = new Uint8Array(32).fill(9);
    const vs = values(shamirSplit(secret, [1, 2, 3, 4, 5], 3));
    const code = (f: () => unknown): string | undefined => {
      try {
        f();
      } catch (e) {
        return isSecAggError(e) ? e.code : 'other';
      }
      return undefined;
    };
    expect(code(() => combineShareValuesRobust(corruptAt(vs, [1, 2]), 3))).toBe('BAD_SHARE');
    expect(code(() => combineShareValuesRobust(corruptAt(vs, [1]).slice(0, 4), 3))).toBe(
      'BAD_SHARE',
    );
    expect(code(() => combineShareValuesRobust(vs.slice(0, 2), 3))).toBe('TOO_FEW_SURVIVORS');
    expect(code(() => combineShareValuesRobust(vs, 3, () => false))).toBe('BAD_SHARE');
  });
});
