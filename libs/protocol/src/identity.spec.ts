import fc from 'fast-check';
import nacl from 'tweetnacl';
import { describe, expect, it } from 'vitest';
import {
  fromBase64,
  generateIdentity,
  identityFromSecretKey,
  isPublicKey,
  type IdentityKeyPair,
  keyFingerprint,
  loginChallengeBytes,
  signLogin,
  toBase64,
  verifyLogin,
} from './index';

const SERVER = 'confide-7a1c';
const NONCE = toBase64(new Uint8Array(32).fill(7));
const FED = '6f1d2a90-1b7e-4c3a-9d0e-2f4b5c6d7e8f';
const SERVER_KEY = seededIdentity(9).publicKey;

/** A fixed key, so the signature's base64 is known to hold '+' and '/' (for the URL-safe case). */
function seededIdentity(seed: number): IdentityKeyPair {
  const kp = nacl.sign.keyPair.fromSeed(new Uint8Array(32).fill(seed));
  return { publicKey: toBase64(kp.publicKey), secretKey: toBase64(kp.secretKey) };
}

describe('login signatures', () => {
  const site = seededIdentity(1);
  const signature = signLogin(site, SERVER, NONCE, FED, SERVER_KEY);

  it('are deterministic Ed25519 signatures in padded base64', () => {
    expect(signature).toMatch(/^[A-Za-z0-9+/]{86}==$/);
    expect(signature).toMatch(/[+/]/);
    expect(signLogin(site, SERVER, NONCE, FED, SERVER_KEY)).toBe(signature);
  });

  it("are tweetnacl's signatures, and tweetnacl's verify as they do", () => {
    const bytes = loginChallengeBytes(SERVER, NONCE, FED, site.publicKey, SERVER_KEY);
    const secretKey = fromBase64(site.secretKey, 64);
    expect(toBase64(nacl.sign.detached(bytes, secretKey))).toBe(signature);
    const other = seededIdentity(2);
    const theirs = toBase64(nacl.sign.detached(bytes, fromBase64(other.secretKey, 64)));
    expect(verifyLogin(site.publicKey, theirs, SERVER, NONCE, FED, SERVER_KEY)).toBe(false);
    const forOther = loginChallengeBytes(SERVER, NONCE, FED, other.publicKey, SERVER_KEY);
    const good = toBase64(nacl.sign.detached(forOther, fromBase64(other.secretKey, 64)));
    expect(verifyLogin(other.publicKey, good, SERVER, NONCE, FED, SERVER_KEY)).toBe(true);
  });

  it('verify for the key, server, nonce and federation they were made for', () => {
    expect(verifyLogin(site.publicKey, signature, SERVER, NONCE, FED, SERVER_KEY)).toBe(true);
  });

  it('fail for another nonce', () => {
    const other = toBase64(new Uint8Array(32).fill(8));
    expect(verifyLogin(site.publicKey, signature, SERVER, other, FED, SERVER_KEY)).toBe(false);
  });

  it('fail for another server id', () => {
    expect(verifyLogin(site.publicKey, signature, 'confide-other', NONCE, FED, SERVER_KEY)).toBe(
      false,
    );
  });

  it('fail for another federation', () => {
    expect(
      verifyLogin(site.publicKey, signature, SERVER, NONCE, FED.replace(/f$/, 'e'), SERVER_KEY),
    ).toBe(false);
  });

  it("fail with another site's key, either way round", () => {
    const intruder = generateIdentity();
    expect(verifyLogin(intruder.publicKey, signature, SERVER, NONCE, FED, SERVER_KEY)).toBe(false);
    // The intruder signs but claims the site's key: the signed bytes name the intruder's key.
    const forged = signLogin(intruder, SERVER, NONCE, FED, SERVER_KEY);
    expect(verifyLogin(site.publicKey, forged, SERVER, NONCE, FED, SERVER_KEY)).toBe(false);
  });

  it('fail when any one bit of the signature is flipped', () => {
    const sig = fromBase64(signature, 64);
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 64 * 8 - 1 }), (bit) => {
        const flipped = Uint8Array.from(sig);
        flipped[bit >> 3] = flipped[bit >> 3]! ^ (1 << (bit & 7));
        expect(verifyLogin(site.publicKey, toBase64(flipped), SERVER, NONCE, FED, SERVER_KEY)).toBe(
          false,
        );
      }),
      { numRuns: 64 },
    );
  });

  it.each([
    ['an empty signature', '', null],
    ['a signature that is not base64', 'not base64!', null],
    ['an unpadded signature', signature.replace(/=+$/, ''), null],
    ['a signature of 63 bytes', toBase64(fromBase64(signature).subarray(0, 63)), null],
    ['a signature of 65 bytes', toBase64(new Uint8Array([...fromBase64(signature), 0])), null],
    ['a URL-safe signature', signature.replace(/\+/g, '-').replace(/\//g, '_'), null],
    ['a public key that is not base64', null, '%%%'],
    ['a public key of 31 bytes', null, toBase64(fromBase64(site.publicKey).subarray(0, 31))],
    ['the secret key as public key', null, site.secretKey],
  ])('return false, never throw, for %s', (_what, badSig, badKey) => {
    expect(() =>
      verifyLogin(badKey ?? site.publicKey, badSig ?? signature, SERVER, NONCE, FED, SERVER_KEY),
    ).not.toThrow();
    expect(
      verifyLogin(badKey ?? site.publicKey, badSig ?? signature, SERVER, NONCE, FED, SERVER_KEY),
    ).toBe(false);
  });

  it('return false for arbitrary strings as key and signature', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), (key, sig) => {
        expect(verifyLogin(key, sig, SERVER, NONCE, FED, SERVER_KEY)).toBe(false);
      }),
      { numRuns: 200 },
    );
  });

  // Buffer ignores non-zero padding bits ('QR==' and 'QQ==' decode alike); fromBase64 must not.
  it('fail for a non-canonical spelling of a valid signature (non-zero padding bits)', () => {
    const last = signature.length - 3; // the character holding 2 data bits and 4 padding bits
    const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
    const i = ALPHABET.indexOf(signature[last]!);
    const respelled = `${signature.slice(0, last)}${ALPHABET[i ^ 1]}==`;
    expect(verifyLogin(site.publicKey, respelled, SERVER, NONCE, FED, SERVER_KEY)).toBe(false);
  });

  it('bind the five values with separators, so shifting text between them changes the bytes', () => {
    const a = loginChallengeBytes('s', 'ab', 'c', 'k', 'K');
    const b = loginChallengeBytes('s', 'a', 'bc', 'k', 'K');
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(false);
    expect(new TextDecoder().decode(a)).toBe('confide/login/v2\ns\nK\nab\nc\nk');
  });

  it("fail for another server key (a signature made for one aggregator's key is useless with another)", () => {
    const other = seededIdentity(10).publicKey;
    expect(verifyLogin(site.publicKey, signature, SERVER, NONCE, FED, other)).toBe(false);
  });
});

describe('identities', () => {
  it('are fresh Ed25519 key pairs in canonical base64', () => {
    const a = generateIdentity();
    const b = generateIdentity();
    expect(a.publicKey).not.toBe(b.publicKey);
    expect(fromBase64(a.publicKey, 32)).toHaveLength(32);
    expect(fromBase64(a.secretKey, 64)).toHaveLength(64);
    expect(isPublicKey(a.publicKey)).toBe(true);
    expect(isPublicKey(a.secretKey)).toBe(false);
    expect(isPublicKey('')).toBe(false);
  });

  it('have a stable 16-hex-digit fingerprint that differs between keys', () => {
    const a = generateIdentity();
    expect(keyFingerprint(a.publicKey)).toMatch(/^[0-9a-f]{16}$/);
    expect(keyFingerprint(a.publicKey)).toBe(keyFingerprint(a.publicKey));
    expect(keyFingerprint(a.publicKey)).not.toBe(keyFingerprint(generateIdentity().publicKey));
  });

  it('are read back from their secret key, which must be whole and consistent', () => {
    const a = generateIdentity();
    expect(identityFromSecretKey(a.secretKey)).toEqual(a);
    expect(() => identityFromSecretKey(a.publicKey)).toThrow();
    // The seed of one key with the public half of another: a damaged key file.
    const b = generateIdentity();
    const mixed = new Uint8Array(64);
    mixed.set(fromBase64(a.secretKey, 64).subarray(0, 32));
    mixed.set(fromBase64(b.publicKey, 32), 32);
    expect(() => identityFromSecretKey(toBase64(mixed))).toThrow(/public half does not match/);
  });
});
