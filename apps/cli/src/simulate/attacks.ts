import { seededRandom } from '@confide/ml/spec';
import { NOISE_FACTOR, SCALE_FACTOR, SIGN_FLIP_FACTOR, type AttackKind } from './settings';

/**
 * The adversarial update a Byzantine site sends in place of its honest `delta` (the site trains
 * honestly first, so its attack is sized like a real update). `seed` drives the noise.
 *
 * @example
 * attackUpdate('sign-flip', delta, 0); // delta x -10
 */
export function attackUpdate(kind: AttackKind, delta: Float32Array, seed: number): Float32Array {
  switch (kind) {
    case 'scale':
      return delta.map((x) => x * SCALE_FACTOR);
    case 'sign-flip':
      return delta.map((x) => x * SIGN_FLIP_FACTOR);
    case 'noise': {
      let sq = 0;
      for (const x of delta) sq += x * x;
      const sd = NOISE_FACTOR * Math.sqrt(sq / Math.max(1, delta.length));
      const rng = seededRandom(seed);
      return delta.map(() => sd * gaussian(rng));
    }
  }
}

function gaussian(rng: () => number): number {
  return Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng());
}
