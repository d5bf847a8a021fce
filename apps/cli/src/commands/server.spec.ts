import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { captureIo } from '../../../../test/support/cli';
import { parseCommandArgs, usage, UsageError } from '../command';
import { main } from '../main';
import { serverCommand, serverOptions } from './server';

const optionsFor = (...argv: string[]) => serverOptions(parseCommandArgs(serverCommand, argv).opts);

describe('confide server options', () => {
  beforeEach(() => {
    for (const k of [
      'CONFIDE_PORT',
      'CONFIDE_HOST',
      'CONFIDE_TRUSTED_PROXIES',
      'CONFIDE_METRICS_TOKEN',
      'CONFIDE_MASK_WORKERS',
      'DATABASE_URL',
    ])
      vi.stubEnv(k, undefined);
  });
  afterEach(() => {
    vi.unstubAllEnvs();
  });

  it('listen on 127.0.0.1 with the documented limits unless told otherwise', () => {
    expect(optionsFor()).toMatchObject({
      host: '127.0.0.1',
      port: 8080,
      loginTimeoutMs: 10_000,
      maxPendingLogins: 1024,
      maxPendingLoginsPerAddress: 64,
      trustedProxies: [],
      authFailureLimit: 10,
      authFailureWindowMs: 60_000,
    });
    expect(optionsFor()).not.toHaveProperty('metricsToken');
  });

  it('take every limit from its flag (or its environment variable)', () => {
    vi.stubEnv('CONFIDE_METRICS_TOKEN', 'a-metrics-token-from-the-env');
    expect(
      optionsFor(
        '--host',
        '0.0.0.0',
        '--login-timeout',
        '2.5',
        '--max-pending-logins',
        '100',
        '--max-pending-logins-per-address',
        '5',
        '--trusted-proxies',
        '10.0.0.0/8, fd00::/8',
        '--auth-failure-limit',
        '3',
        '--auth-failure-window',
        '30',
      ),
    ).toMatchObject({
      host: '0.0.0.0',
      loginTimeoutMs: 2500,
      maxPendingLogins: 100,
      maxPendingLoginsPerAddress: 5,
      trustedProxies: ['10.0.0.0/8', 'fd00::/8'],
      authFailureLimit: 3,
      authFailureWindowMs: 30_000,
      metricsToken: 'a-metrics-token-from-the-env',
    });
  });

  it('refuse limits out of range and a short metrics token with a usage error', () => {
    for (const argv of [
      ['--max-pending-logins', '0'],
      ['--max-pending-logins-per-address', '1.5'],
      ['--login-timeout', '0'],
      ['--auth-failure-limit', 'many'],
      ['--auth-failure-window', '-1'],
      ['--metrics-token', 'short'],
      ['--host', ' '],
    ]) {
      expect(() => optionsFor(...argv), argv.join(' ')).toThrow(UsageError);
    }
  });

  it('--help names every flag with its default', () => {
    const text = usage(serverCommand);
    for (const flag of [
      '--host HOST',
      'default: 127.0.0.1',
      '--login-timeout SECONDS',
      '--max-pending-logins N',
      'default: 1024',
      '--max-pending-logins-per-address N',
      'default: 64',
      '--trusted-proxies CIDRS',
      '--auth-failure-limit N',
      '--auth-failure-window SECONDS',
      '--metrics-token TOKEN',
      'env: CONFIDE_METRICS_TOKEN',
    ]) {
      expect(text).toContain(flag);
    }
  });

  it('names a bad --trusted-proxies entry before it opens a database', async () => {
    const io = captureIo();
    const code = await main(['server', '--trusted-proxies', '10.0.0.0/8,lb.example.org'], io);
    expect(code).toBe(2);
    expect(io.stderr()).toContain(
      '--trusted-proxies: trusted proxy "lb.example.org" is not an IPv4 or IPv6 address',
    );
  }, 30_000);
});
