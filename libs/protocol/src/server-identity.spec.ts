import nacl from 'tweetnacl';
import { describe, expect, it } from 'vitest';
import {
  canonicalMessageJson,
  challengeBytes,
  generateIdentity,
  ServerSigner,
  serverMessageBytes,
  toBase64,
  verifyServerBytes,
  verifyServerMessage,
} from './index';

describe('server message signatures', () => {
  const identity = generateIdentity();
  const signer = new ServerSigner(identity);
  const message = {
    v: 2,
    type: 'round.end',
    id: 'm1',
    runId: 'r1',
    round: 3,
    outcome: 'committed',
    reason: null,
  };

  it('verify with the aggregator key, whatever order the members arrive in', () => {
    const signed = signer.sign(message);
    const reordered = JSON.parse(
      JSON.stringify(Object.fromEntries(Object.entries(signed).reverse())),
    ) as Record<string, unknown>;
    expect(verifyServerMessage(identity.publicKey, signed)).toBe(true);
    expect(verifyServerMessage(identity.publicKey, reordered)).toBe(true);
  });

  it('are tweetnacl Ed25519 signatures over the domain-separated canonical bytes', () => {
    const signed = signer.sign(message);
    const sig = Buffer.from(signed.sig, 'base64');
    expect(
      nacl.sign.detached.verify(
        serverMessageBytes(signed),
        sig,
        Buffer.from(identity.publicKey, 'base64'),
      ),
    ).toBe(true);
    expect(serverMessageBytes(signed).toString()).toMatch(/^confide\/server-message\/v1\n\{/);
  });

  it('fail when any member is changed, added or removed (a relay rewriting privacy: null)', () => {
    const signed = signer.sign({ ...message, privacy: { level: 'record' } });
    expect(verifyServerMessage(identity.publicKey, { ...signed, privacy: null })).toBe(false);
    expect(verifyServerMessage(identity.publicKey, { ...signed, extra: 1 })).toBe(false);
    const { reason: _r, ...without } = signed;
    expect(verifyServerMessage(identity.publicKey, without)).toBe(false);
    expect(verifyServerMessage(identity.publicKey, { ...signed, round: 4 })).toBe(false);
  });

  it('fail with another key, no signature or a malformed one', () => {
    const signed = signer.sign(message);
    expect(verifyServerMessage(generateIdentity().publicKey, signed)).toBe(false);
    expect(verifyServerMessage(identity.publicKey, message)).toBe(false);
    expect(verifyServerMessage(identity.publicKey, { ...signed, sig: 'not base64!' })).toBe(false);
    expect(verifyServerMessage(identity.publicKey, { ...signed, sig: 42 })).toBe(false);
    expect(verifyServerMessage('garbage', signed)).toBe(false);
  });

  it('bind the challenge to the connection nonce and the key', () => {
    const nonce = toBase64(new Uint8Array(32).fill(1));
    const sig = signer.signBytes(challengeBytes('srv', nonce, identity.publicKey));
    expect(
      verifyServerBytes(identity.publicKey, challengeBytes('srv', nonce, identity.publicKey), sig),
    ).toBe(true);
    const other = toBase64(new Uint8Array(32).fill(2));
    expect(
      verifyServerBytes(identity.publicKey, challengeBytes('srv', other, identity.publicKey), sig),
    ).toBe(false);
  });

  it('encode canonically: sorted keys at every level, undefined members dropped', () => {
    expect(canonicalMessageJson({ b: 1, a: [2, { d: 3, c: 4 }], u: undefined })).toBe(
      '{"a":[2,{"c":4,"d":3}],"b":1}',
    );
    expect(canonicalMessageJson({ s: 'é\n"', n: null, x: 1e-7 })).toBe(
      '{"n":null,"s":"é\\n\\"","x":1e-7}',
    );
  });
});
