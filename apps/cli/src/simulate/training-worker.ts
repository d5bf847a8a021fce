// One training thread of `confide simulate`: it loads tfjs once (the backend the client node picks
// on this machine), keeps the current run's site partitions and test set, and answers train and
// evaluate tasks from the pool (training-pool.ts) one at a time, in the order they came.
import { parentPort } from 'node:worker_threads';
import type * as tf from '@tensorflow/tfjs';
import {
  buildModel,
  evaluateModel,
  getModelWeights,
  setModelWeights,
  trainModel,
  type ModelSpec,
} from '@confide/ml';
import { subtract } from '@confide/federated';
// The backend choice alone, not the whole client node: every worker of the pool pays for its imports.
import { selectBackend } from '../../../client-node/src/backend';
import type { PoolReply, PoolRequest, RunData } from './pool-messages';

const port = parentPort;
if (!port) throw new Error('training-worker.ts runs as a worker thread of the simulation pool');

let run: RunData | null = null;
const models = new Map<string, tf.LayersModel>();

function modelFor(spec: ModelSpec): tf.LayersModel {
  const key = JSON.stringify(spec);
  let model = models.get(key);
  if (!model) {
    for (const old of models.values()) old.dispose();
    models.clear();
    model = buildModel(spec);
    models.set(key, model);
  }
  return model;
}

async function handle(req: PoolRequest): Promise<PoolReply | null> {
  switch (req.type) {
    case 'data':
      run = req.data;
      return null;
    case 'train': {
      const data = currentRun(req.runId);
      const site = data.sites[req.site];
      if (!site) throw new Error(`no site ${req.site} in this run`);
      const model = modelFor(data.spec);
      setModelWeights(model, req.weights);
      const result = await trainModel(model, data.spec, site, {
        epochs: req.epochs,
        batchSize: req.batchSize,
        learningRate: req.learningRate,
        optimizer: 'adam',
        shuffleSeed: req.shuffleSeed,
        ...(req.proximalMu !== undefined ? { proximalMu: req.proximalMu } : {}),
      });
      const delta = subtract(getModelWeights(model), req.weights);
      return {
        type: 'trained',
        id: req.id,
        delta,
        loss: result.loss,
        numExamples: result.numExamples,
      };
    }
    case 'evaluate': {
      const data = currentRun(req.runId);
      const model = modelFor(data.spec);
      setModelWeights(model, req.weights);
      const m = await evaluateModel(model, data.spec, data.test);
      return {
        type: 'evaluated',
        id: req.id,
        metrics: { loss: m.loss, accuracy: m.accuracy, auc: m.auc, f1: m.f1 },
      };
    }
  }
}

function currentRun(runId: number): RunData {
  if (!run || run.runId !== runId) throw new Error(`the data of run ${runId} was never sent`);
  return run;
}

const ready = selectBackend('auto');
let queue = Promise.resolve();
port.on('message', (req: PoolRequest) => {
  queue = queue.then(async () => {
    try {
      await ready;
      const reply = await handle(req);
      if (reply)
        port.postMessage(
          reply,
          reply.type === 'trained' ? [reply.delta.buffer as ArrayBuffer] : [],
        );
    } catch (e) {
      const id = req.type === 'data' ? -1 : req.id;
      port.postMessage({ type: 'failed', id, error: e instanceof Error ? e.message : String(e) });
    }
  });
});
ready.then(
  (b) => port.postMessage({ type: 'ready', backend: b.backend } satisfies PoolReply),
  (e: unknown) =>
    port.postMessage({
      type: 'failed',
      id: -1,
      error: `no tfjs backend: ${e instanceof Error ? e.message : String(e)}`,
    } satisfies PoolReply),
);
