import { createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';

// DER prefixes of an Ed25519 key in PKCS#8 (secret seed) and SPKI (public key), RFC 8410.
export const PKCS8_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');
export const SPKI_PREFIX = Buffer.from('302a300506032b6570032100', 'hex');

/**
 * A node:crypto key object for a 32-byte Ed25519 public key.
 * @example ed25519PublicKey(fromBase64(site.publicKey, 32))
 */
export function ed25519PublicKey(publicKey: Uint8Array): KeyObject {
  return createPublicKey({
    key: Buffer.concat([SPKI_PREFIX, publicKey]),
    format: 'der',
    type: 'spki',
  });
}

/**
 * A detached Ed25519 signature (node:crypto: the aggregator checks every login, and tweetnacl's
 * pure-JS verify costs it ~50 times as much CPU); the same bytes tweetnacl's sign.detached makes.
 * `secretKey` is tweetnacl's 64-byte form (seed, then public key).
 * @example ed25519Sign(bytes, fromBase64(identity.secretKey, 64)) // 64 bytes
 */
export function ed25519Sign(bytes: Uint8Array, secretKey: Uint8Array): Uint8Array {
  const seed = Buffer.concat([PKCS8_PREFIX, secretKey.subarray(0, 32)]);
  try {
    return sign(null, bytes, createPrivateKey({ key: seed, format: 'der', type: 'pkcs8' }));
  } finally {
    seed.fill(0);
  }
}

/**
 * Whether `signature` is `publicKey`'s Ed25519 signature over `bytes`; false (never a throw) on
 * malformed keys or signatures.
 * @example ed25519Verify(bytes, signature, publicKey)
 */
export function ed25519Verify(
  bytes: Uint8Array,
  signature: Uint8Array,
  publicKey: Uint8Array,
): boolean {
  if (signature.length !== 64 || publicKey.length !== 32) return false;
  try {
    return verify(null, bytes, ed25519PublicKey(publicKey), signature);
  } catch {
    return false;
  }
}
