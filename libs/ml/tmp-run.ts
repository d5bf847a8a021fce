import * as tf from '@tensorflow/tfjs';
import * as ml from './src/index';
await tf.setBackend('cpu');
const ds = await ml.loadCsv('../../datasets/breast-cancer-wisconsin.csv', { label: 'diagnosis' });
console.log(ds.numRows, ds.numFeatures);
const { train, test } = ml.stratifiedSplit(ds, 0.2, 1);
console.log(train.numRows, test.numRows, test.labels.reduce((a,b)=>a+b,0));
const stats = ml.combineFeatureStats([ml.featureStatsPartial(train)]);
const tr = ml.standardize(train, stats), te = ml.standardize(test, stats);
for (const [opt, lr] of [['adam', 0.05], ['sgd', 0.1], ['adam', 0.01]] as const) {
  const spec = ml.parseModelSpec({ kind: 'logistic', inputDim: 30 });
  const model = ml.buildModel(spec);
  const before = tf.memory().numTensors;
  const t0 = performance.now();
  const r = await ml.trainModel(model, spec, tr, { epochs: 20, batchSize: 32, learningRate: lr, optimizer: opt, shuffleSeed: 1 });
  const dt = performance.now() - t0;
  console.log(opt, lr, r, 'leak', tf.memory().numTensors - before, (20 * tr.numRows / dt * 1000).toFixed(0), 'samples/s', await ml.evaluateModel(model, spec, te));
  model.dispose();
}
