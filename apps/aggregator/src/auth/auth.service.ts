import { createHash, randomBytes } from 'node:crypto';
import { Inject, Injectable } from '@nestjs/common';
import { ApiTokenRepository } from './api-token.repository';
import { AdminEventRepository } from '../common/admin-event.repository';
import type { ApiTokenRow, Role } from '../database/rows';

/** Hash under which a token is stored. */
export function hashToken(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** Issues and checks API tokens; only hashes are stored. */
@Injectable()
export class AuthService {
  constructor(
    @Inject(ApiTokenRepository) private readonly tokens: ApiTokenRepository,
    @Inject(AdminEventRepository) private readonly events: AdminEventRepository,
  ) {}

  /** Creates a token for `role`; the returned secret is shown once and never stored. */
  async createToken(
    role: Role,
    label: string,
    actor: string,
  ): Promise<{ token: string; row: ApiTokenRow }> {
    const token = `cfd_${role}_${randomBytes(32).toString('base64url')}`;
    const row = await this.tokens.insert(role, label, hashToken(token));
    await this.events.record(actor, 'token.create', row.id, { role, label });
    return { token, row };
  }

  /** On first start, the admin token to print once; null when an admin token already exists. */
  async ensureInitialAdminToken(): Promise<string | null> {
    if ((await this.tokens.countActive('admin')) > 0) return null;
    const { token } = await this.createToken('admin', 'initial admin token', 'system');
    return token;
  }

  async authenticate(token: string): Promise<ApiTokenRow | null> {
    if (!/^cfd_(admin|auditor)_[A-Za-z0-9_-]{43}$/.test(token)) return null;
    return this.tokens.findActiveByHash(hashToken(token));
  }

  list(): Promise<ApiTokenRow[]> {
    return this.tokens.list();
  }
}
