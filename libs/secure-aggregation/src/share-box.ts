import nacl from 'tweetnacl';
import {
  bytesEqual,
  decodeFields,
  encodeFields,
  fromBase64,
  randomBytes as csprng,
  toBase64,
  utf8,
} from './bytes';
import { SecAggError } from './errors';
import { hkdfSha256, LABELS } from './kdf';
import type { EncryptedShare } from './messages';
import { SHARE_BYTES } from './shamir';

/**
 * Share encryption: nacl.secretbox (XSalsa20-Poly1305) under a key derived per direction,
 * HKDF-SHA256(ikm = X25519(encSecret_from, encPublic_to), salt = sessionId,
 * info = [LABELS.shareKey, from, to]), with a random 24-byte nonce. The authenticated plaintext is
 * [LABELS.share, sessionId, from, to, selfMaskShare, maskKeyShare] and is checked on opening, so a
 * share can be neither replayed into another session nor passed off as another site's.
 */

/** A site's two shares for one holder: of its self-mask seed b and of its mask secret key. */
export interface SharePair {
  readonly selfMaskShare: Uint8Array;
  readonly maskKeyShare: Uint8Array;
}

/**
 * The secretbox key for shares sent from `from` to `to`.
 *
 * @example
 * const key = shareEncryptionKey(encSecret.agree(peerEncPublicKey), sessionId, 'a', 'b');
 */
export function shareEncryptionKey(
  sharedSecret: Uint8Array,
  sessionId: Uint8Array,
  from: string,
  to: string,
): Uint8Array {
  return hkdfSha256(sharedSecret, sessionId, encodeFields([LABELS.shareKey, from, to]), 32);
}

/**
 * Encrypts one holder's pair of shares.
 *
 * @example
 * const msg = sealShare(key, sessionId, 'a', 'b', { selfMaskShare, maskKeyShare });
 */
export function sealShare(
  key: Uint8Array,
  sessionId: Uint8Array,
  from: string,
  to: string,
  shares: SharePair,
  randomBytes: (n: number) => Uint8Array = csprng,
): EncryptedShare {
  if (shares.selfMaskShare.length !== SHARE_BYTES || shares.maskKeyShare.length !== SHARE_BYTES) {
    throw new SecAggError('BAD_INPUT', `shares must be ${SHARE_BYTES} bytes`);
  }
  const plaintext = encodeFields([
    LABELS.share,
    sessionId,
    from,
    to,
    shares.selfMaskShare,
    shares.maskKeyShare,
  ]);
  const nonce = randomBytes(nacl.secretbox.nonceLength);
  const ciphertext = nacl.secretbox(plaintext, nonce, key);
  plaintext.fill(0);
  return {
    sessionId: toBase64(sessionId),
    from,
    to,
    nonce: toBase64(nonce),
    ciphertext: toBase64(ciphertext),
  };
}

/**
 * Decrypts and checks a share sent to `to` in session `sessionId` with the key for its claimed
 * sender. Throws REPLAYED_SHARE (other session), MISDIRECTED_SHARE (other recipient or sender) or
 * DECRYPTION_FAILED (forged or corrupted).
 *
 * @example
 * const { selfMaskShare, maskKeyShare } = openShare(key, msg, { sessionId, to: 'b' });
 */
export function openShare(
  key: Uint8Array,
  msg: EncryptedShare,
  expected: { sessionId: Uint8Array; to: string },
): SharePair {
  if (!bytesEqual(fromBase64(msg.sessionId, 32, 'share sessionId'), expected.sessionId)) {
    throw new SecAggError(
      'REPLAYED_SHARE',
      `the share from ${msg.from} was made for another session (round, run or key set)`,
    );
  }
  if (msg.to !== expected.to) {
    throw new SecAggError(
      'MISDIRECTED_SHARE',
      `a share for ${msg.to} was delivered to ${expected.to}`,
    );
  }
  const plaintext = nacl.secretbox.open(
    fromBase64(msg.ciphertext, undefined, 'share ciphertext'),
    fromBase64(msg.nonce, nacl.secretbox.nonceLength, 'share nonce'),
    key,
  );
  if (plaintext === null) {
    throw new SecAggError(
      'DECRYPTION_FAILED',
      `the share from ${msg.from} does not authenticate (forged, corrupted or from another session)`,
    );
  }
  try {
    const fields = decodeFields(plaintext);
    const [label, sid, from, to, b, sk] = fields;
    if (fields.length !== 6 || !label || !bytesEqual(label, utf8(LABELS.share))) {
      throw new SecAggError('DECRYPTION_FAILED', 'the share plaintext is malformed');
    }
    if (!sid || !bytesEqual(sid, expected.sessionId)) {
      throw new SecAggError(
        'REPLAYED_SHARE',
        `the share from ${msg.from} belongs to another session`,
      );
    }
    if (!from || !to || !bytesEqual(from, utf8(msg.from)) || !bytesEqual(to, utf8(expected.to))) {
      throw new SecAggError(
        'MISDIRECTED_SHARE',
        `the share from ${msg.from} names other sites inside`,
      );
    }
    if (!b || !sk || b.length !== SHARE_BYTES || sk.length !== SHARE_BYTES) {
      throw new SecAggError('DECRYPTION_FAILED', 'the share plaintext is malformed');
    }
    return { selfMaskShare: Uint8Array.from(b), maskKeyShare: Uint8Array.from(sk) };
  } finally {
    plaintext.fill(0);
  }
}
