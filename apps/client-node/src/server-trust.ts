import { readFile, rename, writeFile } from 'node:fs/promises';
import {
  challengeBytes,
  ErrorCode,
  isPublicKey,
  keyFingerprint,
  ProtocolError,
  verifyServerBytes,
  verifyServerMessage,
} from '@confide/protocol';

/** Where a node keeps the aggregator keys it pinned, one per federation. */
export interface PinStore {
  get(federationId: string): Promise<string | null>;
  /** Durable before it resolves: a pin that is lost would be pinned again, maybe to an impostor. */
  set(federationId: string, publicKey: string, server: string): Promise<void>;
}

/** The file beside a site's key that holds its pinned aggregator keys. */
export const KNOWN_SERVERS_FILE = 'known-servers.json';

/** A PinStore in a JSON file ({ federationId: { publicKey, server, pinnedAt } }), written atomically. */
export function filePinStore(path: string): PinStore {
  const load = async (): Promise<Record<string, { publicKey: string }>> => {
    try {
      return JSON.parse(await readFile(path, 'utf8')) as Record<string, { publicKey: string }>;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return {};
      throw new Error(`cannot read the pinned aggregator keys in ${path}: ${(e as Error).message}`);
    }
  };
  return {
    async get(federationId) {
      const key = (await load())[federationId]?.publicKey;
      return typeof key === 'string' ? key : null;
    },
    async set(federationId, publicKey, server) {
      const all = await load();
      all[federationId] = { publicKey, server, pinnedAt: new Date().toISOString() } as {
        publicKey: string;
      };
      const tmp = `${path}.tmp`;
      await writeFile(tmp, `${JSON.stringify(all, null, 2)}\n`, { mode: 0o644, flush: true });
      await rename(tmp, path);
    },
  };
}

/** A PinStore in memory (tests, the demo). */
export function memoryPinStore(): PinStore {
  const pins = new Map<string, string>();
  return {
    get: (f) => Promise.resolve(pins.get(f) ?? null),
    set: (f, k) => {
      pins.set(f, k);
      return Promise.resolve();
    },
  };
}

/** What the operator gave with --server-key: the key itself, or its 16-hex fingerprint. */
export type ExpectedServerKey = { publicKey: string } | { fingerprint: string };

/**
 * Reads --server-key: a base64 Ed25519 public key, or the fingerprint `confide server` prints.
 * @example parseServerKey('3f9a0c1b2d4e5f60') // { fingerprint: '3f9a0c1b2d4e5f60' }
 */
export function parseServerKey(text: string): ExpectedServerKey {
  const t = text.trim();
  if (/^[0-9a-fA-F]{16}$/.test(t)) return { fingerprint: t.toLowerCase() };
  if (isPublicKey(t)) return { publicKey: t };
  throw new Error(
    `--server-key must be the aggregator's Ed25519 public key (base64) or its 16-hex fingerprint, as \`confide server\` prints them; got "${text}"`,
  );
}

/**
 * The node's trust in its aggregator: the key it was given or pinned, checked against the challenge
 * of every connection and the signature of every message after it.
 */
export class ServerTrust {
  private key: string | null = null;

  constructor(
    private readonly federationId: string,
    private readonly server: string,
    private readonly expected: ExpectedServerKey | null,
    private readonly pins: PinStore,
    private readonly log: (line: string) => void,
  ) {}

  /** The key every message is checked with (null before the first challenge). */
  get publicKey(): string | null {
    return this.key;
  }

  /** True when the key was given by the operator or pinned earlier, not first seen now. */
  pinned = false;

  /**
   * Checks a challenge: its key is the one given or pinned (a first connection without either
   * pins what it sees, loudly), and its signature proves the aggregator holds that key on this very
   * connection. Throws ProtocolError SERVER_KEY_MISMATCH or BAD_SERVER_SIGNATURE.
   */
  async checkChallenge(c: {
    serverId: string;
    nonce: string;
    serverKey: string;
    sig?: unknown;
  }): Promise<void> {
    if (!verifyServerBytes(c.serverKey, challengeBytes(c.serverId, c.nonce, c.serverKey), c.sig)) {
      throw new ProtocolError(
        ErrorCode.BAD_SERVER_SIGNATURE,
        'the challenge is not signed by the key it announces; refusing this aggregator',
      );
    }
    const fp = keyFingerprint(c.serverKey);
    const pinned = await this.pins.get(this.federationId);
    if (this.expected) {
      const ok =
        'publicKey' in this.expected
          ? this.expected.publicKey === c.serverKey
          : this.expected.fingerprint === fp;
      if (!ok) {
        throw new ProtocolError(
          ErrorCode.SERVER_KEY_MISMATCH,
          `the aggregator at ${this.server} presents key ${fp}, not the one given with --server-key (${'publicKey' in this.expected ? keyFingerprint(this.expected.publicKey) : this.expected.fingerprint}); refusing it`,
        );
      }
      if (pinned !== c.serverKey) await this.pins.set(this.federationId, c.serverKey, this.server);
      this.pinned = true;
    } else if (pinned === null) {
      await this.pins.set(this.federationId, c.serverKey, this.server);
      this.log(
        `WARNING: first connection to federation ${this.federationId}: pinned the aggregator key ${fp} ` +
          `(${c.serverKey}) without checking it. Compare that fingerprint with the one \`confide server\` ` +
          `printed, or pass --server-key; a different key later will be refused.`,
      );
      this.pinned = false;
    } else if (pinned !== c.serverKey) {
      throw new ProtocolError(
        ErrorCode.SERVER_KEY_MISMATCH,
        `the aggregator at ${this.server} presents key ${fp}, but this site pinned ${keyFingerprint(pinned)} for federation ${this.federationId}; refusing it (if the aggregator's key really changed, pass the new one with --server-key)`,
      );
    } else {
      this.pinned = true;
    }
    this.key = c.serverKey;
  }

  /** True when a message carries a valid signature of the pinned key. */
  verify(message: Record<string, unknown>): boolean {
    return this.key !== null && verifyServerMessage(this.key, message);
  }
}
