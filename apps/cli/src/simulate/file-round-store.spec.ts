import { mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { RoundRecord } from '@confide/federated';
import { FileRoundStore } from './file-round-store';

const record = (round: number, status: RoundRecord['status'] = 'running'): RoundRecord => ({
  round,
  startedAt: 1000 * round,
  endedAt: null,
  status,
  reason: null,
  participants: [{ siteId: 'site-001', status: 'selected' }],
  sampling: null,
  trainLoss: null,
  evaluation: null,
});

const state = {
  format: 'confide.strategy-state/1' as const,
  strategy: 'fedavgm',
  steps: 1,
  vectors: {},
};

let dir: string;
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'confide-store-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('FileRoundStore', () => {
  it('a reopened store has the committed model, its strategy state and every record', async () => {
    const store = await FileRoundStore.open(dir, new Float32Array([0, 0, 0]));
    await store.begin(record(1));
    await store.commit(
      { ...record(1), status: 'committed', endedAt: 1500 },
      { round: 1, weights: new Float32Array([1.5, -2, 3.25]), strategyState: state },
    );
    await store.begin(record(2));

    const again = await FileRoundStore.open(dir, new Float32Array(3));
    const head = await again.head();
    expect(head.round).toBe(1);
    expect([...head.weights]).toEqual([1.5, -2, 3.25]);
    expect(head.strategyState).toEqual(state);
    expect((await again.rounds()).map((r) => [r.round, r.status])).toEqual([
      [1, 'committed'],
      [2, 'running'],
    ]);
    expect((await again.unfinished())?.round).toBe(2);
    // One weights file, the committed model's; no temporary files left.
    expect((await readdir(dir)).sort()).toEqual(['model-000001.f32', 'rounds.json']);
  });

  it('refuses a round that is not after the last, and a model of another size', async () => {
    const store = await FileRoundStore.open(dir, new Float32Array(4));
    await store.begin(record(1));
    await expect(store.begin(record(1))).rejects.toThrow('round 1 is not after round 1');
    await expect(FileRoundStore.open(dir, new Float32Array(5))).rejects.toThrow(
      'the stored model has 4 weights; this model has 5',
    );
  });

  it('refuses a directory whose index it did not write', async () => {
    await writeFile(join(dir, 'rounds.json'), '{"format":"something else"}');
    await expect(FileRoundStore.open(dir, new Float32Array(2))).rejects.toThrow(
      'rounds.json is not a simulation store (written by confide simulate --data-dir)',
    );
  });
});
