import { createHash } from 'node:crypto';
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

describe('batch signatures (each site its own message, one signature)', () => {
  const identity = generateIdentity();
  const signer = new ServerSigner(identity);
  const step = (i: number): Record<string, unknown> => ({
    v: 2,
    type: 'secagg.deliver',
    id: `m${i}`,
    runId: 'r1',
    round: 3,
    sum: 'update',
    shares: [{ to: `site-${i}`, box: 'x'.repeat(i % 5) }],
  });
  const parse = (b: Buffer): Record<string, unknown> =>
    JSON.parse(b.toString('utf8')) as Record<string, unknown>;

  it('verify every message of batches of 1 to 9 and of 33, with one signature each batch', () => {
    for (const n of [1, 2, 3, 4, 5, 6, 7, 8, 9, 33]) {
      const messages = Array.from({ length: n }, (_, i) => step(i));
      const sent = signer.signEach(messages).map(parse);
      expect(new Set(sent.map((m) => m['sig'])).size).toBe(1);
      sent.forEach((m, i) => {
        expect(m).toMatchObject({ ...messages[i], batch: { index: i, count: n } });
        expect(verifyServerMessage(identity.publicKey, m)).toBe(true);
      });
    }
  });

  it('sign the message count and the Merkle root of the tagged leaves under their own domain', () => {
    const [a, b] = signer.signEach([step(0), step(1)]).map(parse) as [
      Record<string, unknown>,
      Record<string, unknown>,
    ];
    const leaf = (m: Record<string, unknown>): Buffer =>
      createHash('sha256').update(Buffer.of(0)).update(serverMessageBytes(m)).digest();
    const root = createHash('sha256').update(Buffer.of(1)).update(leaf(a)).update(leaf(b)).digest();
    const signed = Buffer.concat([Buffer.from('confide/server-batch/v1\n2\n'), root]);
    expect(
      nacl.sign.detached.verify(
        signed,
        Buffer.from(String(a['sig']), 'base64'),
        Buffer.from(identity.publicKey, 'base64'),
      ),
    ).toBe(true);
  });

  it('fail for a changed member, another index, count or proof, or the batch member removed', () => {
    const sent = signer.signEach([step(0), step(1), step(2)]).map(parse);
    const m = sent[1] as Record<string, unknown>;
    const batch = m['batch'] as { index: number; count: number; proof: string };
    const bad = (x: Record<string, unknown>): boolean => verifyServerMessage(identity.publicKey, x);
    expect(bad({ ...m, round: 4 })).toBe(false);
    expect(bad({ ...m, extra: 1 })).toBe(false);
    expect(bad({ ...m, batch: { ...batch, index: 0 } })).toBe(false);
    expect(bad({ ...m, batch: { ...batch, index: 2 } })).toBe(false);
    expect(bad({ ...m, batch: { ...batch, count: 2 } })).toBe(false);
    expect(bad({ ...m, batch: { ...batch, count: 4 } })).toBe(false);
    expect(bad({ ...m, batch: { ...batch, proof: '' } })).toBe(false);
    expect(
      bad({ ...m, batch: { ...batch, proof: (sent[0]!['batch'] as typeof batch).proof } }),
    ).toBe(false);
    expect(bad({ ...m, batch: { ...batch, index: -1 } })).toBe(false);
    expect(bad({ ...m, batch: { ...batch, index: 1.5 } })).toBe(false);
    expect(bad({ ...m, batch: 'nonsense' })).toBe(false);
    expect(bad({ ...m, batch: null })).toBe(false);
    // Without its position, the batch signature is not a signature over the message itself.
    const { batch: _b, ...bare } = m;
    expect(bad(bare)).toBe(false);
    // Another site's message of the same batch verifies only as itself.
    expect(bad({ ...(sent[0] as Record<string, unknown>), batch })).toBe(false);
    // A batch signed by another key.
    const other = new ServerSigner(generateIdentity()).signEach([step(0), step(1), step(2)]);
    expect(bad(parse(other[1] as Buffer))).toBe(false);
  });

  it('cannot be confused with a single signature: a message signed alone gains nothing from batch', () => {
    const single = signer.sign(step(0));
    expect(verifyServerMessage(identity.publicKey, single)).toBe(true);
    expect(
      verifyServerMessage(identity.publicKey, {
        ...single,
        batch: { index: 0, count: 1, proof: '' },
      }),
    ).toBe(false);
    expect(() => signer.signEach([single])).toThrow(/sig or batch/);
    expect(signer.signEach([])).toEqual([]);
  });
});
