import nacl from 'tweetnacl';
import { ed25519Sign, ed25519Verify } from './ed25519';
import { fromBase64, toBase64 } from './encoding';

/** An Ed25519 identity key pair (tweetnacl `sign`), keys in base64. */
export interface IdentityKeyPair {
  publicKey: string;
  secretKey: string;
}

/** Makes a fresh Ed25519 identity key pair from tweetnacl's CSPRNG. */
export function generateIdentity(): IdentityKeyPair {
  const kp = nacl.sign.keyPair();
  return { publicKey: toBase64(kp.publicKey), secretKey: toBase64(kp.secretKey) };
}

/**
 * The key pair of a base64 Ed25519 secret key (tweetnacl's 64-byte form, as a key file holds it).
 * Throws when it is not one, or when its public half does not match its seed (a damaged file).
 * @example identityFromSecretKey(generateIdentity().secretKey).publicKey // base64, 32 bytes
 */
export function identityFromSecretKey(secretKey: string): IdentityKeyPair {
  const secret = fromBase64(secretKey, nacl.sign.secretKeyLength);
  const kp = nacl.sign.keyPair.fromSeed(secret.subarray(0, 32));
  if (!Buffer.from(kp.secretKey).equals(Buffer.from(secret))) {
    throw new Error('inconsistent Ed25519 key (its public half does not match)');
  }
  return { publicKey: toBase64(kp.publicKey), secretKey };
}

/**
 * The exact bytes a site signs to log in: bound to the server's id and identity key (the one the
 * site pinned), this connection's nonce, the federation and the site's key itself, so a signature is
 * useless on another server, connection or federation.
 */
export function loginChallengeBytes(
  serverId: string,
  nonce: string,
  federationId: string,
  publicKey: string,
  serverKey: string,
): Uint8Array {
  return new TextEncoder().encode(
    ['confide/login/v2', serverId, serverKey, nonce, federationId, publicKey].join('\n'),
  );
}

/** Signs a login challenge with the site's secret key; returns the base64 detached signature. */
export function signLogin(
  identity: IdentityKeyPair,
  serverId: string,
  nonce: string,
  federationId: string,
  serverKey: string,
): string {
  const msg = loginChallengeBytes(serverId, nonce, federationId, identity.publicKey, serverKey);
  const secretKey = fromBase64(identity.secretKey, nacl.sign.secretKeyLength);
  try {
    return toBase64(ed25519Sign(msg, secretKey));
  } finally {
    secretKey.fill(0);
  }
}

/** Verifies a login signature; false (never a throw) on any malformed input. */
export function verifyLogin(
  publicKey: string,
  signature: string,
  serverId: string,
  nonce: string,
  federationId: string,
  serverKey: string,
): boolean {
  try {
    const pk = fromBase64(publicKey, nacl.sign.publicKeyLength);
    const sig = fromBase64(signature, nacl.sign.signatureLength);
    return ed25519Verify(
      loginChallengeBytes(serverId, nonce, federationId, publicKey, serverKey),
      sig,
      pk,
    );
  } catch {
    return false;
  }
}

/** True when `text` is a canonical base64 Ed25519 public key. */
export function isPublicKey(text: string): boolean {
  try {
    fromBase64(text, nacl.sign.publicKeyLength);
    return true;
  } catch {
    return false;
  }
}

/** A short, stable fingerprint of a public key for people to compare (first 16 hex of SHA-512). */
export function keyFingerprint(publicKey: string): string {
  return Buffer.from(nacl.hash(fromBase64(publicKey)))
    .toString('hex')
    .slice(0, 16);
}
