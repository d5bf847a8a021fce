import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  chooseGraphParameters,
  graphPermutation,
  hararyRequirements,
  hararyRing,
  neighbourhoods,
  neighboursOf,
} from './graph';

const sessionArb = fc.uint8Array({ minLength: 32, maxLength: 32 });
const ids = (n: number): string[] =>
  Array.from({ length: n }, (_, i) => `s${String(i).padStart(4, '0')}`);

function connected(graph: ReadonlyMap<string, readonly string[]>): boolean {
  const start = graph.keys().next().value as string;
  const seen = new Set([start]);
  const stack = [start];
  while (stack.length > 0) {
    for (const v of graph.get(stack.pop() as string) ?? []) {
      if (!seen.has(v)) {
        seen.add(v);
        stack.push(v);
      }
    }
  }
  return seen.size === graph.size;
}

describe('Harary graphs', () => {
  it('have degree k, are symmetric and connected', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 5, max: 120 }),
        fc.integer({ min: 1, max: 20 }),
        sessionArb,
        (n, half, sid) => {
          const k = 2 * half;
          fc.pre(k < n - 1);
          const g = neighbourhoods(ids(n), sid, { graph: 'harary', k });
          const problems: string[] = [];
          for (const [u, nbrs] of g) {
            if (nbrs.length !== k || new Set(nbrs).size !== k) problems.push(`${u}: degree`);
            if (nbrs.includes(u)) problems.push(`${u}: self-loop`);
            for (const v of nbrs)
              if (!g.get(v)?.includes(u)) problems.push(`${u}-${v}: asymmetric`);
          }
          expect(problems).toEqual([]);
          expect(connected(g)).toBe(true);
        },
      ),
      { numRuns: 60 },
    );
  });

  it('give each site the same neighbours whether built whole or for one site', () => {
    fc.assert(
      fc.property(fc.integer({ min: 3, max: 60 }), sessionArb, (n, sid) => {
        for (const options of [
          { graph: 'complete' as const },
          { graph: 'harary' as const, k: 4 },
        ]) {
          const g = neighbourhoods(ids(n), sid, options);
          for (const id of ids(n))
            expect(neighboursOf(ids(n), sid, options, id)).toEqual(g.get(id));
        }
      }),
      { numRuns: 20 },
    );
    expect(() => neighboursOf(['a'], new Uint8Array(32), { graph: 'complete' }, 'b')).toThrow(
      /not in/,
    );
  });

  it('are the same for the same session id and differ between session ids', () => {
    fc.assert(
      fc.property(sessionArb, sessionArb, (a, b) => {
        fc.pre(Buffer.compare(a, b) !== 0);
        const g1 = neighbourhoods(ids(50), a, { graph: 'harary', k: 6 });
        const g2 = neighbourhoods([...ids(50)].reverse(), a, { graph: 'harary', k: 6 });
        expect([...g2.entries()].sort()).toEqual([...g1.entries()].sort());
        const g3 = neighbourhoods(ids(50), b, { graph: 'harary', k: 6 });
        expect([...g3.entries()].sort()).not.toEqual([...g1.entries()].sort());
      }),
      { numRuns: 20 },
    );
  });

  it('permute with a uniform-looking Fisher-Yates permutation', () => {
    const perm = graphPermutation(new Uint8Array(32).fill(1), 1000);
    expect([...perm].sort((a, b) => a - b)).toEqual(Array.from({ length: 1000 }, (_, i) => i));
    // Position of element 0 over many session ids: roughly uniform over 4 buckets.
    const buckets = [0, 0, 0, 0];
    for (let s = 0; s < 400; s++) {
      const p = graphPermutation(
        new Uint8Array(32).fill(s % 256).map((v, i) => (i === 0 ? s >> 8 : v)),
        8,
      );
      buckets[Math.floor(p.indexOf(0) / 2)]! += 1;
    }
    for (const b of buckets) expect(b).toBeGreaterThan(60);
  });

  it('lay out the ring as H(k, n) and fall back to the complete graph when k >= n - 1', () => {
    expect(hararyRing(10, 4, 0)).toEqual([8, 9, 1, 2]);
    expect(hararyRing(5, 4, 2)).toEqual([0, 1, 3, 4]);
    const g = neighbourhoods(ids(4), new Uint8Array(32), { graph: 'harary', k: 6 });
    expect(g.get('s0000')).toEqual(['s0001', 's0002', 's0003']);
    expect(() => hararyRing(10, 3, 0)).toThrow(/even/);
  });

  it('refuses a repeated site', () => {
    expect(() => neighbourhoods(['a', 'a'], new Uint8Array(32), { graph: 'complete' })).toThrow(
      /twice/,
    );
  });
});

describe('chooseGraphParameters', () => {
  it('uses the complete graph up to 64 sites with a majority threshold', () => {
    expect(chooseGraphParameters(10, { dropoutRate: 0.1, threatModel: 'semi-honest' })).toEqual({
      graph: 'complete',
      k: 9,
      t: 6,
    });
    expect(chooseGraphParameters(64, { dropoutRate: 0.1, threatModel: 'semi-malicious' })).toEqual({
      graph: 'complete',
      k: 63,
      t: 35,
    });
  });

  it('reproduces the documented table (Bell et al. 2020 parameter search, sigma 40, eta 20)', () => {
    const table: [number, number, number, number, number, number][] = [
      // n, delta, semi-honest k, t, semi-malicious k, t
      [100, 0.05, 12, 6, 16, 11],
      [100, 0.1, 16, 6, 26, 16],
      [500, 0.05, 28, 16, 44, 31],
      [500, 0.1, 32, 17, 66, 44],
      [500, 0.3, 58, 20, 212, 119],
      [1000, 0.05, 30, 17, 52, 37],
      [1000, 0.1, 36, 19, 78, 52],
      [1000, 0.3, 66, 23, 314, 179],
      [10000, 0.05, 34, 20, 62, 44],
      [10000, 0.1, 42, 22, 96, 64],
    ];
    for (const [n, dropoutRate, k, t, mk, mt] of table) {
      expect(chooseGraphParameters(n, { dropoutRate, threatModel: 'semi-honest' })).toEqual({
        graph: 'harary',
        k,
        t,
      });
      expect(chooseGraphParameters(n, { dropoutRate, threatModel: 'semi-malicious' })).toEqual({
        graph: 'harary',
        k: mk,
        t: mt,
      });
    }
  });

  it('grows k with the dropout rate and keeps t within k + 1', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 65, max: 3000 }),
        fc.double({ min: 0, max: 0.3, noNaN: true }),
        (n, d) => {
          const p = chooseGraphParameters(n, { dropoutRate: d, threatModel: 'semi-honest' });
          expect(p.t).toBeGreaterThanOrEqual(2);
          expect(p.t).toBeLessThanOrEqual(p.k + 1);
          const more = chooseGraphParameters(n, {
            dropoutRate: Math.min(0.3, d + 0.05),
            threatModel: 'semi-honest',
          });
          expect(more.k).toBeGreaterThanOrEqual(p.k);
        },
      ),
      { numRuns: 25 },
    );
  });

  it('refuses impossible requirements', () => {
    expect(() =>
      chooseGraphParameters(10, { dropoutRate: 0.6, threatModel: 'semi-honest' }),
    ).toThrow(/threshold/);
    expect(() => chooseGraphParameters(10, { dropoutRate: 1, threatModel: 'semi-honest' })).toThrow(
      /dropoutRate/,
    );
    expect(() => chooseGraphParameters(1, { dropoutRate: 0, threatModel: 'semi-honest' })).toThrow(
      /n must/,
    );
  });
});

describe('hararyRequirements', () => {
  // The rows of chooseGraphParameters' documented table: n, delta, semi-honest k, t, semi-malicious k, t.
  const table: [number, number, number, number, number, number][] = [
    [100, 0.05, 12, 6, 16, 11],
    [100, 0.1, 16, 6, 26, 16],
    [500, 0.05, 28, 16, 44, 31],
    [500, 0.1, 32, 17, 66, 44],
    [500, 0.3, 58, 20, 212, 119],
    [1000, 0.05, 30, 17, 52, 37],
    [1000, 0.1, 36, 19, 78, 52],
    [1000, 0.3, 66, 23, 314, 179],
    [10000, 0.05, 34, 20, 62, 44],
    [10000, 0.1, 42, 22, 96, 64],
  ];

  it('accepts every documented (k, t) and asks for exactly t, since dropouts do not move t1', () => {
    for (const [n, , k, t, mk, mt] of table) {
      expect(hararyRequirements(n, k, { threatModel: 'semi-honest' })).toEqual({
        connected: true,
        minThreshold: t,
      });
      expect(hararyRequirements(n, mk, { threatModel: 'semi-malicious' })).toEqual({
        connected: true,
        minThreshold: mt,
      });
    }
  });

  it('agrees with chooseGraphParameters for any n and dropout rate', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 65, max: 3000 }),
        fc.double({ min: 0, max: 0.3, noNaN: true }),
        fc.constantFrom('semi-honest' as const, 'semi-malicious' as const),
        (n, dropoutRate, threatModel) => {
          const p = chooseGraphParameters(n, { dropoutRate, threatModel });
          fc.pre(p.graph === 'harary');
          expect(hararyRequirements(n, p.k, { threatModel })).toEqual({
            connected: true,
            minThreshold: p.t,
          });
        },
      ),
      { numRuns: 25 },
    );
  });

  it('finds a degree too small to keep the honest sites connected', () => {
    expect(hararyRequirements(1000, 2, { threatModel: 'semi-honest' }).connected).toBe(false);
    expect(hararyRequirements(1000, 2, { threatModel: 'semi-honest', adversarialRate: 0 })).toEqual(
      { connected: true, minThreshold: 2 },
    );
  });

  it('asks for a larger threshold when more sites may collude', () => {
    const low = hararyRequirements(1000, 36, { threatModel: 'semi-honest', adversarialRate: 0.01 });
    const high = hararyRequirements(1000, 36, { threatModel: 'semi-honest', adversarialRate: 0.2 });
    expect(high.minThreshold).toBeGreaterThan(low.minThreshold);
  });

  it('refuses a degree that is odd, below 2 or not below n - 1', () => {
    for (const k of [3, 0, 999, 1000]) {
      expect(() => hararyRequirements(1000, k, { threatModel: 'semi-honest' })).toThrow(/degree/);
    }
    expect(() => hararyRequirements(3, 2, { threatModel: 'semi-honest' })).toThrow(/n must/);
  });
});
