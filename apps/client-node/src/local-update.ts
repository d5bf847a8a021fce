import { randomInt } from 'node:crypto';
import type * as tf from '@tensorflow/tfjs';
import {
  getModelWeights,
  setModelWeights,
  trainModel,
  trainModelDpSgd,
  type Dataset,
  type ModelSpec,
} from '@confide/ml';
import { applyTransforms, subtract, type UpdateTransform } from '@confide/federated';
import { assertFinite, type MessageOf, type ServerMessage } from '@confide/protocol';
import { addGaussianNoise, clipL2 } from '@confide/differential-privacy';
import type { MechanismParams } from '@confide/privacy-ledger';
import type { Progress } from './progress';

type TrainMsg = MessageOf<ServerMessage, 'round.train'>;

/**
 * One round of local training from the global model: the site's update (local minus global), clipped
 * and noised as the round's DP asks (record level: DP-SGD; site level: DP-FedAvg's clip, and all of
 * the noise when there is no secure aggregation to share it), then the site's own transforms.
 */
export async function trainLocalUpdate(a: {
  model: tf.LayersModel;
  spec: ModelSpec;
  train: Dataset;
  global: Float32Array;
  msg: TrainMsg;
  /** The round's release as the site accounts it; null without DP. */
  mechanism: MechanismParams | null;
  /** The record count the site declares (its transforms see it). */
  declaredRows: number;
  federationId: string;
  transforms: UpdateTransform[];
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
  let rawUpdate = subtract(local, global);
  if (msg.privacy?.level === 'site') {
    // DP-FedAvg: clip the whole update to C. With self-sampling the site's own coin decides
    // whether the update takes part; when it says no the site sends a zero update (and its noise),
    // indistinguishable from taking part, so its amplification is earned. Without secure
    // aggregation the aggregator sees this update alone: all of the noise, z*C, is added here.
    // Under secure aggregation a share for the t survivors is added in the integer domain later.
    rawUpdate = clipL2(rawUpdate, msg.privacy.clipNorm).clipped;
    const q = msg.privacy.siteSamplingRate ?? 1;
    if (q < 1 && randomInt(0, 2 ** 32) / 2 ** 32 >= q) rawUpdate.fill(0);
    if (!msg.secureAggregation) {
      rawUpdate = addGaussianNoise(rawUpdate, msg.privacy.noiseMultiplier * msg.privacy.clipNorm);
    }
  }
  const update = await applyTransforms(rawUpdate, a.transforms, {
    federationId: a.federationId,
    runId: msg.runId,
    round: msg.round,
    numExamples: a.declaredRows,
  });
  assertFinite(update, 'update');
  return { local, update, loss: result.loss };
}
