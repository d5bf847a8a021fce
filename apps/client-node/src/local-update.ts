import type * as tf from '@tensorflow/tfjs';
import {
  getModelWeights,
  setModelWeights,
  trainModel,
  trainModelDpSgd,
  type Dataset,
  type ModelSpec,
} from '@confide/ml';
import { subtract } from '@confide/federated';
import { assertFinite, type MessageOf, type ServerMessage } from '@confide/protocol';
import type { MechanismParams } from '@confide/privacy-ledger';
import type { Progress } from './progress';

type TrainMsg = MessageOf<ServerMessage, 'round.train'>;

/**
 * One round of local training from the global model: the site's raw update (local minus global).
 * Record-level DP happens here (DP-SGD); site-level clipping and noise are mods
 * (@confide/site-runtime) that the update goes through afterwards.
 */
export async function trainLocalUpdate(a: {
  model: tf.LayersModel;
  spec: ModelSpec;
  train: Dataset;
  global: Float32Array;
  msg: TrainMsg;
  /** The round's release as the site accounts it; null without DP. */
  mechanism: MechanismParams | null;
  progress: Progress;
}): Promise<{ local: Float32Array; update: Float32Array; loss: number }> {
  const { model, spec, train, global, msg, mechanism, progress } = a;
  assertFinite(global, 'global model');
  setModelWeights(model, global);
  const onBatchEnd = (b: {
    epoch: number;
    batch: number;
    batchesPerEpoch: number;
    loss: number;
  }): void =>
    progress.epoch({
      round: msg.round,
      epoch: b.epoch + 1,
      epochs: msg.train.epochs,
      batch: b.batch + 1,
      batches: b.batchesPerEpoch,
      loss: b.loss,
    });
  const result =
    msg.privacy?.level === 'record' && mechanism
      ? await trainModelDpSgd(model, spec, train, {
          epochs: msg.train.epochs,
          samplingRate: mechanism.samplingRate,
          learningRate: msg.train.learningRate,
          clipNorm: msg.privacy.clipNorm,
          noiseMultiplier: msg.privacy.noiseMultiplier,
          optimizer: msg.train.optimizer,
          onStep: (s) => {
            const perEpoch = s.steps / msg.train.epochs;
            onBatchEnd({
              epoch: Math.floor(s.step / perEpoch),
              batch: s.step % perEpoch,
              batchesPerEpoch: perEpoch,
              loss: s.loss,
            });
          },
        })
      : await trainModel(model, spec, train, {
          epochs: msg.train.epochs,
          batchSize: msg.train.batchSize,
          learningRate: msg.train.learningRate,
          optimizer: msg.train.optimizer,
          proximalMu: msg.train.proximalMu,
          shuffleSeed: msg.round,
          onBatchEnd,
        });
  progress.done();
  const local = getModelWeights(model);
  return { local, update: subtract(local, global), loss: result.loss };
}
