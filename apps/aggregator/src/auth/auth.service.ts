import { createHash, randomBytes } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import type { EntityManager } from 'typeorm';
import { ApiTokenRepository } from './api-token.repository';
import { AdminEventRepository } from '../common/admin-event.repository';
import { ApiError } from '../common/errors';
import { CLOCK, DATABASE, type Clock } from '../common/tokens';
import type { Database } from '../database/database';
import type { ApiTokenRow, Role } from '../database/rows';
import { isUuid } from '../federations/federation.repository';

/** Hash under which a token is stored. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** lastUsedAt is written at most this often per token: a busy token costs no write per request. */
export const LAST_USED_RESOLUTION_MS = 60_000;

/** Shortest and longest lifetime a token may be given, in seconds. */
export const TOKEN_LIFETIME_SECONDS = { min: 60, max: 10 * 366 * 24 * 3600 } as const;

/** Issues, checks and revokes API tokens; only hashes are stored. */
@Injectable()
export class AuthService {
  private readonly revokeListeners = new Set<(tokenId: string) => void>();

  constructor(
    @Inject(ApiTokenRepository) private readonly tokens: ApiTokenRepository,
    @Inject(AdminEventRepository) private readonly events: AdminEventRepository,
    @Inject(DATABASE) private readonly db: Database,
    @Inject(CLOCK) private readonly clock: Clock,
  ) {}

  /**
   * Creates a token for `role`, valid for `expiresInSeconds` (absent: until revoked); the returned
   * secret is shown once and never stored.
   */
  async createToken(
    role: Role,
    label: string,
    actor: string,
    expiresInSeconds?: number,
  ): Promise<{ token: string; row: ApiTokenRow }> {
    return this.db.transaction((em) => this.issue(role, label, actor, expiresInSeconds, em));
  }

  /**
   * When no admin token can be used (a new database, or every admin token revoked or expired),
   * creates one and hands it to `deliver` (which writes it to a file) before committing: a token
   * whose delivery failed is rolled back, so the next start tries again rather than locking the
   * operator out. Returns the token, or null when a usable admin token exists.
   */
  async ensureInitialAdminToken(
    deliver: (token: string) => Promise<void> = async () => undefined,
  ): Promise<string | null> {
    return this.db.transaction(async (em) => {
      await this.tokens.lockForBootstrap(em);
      if ((await this.tokens.countActive('admin', this.clock.now(), em)) > 0) return null;
      const { token } = await this.issue('admin', 'initial admin token', 'system', undefined, em);
      await deliver(token);
      return token;
    });
  }

  /**
   * The token's row when it may be used now; otherwise a 401 that says "revoked" or "expired" only
   * to a caller who holds that token's secret (anyone else learns "unknown").
   */
  async authenticate(token: string): Promise<ApiTokenRow> {
    const row = /^cfd_(admin|auditor)_[A-Za-z0-9_-]{43}$/.test(token)
      ? await this.tokens.findByHash(hashToken(token))
      : null;
    if (!row) throw new ApiError('UNAUTHENTICATED', 'the API token is unknown');
    if (row.revokedAt) {
      throw new ApiError(
        'UNAUTHENTICATED',
        'the API token was revoked; ask an admin for a new one',
      );
    }
    const now = this.clock.now();
    if (row.expiresAt && row.expiresAt.getTime() <= now.getTime()) {
      throw new ApiError(
        'UNAUTHENTICATED',
        `the API token expired at ${row.expiresAt.toISOString()}; ask an admin for a new one`,
      );
    }
    const since = new Date(now.getTime() - LAST_USED_RESOLUTION_MS);
    if (!row.lastUsedAt || row.lastUsedAt < since) {
      await this.tokens.touch(row.id, now, since);
      row.lastUsedAt = now;
    }
    return row;
  }

  /**
   * Revokes a token (again: a no-op that keeps the first revocation time). The last usable admin
   * token is refused: nobody could create another one, and the aggregator would have no admin until
   * a restart wrote a new bootstrap token.
   */
  async revoke(id: string, actor: string): Promise<ApiTokenRow> {
    const row = await this.db.transaction(async (em) => {
      const now = this.clock.now();
      const admins = await this.tokens.lockActiveAdminIds(em, now);
      const before = isUuid(id) ? await this.tokens.findById(id, em) : null;
      if (!before) throw new ApiError('NOT_FOUND', `no API token has the id ${id}`);
      if (admins.length === 1 && admins[0] === id) {
        throw new ApiError(
          'CONFLICT',
          `token ${id} is the last admin token that can still be used: create another admin token ` +
            '(confide admin token create --role admin) and sign in with it before revoking this one',
        );
      }
      const after = (await this.tokens.revoke(id, now, em))!;
      if (!before.revokedAt) {
        await this.events.record(actor, 'token.revoke', id, { role: after.role }, em);
      }
      return after;
    });
    for (const listener of this.revokeListeners) listener(row.id);
    return row;
  }

  /** Calls `listener` with the id of every token revoked from now on; returns the unsubscribe. */
  onRevoke(listener: (tokenId: string) => void): () => void {
    this.revokeListeners.add(listener);
    return () => this.revokeListeners.delete(listener);
  }

  list(): Promise<ApiTokenRow[]> {
    return this.tokens.list();
  }

  private async issue(
    role: Role,
    label: string,
    actor: string,
    expiresInSeconds: number | undefined,
    em: EntityManager,
  ): Promise<{ token: string; row: ApiTokenRow }> {
    if (
      expiresInSeconds !== undefined &&
      !(
        Number.isInteger(expiresInSeconds) &&
        expiresInSeconds >= TOKEN_LIFETIME_SECONDS.min &&
        expiresInSeconds <= TOKEN_LIFETIME_SECONDS.max
      )
    ) {
      throw new ApiError(
        'VALIDATION_FAILED',
        `a token's lifetime must be a whole number of seconds from ${TOKEN_LIFETIME_SECONDS.min} to ${TOKEN_LIFETIME_SECONDS.max}; got ${expiresInSeconds}`,
      );
    }
    const token = `cfd_${role}_${randomBytes(32).toString('base64url')}`;
    const createdAt = this.clock.now();
    const expiresAt =
      expiresInSeconds === undefined
        ? null
        : new Date(createdAt.getTime() + expiresInSeconds * 1000);
    const row = await this.tokens.insert(
      role,
      label,
      hashToken(token),
      { createdAt, expiresAt },
      em,
    );
    await this.events.record(
      actor,
      'token.create',
      row.id,
      { role, label, expiresAt: expiresAt?.toISOString() ?? null },
      em,
    );
    return { token, row };
  }
}
