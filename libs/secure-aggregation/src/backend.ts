import {
  createPrivateKey,
  createPublicKey,
  diffieHellman,
  randomFillSync,
  sign as nodeSign,
  verify as nodeVerify,
  type KeyObject,
} from 'node:crypto';
import nacl from 'tweetnacl';
import { SecAggError } from './errors';

/** A prepared X25519 secret key: agreement with any number of peers. */
export interface X25519Secret {
  /** The public key of this secret (32 bytes). */
  readonly publicKey: Uint8Array;
  /** The 32-byte shared secret with `peerPublicKey`; throws BAD_KEY for a low-order peer key. */
  agree(peerPublicKey: Uint8Array): Uint8Array;
  /** Zeroes the copy of the secret key held by this object. */
  destroy(): void;
}

/** A fresh X25519 key pair from x25519Generate: the prepared secret and, when asked for, its bytes. */
export interface GeneratedX25519 {
  secret: X25519Secret;
  /** The 32-byte secret key (for Shamir sharing); only with x25519Generate(true). The caller wipes it. */
  secretKey?: Uint8Array;
}

/**
 * The asymmetric primitives of the protocol. Two implementations give byte-identical results:
 * tweetnacl (the portable reference) and node:crypto (OpenSSL; 10-40x faster, the default).
 */
export interface CryptoBackend {
  readonly name: 'nacl' | 'node';
  /** Prepares a 32-byte X25519 secret key (clamped as RFC 7748 and nacl.scalarMult do). */
  x25519(secretKey: Uint8Array): X25519Secret;
  /**
   * A fresh X25519 key pair from the CSPRNG; with `exportSecret`, also the secret key bytes. Same as
   * x25519(randomBytes(32)) (node:crypto imports fresh CSPRNG bytes as a raw key; see
   * x25519Generate there for why it does not let OpenSSL generate the pair).
   */
  x25519Generate(exportSecret: boolean): GeneratedX25519;
  /** Verifies a detached Ed25519 signature; false (never a throw) for any malformed input. */
  ed25519Verify(message: Uint8Array, signature: Uint8Array, publicKey: Uint8Array): boolean;
  /**
   * The detached Ed25519 signature (64 bytes) of `message` under a 64-byte tweetnacl secret key
   * (seed then public key). Ed25519 is deterministic: both backends give the same bytes.
   */
  ed25519Sign(message: Uint8Array, secretKey: Uint8Array): Uint8Array;
}

function checkSignKey(secretKey: Uint8Array): void {
  if (!(secretKey instanceof Uint8Array) || secretKey.length !== 64) {
    throw new SecAggError('BAD_INPUT', 'an Ed25519 secret key must be 64 bytes (tweetnacl layout)');
  }
}

// Ed25519 group order L, little-endian: signatures with S >= L are refused by both backends (OpenSSL
// does, tweetnacl does not), so the two accept exactly the same signatures.
const L = Uint8Array.from([
  0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14, 0,
  0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10,
]);

function isCanonicalScalar(s: Uint8Array): boolean {
  for (let i = 31; i >= 0; i--) {
    const a = s[i] ?? 0;
    const b = L[i] ?? 0;
    if (a < b) return true;
    if (a > b) return false;
  }
  return false;
}

function wellFormedSignature(signature: Uint8Array, publicKey: Uint8Array): boolean {
  return (
    signature instanceof Uint8Array &&
    publicKey instanceof Uint8Array &&
    signature.length === 64 &&
    publicKey.length === 32 &&
    isCanonicalScalar(signature.subarray(32))
  );
}

function checkSecret(secretKey: Uint8Array): void {
  if (!(secretKey instanceof Uint8Array) || secretKey.length !== 32) {
    throw new SecAggError('BAD_INPUT', 'an X25519 secret key must be 32 bytes');
  }
}

function checkShared(shared: Uint8Array): Uint8Array {
  let acc = 0;
  for (const b of shared) acc |= b;
  if (acc === 0) {
    throw new SecAggError('BAD_KEY', 'X25519 agreement gave zero: the peer key has low order');
  }
  return shared;
}

function checkPeer(peer: Uint8Array): void {
  if (!(peer instanceof Uint8Array) || peer.length !== 32) {
    throw new SecAggError('BAD_KEY', 'an X25519 public key must be 32 bytes');
  }
}

/**
 * The tweetnacl backend: the reference implementation (`nacl.scalarMult`, `nacl.sign.detached.verify`).
 *
 * @example
 * const s = naclBackend.x25519(nacl.randomBytes(32)); s.agree(peerPublicKey);
 */
export const naclBackend: CryptoBackend = {
  name: 'nacl',
  x25519(secretKey) {
    checkSecret(secretKey);
    const sk = Uint8Array.from(secretKey);
    let live = true;
    return {
      publicKey: nacl.scalarMult.base(sk),
      agree(peer) {
        checkPeer(peer);
        if (!live) throw new SecAggError('WRONG_STATE', 'key destroyed');
        return checkShared(nacl.scalarMult(sk, peer));
      },
      destroy() {
        sk.fill(0);
        live = false;
      },
    };
  },
  x25519Generate(exportSecret) {
    const sk = nacl.randomBytes(32);
    const secret = naclBackend.x25519(sk);
    if (exportSecret) return { secret, secretKey: sk };
    sk.fill(0);
    return { secret };
  },
  ed25519Verify(message, signature, publicKey) {
    if (!wellFormedSignature(signature, publicKey)) return false;
    try {
      return nacl.sign.detached.verify(message, signature, publicKey);
    } catch {
      return false;
    }
  },
  ed25519Sign(message, secretKey) {
    checkSignKey(secretKey);
    return nacl.sign.detached(message, secretKey);
  },
};

// SubjectPublicKeyInfo DER of an X25519 public key: this prefix, then the 32 key bytes.
const SPKI_X25519 = Uint8Array.from([
  0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00,
]);

/** The raw 32 bytes of an X25519 public KeyObject. */
function rawX25519PublicKey(pub: KeyObject): Uint8Array {
  const der = pub.export({ format: 'der', type: 'spki' });
  const prefix = der.subarray(0, SPKI_X25519.length);
  if (der.length !== SPKI_X25519.length + 32 || !prefix.equals(SPKI_X25519)) {
    throw new SecAggError('BAD_KEY', 'unexpected SPKI encoding of an X25519 public key');
  }
  return Uint8Array.from(der.subarray(SPKI_X25519.length));
}

// Imported public keys, by key bytes. Public data only (never secret keys), bounded.
const MAX_CACHED = 1 << 16;
const x25519Peers = new Map<string, KeyObject>();
const ed25519Keys = new Map<string, KeyObject>();

function cached(
  cache: Map<string, KeyObject>,
  key: Uint8Array,
  crv: 'X25519' | 'Ed25519',
): KeyObject {
  const id = Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('base64url');
  let obj = cache.get(id);
  if (obj === undefined) {
    obj = createPublicKey({ key: { kty: 'OKP', crv, x: id }, format: 'jwk' });
    if (cache.size >= MAX_CACHED) cache.clear();
    cache.set(id, obj);
  }
  return obj;
}

/**
 * The node:crypto (OpenSSL) backend: same results as tweetnacl, much faster. KeyObjects cannot be
 * zeroed from JavaScript; OpenSSL cleanses X25519 key material when they are collected.
 *
 * @example
 * const s = nodeBackend.x25519(randomBytes(32)); s.agree(peerPublicKey);
 */
export const nodeBackend: CryptoBackend = {
  name: 'node',
  x25519(secretKey) {
    checkSecret(secretKey);
    return nodeSecret(importPrivate(secretKey, 'X25519'), null);
  },
  x25519Generate(exportSecret) {
    // Fresh bytes imported as PKCS#8, not generateKeyPairSync: on Node 20 a key-generation job
    // collected while another call holds its key's lock (an export that allocates) deadlocks the
    // process in the garbage collector (~KeyGenJob waits for the lock its own thread holds).
    const secretKey = randomFillSync(new Uint8Array(32));
    try {
      const secret = this.x25519(secretKey);
      return exportSecret ? { secret, secretKey: Uint8Array.from(secretKey) } : { secret };
    } finally {
      secretKey.fill(0);
    }
  },
  ed25519Verify(message, signature, publicKey) {
    if (!wellFormedSignature(signature, publicKey)) return false;
    try {
      return nodeVerify(null, message, cached(ed25519Keys, publicKey, 'Ed25519'), signature);
    } catch {
      return false;
    }
  },
  ed25519Sign(message, secretKey) {
    checkSignKey(secretKey);
    const key = importPrivate(secretKey.subarray(0, 32), 'Ed25519', secretKey.subarray(32));
    const sig = nodeSign(null, message, key);
    return new Uint8Array(sig.buffer, sig.byteOffset, sig.byteLength);
  },
};

/**
 * A private KeyObject from its 32 raw bytes, imported as a JWK: Node hands `d` straight to OpenSSL's
 * raw-key constructor, where a PKCS#8 import goes through the DER decoder at ten to twenty times
 * the cost (bench/secagg/kernels.bench.ts prints both). Node requires `x` to be a string but reads only `d` for
 * a private key; the public key is derived from the private one where it is not given. The base64
 * text of the secret cannot be wiped (as the hex text Shamir sharing parses cannot): it is left to
 * the collector, like the KeyObject's own copy.
 */
function importPrivate(
  secret: Uint8Array,
  crv: 'X25519' | 'Ed25519',
  publicKey?: Uint8Array,
): KeyObject {
  const b64 = (b: Uint8Array): string =>
    Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64url');
  return createPrivateKey({
    key: { kty: 'OKP', crv, d: b64(secret), x: publicKey ? b64(publicKey) : '' },
    format: 'jwk',
  });
}

/** An X25519Secret over an OpenSSL private key (its public key derived from it). */
function nodeSecret(key: KeyObject, pub: KeyObject | null): X25519Secret {
  let privateKey: KeyObject | undefined = key;
  return {
    publicKey: rawX25519PublicKey(pub ?? createPublicKey(key)),
    agree(peer) {
      checkPeer(peer);
      if (privateKey === undefined) throw new SecAggError('WRONG_STATE', 'key destroyed');
      try {
        const shared = diffieHellman({
          privateKey,
          publicKey: cached(x25519Peers, peer, 'X25519'),
        });
        return checkShared(new Uint8Array(shared.buffer, shared.byteOffset, shared.byteLength));
      } catch (e) {
        if (e instanceof SecAggError) throw e;
        throw new SecAggError('BAD_KEY', 'X25519 agreement failed: the peer key has low order');
      }
    },
    destroy() {
      privateKey = undefined;
    },
  };
}

/**
 * The backend used when none is given: node:crypto.
 *
 * @example
 * new SecAggClient({ ...options, backend: naclBackend }); // opt into the reference instead
 */
export const defaultBackend: CryptoBackend = nodeBackend;
