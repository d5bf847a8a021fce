import type { NextFunction, Request, RequestHandler, Response } from 'express';
import type { MetricsService } from '../observability/metrics.service';
import type { AuthFailureLimiter } from './auth-failure-limiter';
import { addressKey, type ClientAddresses } from './client-address';

/** Whether a request tries to authenticate: a bearer header, or `?token=` (server-sent events). */
function presentsCredential(req: Request): boolean {
  if (req.headers['authorization'] !== undefined) return true;
  const q = req.url.indexOf('?');
  return q >= 0 && new URLSearchParams(req.url.slice(q + 1)).has('token');
}

/**
 * Rate-limits failed REST authentications per client address: every request that presents a
 * credential and is answered 401 counts as a failure; past the limit, such requests from that
 * address get 429 with Retry-After before their token is looked at. Requests without a credential
 * (the dashboard's files, /health without a token) are never limited.
 */
export function authFailureMiddleware(
  limiter: AuthFailureLimiter,
  addresses: ClientAddresses,
  metrics: MetricsService,
): RequestHandler {
  return (req: Request, res: Response, next: NextFunction) => {
    if (!presentsCredential(req)) {
      next();
      return;
    }
    const key = addressKey(addresses.of(req.socket.remoteAddress, req.headers['x-forwarded-for']));
    const waitMs = limiter.retryAfterMs(key);
    if (waitMs > 0) {
      const seconds = Math.ceil(waitMs / 1000);
      metrics.authRateLimited.inc();
      res.setHeader('Retry-After', String(seconds));
      res.status(429).json({
        error: {
          code: 'RATE_LIMITED',
          message: `too many failed authentications from this address; retry in ${seconds} s`,
        },
      });
      return;
    }
    res.on('finish', () => {
      if (res.statusCode === 401) {
        metrics.authFailures.inc();
        limiter.recordFailure(key);
      }
    });
    next();
  };
}
