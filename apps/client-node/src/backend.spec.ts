import * as tf from '@tensorflow/tfjs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  buildModel,
  combineFeatureStats,
  evaluateModel,
  featureStatsPartial,
  loadCsv,
  standardize,
  stratifiedSplit,
  trainModel,
  type ModelSpec,
} from '@confide/ml';
import { selectBackend } from './backend';

const spec: ModelSpec = { kind: 'logistic', inputDim: 30 };

/** Trains the breast-cancer logistic model on the active backend and returns its test accuracy. */
async function breastCancerAccuracy(): Promise<number> {
  const bc = await loadCsv(
    join(import.meta.dirname, '../../../datasets/breast-cancer-wisconsin.csv'),
    {
      label: 'diagnosis',
    },
  );
  const { train, test } = stratifiedSplit(bc, 0.2, 1);
  const stats = combineFeatureStats([featureStatsPartial(train)]);
  const model = buildModel(spec);
  await trainModel(model, spec, standardize(train, stats), {
    epochs: 10,
    batchSize: 32,
    learningRate: 0.01,
  });
  const { accuracy } = await evaluateModel(model, spec, standardize(test, stats));
  model.dispose();
  return accuracy;
}

describe('selectBackend', () => {
  it('activates the cpu backend and trains on it', async () => {
    const selected = await selectBackend('cpu');
    expect(selected.backend).toBe('cpu');
    expect(tf.getBackend()).toBe('cpu');
    expect(await breastCancerAccuracy()).toBeGreaterThanOrEqual(0.95);
  });

  it('activates the wasm backend from the package binaries and trains on it', async () => {
    const logs: string[] = [];
    const selected = await selectBackend('wasm', (m) => logs.push(m));
    expect(selected.backend).toBe('wasm');
    expect(selected.detail).toMatch(
      /^WebAssembly \(SIMD on, threads off\), binaries from .*tfjs-backend-wasm[/\\]dist$/,
    );
    expect(tf.getBackend()).toBe('wasm');
    expect(logs).toEqual([`tfjs backend: wasm, ${selected.detail}`]);
    expect(await breastCancerAccuracy()).toBeGreaterThanOrEqual(0.95);
  });

  it('is idempotent and can switch back and forth', async () => {
    const first = await selectBackend('wasm');
    expect(await selectBackend('wasm')).toBe(first);
    await selectBackend('cpu');
    expect(tf.getBackend()).toBe('cpu');
    expect((await selectBackend('wasm')).backend).toBe('wasm'); // setWasmPaths is not called twice
    expect(tf.getBackend()).toBe('wasm');
  });

  it('fails clearly, without falling back, when tfjs-node-gpu is not installed', async () => {
    await selectBackend('cpu');
    await expect(selectBackend('tfjs-node-gpu')).rejects.toThrow(
      'backend "tfjs-node-gpu" is not available: cannot load @tensorflow/tfjs-node-gpu (not installed). ' +
        `Install it with \`npm install @tensorflow/tfjs-node-gpu@${tf.version.tfjs}\``,
    );
    await expect(selectBackend('tfjs-node')).rejects.toThrow('npm install @tensorflow/tfjs-node@');
    expect(tf.getBackend()).toBe('cpu');
  });

  it('picks the first backend that loads for auto, logging the ones it skips', async () => {
    const logs: string[] = [];
    const selected = await selectBackend('auto', (m) => logs.push(m));
    expect(selected.backend).toBe('wasm');
    expect(logs).toEqual([
      'tfjs backend tfjs-node-gpu skipped: not installed',
      'tfjs backend tfjs-node skipped: not installed',
      `tfjs backend: wasm, ${selected.detail}`,
    ]);
    expect(await selectBackend('auto')).toBe(selected);
  });

  it('rejects an unknown preference', async () => {
    await expect(selectBackend('webgpu' as 'cpu')).rejects.toThrow(
      'unknown backend "webgpu": choose one of auto, tfjs-node-gpu, tfjs-node, wasm, cpu',
    );
  });
});
