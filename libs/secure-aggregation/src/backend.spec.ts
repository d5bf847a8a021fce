import fc from 'fast-check';
import nacl from 'tweetnacl';
import { describe, expect, it } from 'vitest';
import { naclBackend, nodeBackend } from './backend';
import { isSecAggError } from './errors';

const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s, 'hex'));
const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const key32 = fc.uint8Array({ minLength: 32, maxLength: 32 });
const backends = [naclBackend, nodeBackend];

describe('X25519 (tweetnacl reference and node:crypto)', () => {
  it.each(backends.map((b) => [b.name, b] as const))(
    '%s matches RFC 7748 section 6.1',
    (_, backend) => {
      const alice = backend.x25519(
        hex('77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a'),
      );
      const bob = backend.x25519(
        hex('5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb'),
      );
      expect(toHex(alice.publicKey)).toBe(
        '8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a',
      );
      expect(toHex(bob.publicKey)).toBe(
        'de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f',
      );
      const shared = '4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742';
      expect(toHex(alice.agree(bob.publicKey))).toBe(shared);
      expect(toHex(bob.agree(alice.publicKey))).toBe(shared);
    },
  );

  it('gives identical public keys and shared secrets with node:crypto and nacl.scalarMult', () => {
    fc.assert(
      fc.property(key32, key32, (sk, peer) => {
        const n = nodeBackend.x25519(sk);
        expect(n.publicKey).toEqual(nacl.scalarMult.base(sk));
        const reference = nacl.scalarMult(sk, peer); // any 32 bytes, high bit and twist included
        if (reference.every((b) => b === 0)) {
          expect(() => n.agree(peer)).toThrow();
          return;
        }
        expect(n.agree(peer)).toEqual(reference);
        expect(naclBackend.x25519(sk).agree(peer)).toEqual(reference);
      }),
      { numRuns: 40 },
    );
  });

  it.each(backends.map((b) => [b.name, b] as const))(
    '%s generates fresh key pairs that agree like the exported secret key',
    (_, backend) => {
      const peer = nacl.box.keyPair();
      const seen = new Set<string>();
      for (let i = 0; i < 5; i++) {
        const { secret, secretKey } = backend.x25519Generate(true);
        expect(secretKey).toHaveLength(32);
        const sk = secretKey as Uint8Array;
        expect(secret.publicKey).toEqual(nacl.scalarMult.base(sk));
        expect(secret.agree(peer.publicKey)).toEqual(nacl.scalarMult(sk, peer.publicKey));
        expect(nacl.scalarMult(peer.secretKey, secret.publicKey)).toEqual(
          secret.agree(peer.publicKey),
        );
        seen.add(toHex(sk));
        const plain = backend.x25519Generate(false);
        expect(plain.secretKey).toBeUndefined();
        expect(plain.secret.publicKey).toHaveLength(32);
        seen.add(toHex(plain.secret.publicKey));
        secret.destroy();
        expect(() => secret.agree(peer.publicKey)).toThrow();
      }
      expect(seen.size).toBe(10);
    },
  );

  it.each(backends.map((b) => [b.name, b] as const))(
    '%s refuses low-order peer keys',
    (_, backend) => {
      const s = backend.x25519(nacl.randomBytes(32));
      for (const low of [new Uint8Array(32), Uint8Array.of(1, ...new Array<number>(31).fill(0))]) {
        try {
          s.agree(low);
          expect.unreachable();
        } catch (e) {
          expect(isSecAggError(e, 'BAD_KEY')).toBe(true);
        }
      }
    },
  );
});

describe('Ed25519 verification (tweetnacl reference and node:crypto)', () => {
  it.each(backends.map((b) => [b.name, b] as const))(
    '%s verifies RFC 8032 test 1',
    (_, backend) => {
      const pk = hex('d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a');
      const sig = hex(
        'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
      );
      expect(backend.ed25519Verify(new Uint8Array(0), sig, pk)).toBe(true);
      expect(backend.ed25519Verify(new Uint8Array(1), sig, pk)).toBe(false);
    },
  );

  it.each(backends.map((b) => [b.name, b] as const))(
    '%s signs RFC 8032 test 1 and any message byte for byte as tweetnacl',
    (_, backend) => {
      const seed = hex('9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60');
      const kp = nacl.sign.keyPair.fromSeed(seed);
      expect(
        Buffer.from(backend.ed25519Sign(new Uint8Array(0), kp.secretKey)).toString('hex'),
      ).toBe(
        'e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b',
      );
      fc.assert(
        fc.property(fc.uint8Array({ maxLength: 200 }), (msg) => {
          const sig = backend.ed25519Sign(msg, kp.secretKey);
          expect(Buffer.from(sig).equals(Buffer.from(nacl.sign.detached(msg, kp.secretKey)))).toBe(
            true,
          );
        }),
        { numRuns: 25 },
      );
      expect(() => backend.ed25519Sign(new Uint8Array(1), seed)).toThrow(/64 bytes/);
    },
  );

  it('accepts and refuses exactly the same signatures with both backends', () => {
    const kp = nacl.sign.keyPair();
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 64 }),
        fc.integer({ min: -1, max: 63 }),
        fc.integer({ min: 1, max: 255 }),
        (msg, flip, bit) => {
          const sig = nacl.sign.detached(msg, kp.secretKey);
          if (flip >= 0) sig[flip] = (sig[flip] as number) ^ bit;
          const a = naclBackend.ed25519Verify(msg, sig, kp.publicKey);
          expect(nodeBackend.ed25519Verify(msg, sig, kp.publicKey)).toBe(a);
          expect(a).toBe(flip < 0);
        },
      ),
      { numRuns: 30 },
    );
  });

  it('refuses a malleated signature (S + L) with both backends', () => {
    const kp = nacl.sign.keyPair();
    const msg = new Uint8Array([1, 2, 3]);
    const sig = nacl.sign.detached(msg, kp.secretKey);
    const L = 2n ** 252n + 27742317777372353535851937790883648493n;
    let s = 0n;
    for (let i = 63; i >= 32; i--) s = (s << 8n) | BigInt(sig[i] as number);
    s += L;
    const malleated = Uint8Array.from(sig);
    for (let i = 32; i < 64; i++, s >>= 8n) malleated[i] = Number(s & 0xffn);
    expect(naclBackend.ed25519Verify(msg, malleated, kp.publicKey)).toBe(false);
    expect(nodeBackend.ed25519Verify(msg, malleated, kp.publicKey)).toBe(false);
  });

  it('returns false, never throws, for malformed inputs', () => {
    for (const b of backends) {
      expect(b.ed25519Verify(new Uint8Array(1), new Uint8Array(3), new Uint8Array(32))).toBe(false);
      expect(b.ed25519Verify(new Uint8Array(1), new Uint8Array(64), new Uint8Array(31))).toBe(
        false,
      );
    }
  });
});
