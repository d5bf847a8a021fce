import { describe, expect, it } from 'vitest';
import { majorityThreshold } from './graph';
import { completeThreshold, sumGraph } from './round-graph';

describe('sumGraph', () => {
  const honest = { threatModel: 'semi-honest', dropoutRate: 0.1 } as const;

  it('uses the complete graph with a majority threshold up to 64 sites', () => {
    expect(sumGraph(3, honest)).toEqual({ threshold: 2, graph: 'complete' });
    expect(sumGraph(10, honest)).toEqual({ threshold: 6, graph: 'complete' });
    expect(sumGraph(64, honest)).toEqual({ threshold: 33, graph: 'complete' });
    expect(completeThreshold(10, 'semi-malicious')).toBe(7);
  });

  it('switches to a Harary graph above 64 sites, holding a majority of each neighbourhood', () => {
    const g = sumGraph(1000, honest);
    expect(g.graph).toBe('harary');
    expect(g.k).toBeLessThan(1000);
    expect(g.threshold).toBeGreaterThanOrEqual(majorityThreshold(g.k!, 'semi-honest'));
    expect(g.threshold).toBeLessThanOrEqual(g.k! + 1);
  });

  it('takes an explicit threshold and graph', () => {
    expect(sumGraph(10, { ...honest, threshold: 9 })).toEqual({ threshold: 9, graph: 'complete' });
    expect(sumGraph(200, { ...honest, graph: 'harary', k: 8, threshold: 5 })).toMatchObject({
      graph: 'harary',
      k: 8,
      threshold: 5,
    });
  });

  it('refuses fewer than two sites and a threshold above the sites', () => {
    expect(() => sumGraph(1, honest)).toThrow('it needs at least 2 sites; 1 selected');
    expect(() => sumGraph(4, { ...honest, threshold: 5 })).toThrow(
      'threshold 5 is larger than the 4 selected sites',
    );
  });
});
