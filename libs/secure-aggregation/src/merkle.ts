import { SecAggError } from './errors';
import { sha256 } from './kdf';

/**
 * A Merkle tree over 32-byte leaves, so that a site can check that the few advertisements it uses
 * belong to the round's whole set without receiving the set. A level of odd length promotes its
 * last node unchanged; a proof lists the sibling hashes from the leaf up, skipping promoted levels,
 * so its length follows from the leaf's index and the number of leaves.
 */

const NODE_TAG = Uint8Array.of(1);

/** The parent of two nodes: SHA-256(0x01 || left || right); leaves are hashed with another tag. */
function parent(left: Uint8Array, right: Uint8Array): Uint8Array {
  return sha256(NODE_TAG, left, right);
}

/**
 * Every level of the tree, leaves first, root last.
 *
 * @example
 * const levels = merkleLevels(leaves); merkleRoot(levels); merkleProof(levels, 3);
 */
export function merkleLevels(leaves: readonly Uint8Array[]): Uint8Array[][] {
  if (leaves.length < 1) throw new SecAggError('BAD_INPUT', 'a Merkle tree needs a leaf');
  const levels: Uint8Array[][] = [[...leaves]];
  let level = levels[0] as Uint8Array[];
  while (level.length > 1) {
    const next: Uint8Array[] = [];
    for (let i = 0; i < level.length; i += 2) {
      const left = level[i] as Uint8Array;
      const right = level[i + 1];
      next.push(right === undefined ? left : parent(left, right));
    }
    levels.push(next);
    level = next;
  }
  return levels;
}

/** The root of a tree built by merkleLevels. */
export function merkleRoot(levels: readonly (readonly Uint8Array[])[]): Uint8Array {
  return (levels[levels.length - 1] as readonly Uint8Array[])[0] as Uint8Array;
}

/** The sibling hashes of leaf `index`, from the leaf up, concatenated (32 bytes each). */
export function merkleProof(levels: readonly (readonly Uint8Array[])[], index: number): Uint8Array {
  const leaves = levels[0] as readonly Uint8Array[];
  if (!Number.isSafeInteger(index) || index < 0 || index >= leaves.length) {
    throw new SecAggError('BAD_INPUT', 'Merkle leaf index out of range');
  }
  const out = new Uint8Array(32 * proofLength(index, leaves.length));
  let at = 0;
  let i = index;
  for (let l = 0; l < levels.length - 1; l++) {
    const level = levels[l] as readonly Uint8Array[];
    const sibling = i % 2 === 1 ? level[i - 1] : level[i + 1];
    if (sibling !== undefined) {
      out.set(sibling, at);
      at += 32;
    }
    i = Math.floor(i / 2);
  }
  return out;
}

/** How many sibling hashes the proof of leaf `index` of `n` holds. */
function proofLength(index: number, n: number): number {
  let count = 0;
  for (let i = index, m = n; m > 1; i = Math.floor(i / 2), m = Math.ceil(m / 2)) {
    if (i % 2 === 1 || i + 1 < m) count++;
  }
  return count;
}

/**
 * The root that `proof` leads to from `leaf` at `index` of `n` leaves; throws SUBSTITUTED_KEY when the
 * proof has the wrong length for that position (it cannot prove membership).
 *
 * @example
 * bytesEqual(merkleRootFrom(leaf, 3, 10, proof), root); // true for a member
 */
export function merkleRootFrom(
  leaf: Uint8Array,
  index: number,
  n: number,
  proof: Uint8Array,
): Uint8Array {
  if (
    !Number.isSafeInteger(n) ||
    n < 1 ||
    !Number.isSafeInteger(index) ||
    index < 0 ||
    index >= n
  ) {
    throw new SecAggError('BAD_INPUT', 'Merkle leaf index out of range');
  }
  if (proof.length !== 32 * proofLength(index, n)) {
    throw new SecAggError('SUBSTITUTED_KEY', 'a membership proof has the wrong length');
  }
  let node = leaf;
  let at = 0;
  for (let i = index, m = n; m > 1; i = Math.floor(i / 2), m = Math.ceil(m / 2)) {
    if (i % 2 === 1) {
      node = parent(proof.subarray(at, at + 32), node);
      at += 32;
    } else if (i + 1 < m) {
      node = parent(node, proof.subarray(at, at + 32));
      at += 32;
    }
  }
  return node;
}
