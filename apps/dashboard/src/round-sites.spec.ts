import { describe, expect, it } from 'vitest';
import { roundSites } from './round-sites';
import type { Participant } from './types';

const part = (name: string, status: string): Participant => ({ siteId: name, name, status });

describe('roundSites', () => {
  it('counts the sites whose update counted', () => {
    const cell = roundSites({
      participants: [part('a', 'submitted'), part('b', 'evaluated'), part('c', 'dropped')],
      metrics: { trainLoss: null, evaluation: null, bytesReceived: 0 },
    });
    expect(cell.text).toBe('2/3');
    expect(cell.title).toBe('a: submitted\nb: evaluated\nc: dropped');
  });

  it("shows the aggregator's draw when the round sampled its sites", () => {
    const cell = roundSites({
      participants: [part('a', 'submitted'), part('b', 'submitted')],
      metrics: {
        trainLoss: null,
        evaluation: null,
        bytesReceived: 0,
        sampling: { fraction: 0.4, connected: 5, sampled: 2 },
      },
    });
    expect(cell.text).toBe('2/2 · drawn of 5');
    expect(cell.title.split('\n')[0]).toBe('drawn 2 of 5 connected site(s) (fraction 0.4)');
  });
});
