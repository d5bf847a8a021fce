import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { datasetToCsv, parseCsv, partitionIid } from '@confide/ml';
import { cliEnv, runCli, runCliJson, spawnCli, type CliProcess } from '../support/cli';
import { databaseKind, freshDatabaseUrl } from '../support/database';
import { DATASET, waitUntil } from '../support/federation';
import { createThrowawayCa } from '../../apps/cli/src/tls-ca';

type Site = { id: string; name: string; status: string; fingerprint: string };
type Round = { number: number; state: string; reason: string | null };

/**
 * The path a user takes, with real processes only: `confide server` over TLS with a private CA, the
 * admin commands, two `confide node join` sites that pin the aggregator's key and run with their own
 * policy; rounds, a model download, a revocation and clean shutdowns.
 */
describe(`the confide CLI end to end: server, admin and two sites as processes (${databaseKind})`, () => {
  const children: CliProcess[] = [];
  let tmp: string;
  let db: Awaited<ReturnType<typeof freshDatabaseUrl>>;

  const spawn = (args: string[], env: NodeJS.ProcessEnv): CliProcess => {
    const p = spawnCli(args, env);
    children.push(p);
    return p;
  };

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'confide-cli-e2e-'));
    db = await freshDatabaseUrl();
  });

  afterAll(async () => {
    // Every child goes, whatever happened to the test.
    await Promise.all(children.map((c) => c.stop('SIGKILL', 5000)));
    await db?.drop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('serves a federation over TLS: rounds commit, the model downloads, a revoked site exits, all stop cleanly', async () => {
    // A private CA and the aggregator's certificate, as an operator would make them.
    const tls = await createThrowawayCa({ hostnames: ['localhost'] });
    const [caFile, certFile, keyFile] = ['ca.pem', 'cert.pem', 'key.pem'].map((f) => join(tmp, f));
    await writeFile(caFile!, tls.caCertPem);
    await writeFile(certFile!, tls.certPem);
    await writeFile(keyFile!, tls.keyPem, { mode: 0o600 });
    // The sites' policy: TLS required, and a sum of two sites allowed (there are two of them).
    const policyFile = join(tmp, 'site-policy.json');
    await writeFile(policyFile, JSON.stringify({ requireTls: true, minSitesPerSum: 2 }));
    // The server on a free port, with its own database; the first start writes the admin token to a file.
    const server = spawn(
      [
        'server',
        '--port',
        '0',
        '--host',
        '127.0.0.1',
        '--data-dir',
        join(tmp, 'db'),
        '--tls-cert',
        certFile!,
        '--tls-key',
        keyFile!,
      ],
      cliEnv({ DATABASE_URL: db.url }),
    );
    // While it starts: two site identities and two shards of the data, as the sites would make them.
    const all = parseCsv(await readFile(DATASET, 'utf8'), { label: 'diagnosis' });
    expect(all.numFeatures).toBe(30);
    const shards = partitionIid(all, 2, 11);
    const keys = (i: number): Promise<{ publicKey: string; publicKeyFile: string }> =>
      runCliJson(['node', 'keys', '--key-dir', join(tmp, `site${i}`), '--json']);
    const [key1, key2] = await Promise.all([keys(1), keys(2)]);
    await Promise.all(
      shards.map((s, i) => writeFile(join(tmp, `site${i + 1}.csv`), datasetToCsv(s))),
    );

    const [, url] = await server.waitForOutput(
      /Confide aggregator listening on (https:\/\/127\.0\.0\.1:\d+)\n/,
      60_000,
    );
    const [, fingerprint] = await server.waitForOutput(/identity: +([0-9a-f]{16}) /, 5000);
    const [, tokenFile] = await server.waitForOutput(/admin token was written to (\S+) /, 5000);
    const token = (await readFile(tokenFile!, 'utf8')).trim();
    expect(server.stderr).toContain(db.url ? 'postgres' : 'PGlite');

    // The admin CLI trusts the private CA (--ca, here through its environment variable).
    const env = cliEnv({ CONFIDE_SERVER: url!, CONFIDE_TOKEN: token, CONFIDE_CA: caFile! });
    const fed = await runCliJson<{ id: string; parameters: number }>(
      [
        'admin',
        'federation',
        'create',
        '--json',
        '--name',
        'breast-cancer-cli',
        '--model',
        '{"kind":"logistic","inputDim":30}',
        '--min-sites',
        '2',
        '--epochs',
        '1',
        '--round-timeout',
        '60',
      ],
      env,
    );
    expect(fed.parameters).toBe(31);
    const fedEnv = { ...env, CONFIDE_FEDERATION: fed.id };

    // Enrol and approve both: one key from its file, the other as printed by `node keys`.
    const [site1, site2] = await Promise.all([
      runCliJson<Site>(
        [
          'admin',
          'site',
          'enrol',
          '--json',
          '--approve',
          '--name',
          'hospital-1',
          '--public-key',
          `@${key1.publicKeyFile}`,
        ],
        fedEnv,
      ),
      runCliJson<Site>(
        [
          'admin',
          'site',
          'enrol',
          '--json',
          '--approve',
          '--name',
          'hospital-2',
          '--public-key',
          key2.publicKey,
        ],
        fedEnv,
      ),
    ]);
    expect(site1).toMatchObject({ name: 'hospital-1', status: 'approved' });
    expect(site2).toMatchObject({ name: 'hospital-2', status: 'approved' });

    const join1 = spawn(
      [
        'node',
        'join',
        '--quiet',
        '--key-dir',
        join(tmp, 'site1'),
        '--data',
        join(tmp, 'site1.csv'),
        '--label',
        'diagnosis',
        '--server-key',
        fingerprint!,
        '--policy',
        policyFile,
      ],
      fedEnv,
    );
    const join2 = spawn(
      [
        'node',
        'join',
        '--quiet',
        '--key-dir',
        join(tmp, 'site2'),
        '--data',
        join(tmp, 'site2.csv'),
        '--label',
        'diagnosis',
        '--server-key',
        fingerprint!,
        '--policy',
        policyFile,
      ],
      fedEnv,
    );
    await Promise.all([
      join1.waitForOutput(/connected as site "hospital-1"/, 60_000),
      join2.waitForOutput(/connected as site "hospital-2"/, 60_000),
    ]);
    for (const j of [join1, join2]) {
      // The effective policy is printed at start, and the key given was the one presented (no pin warning).
      expect(j.stderr).toContain('TLS: required');
      expect(j.stderr).toContain(`aggregator key ${fingerprint!})`);
      expect(j.stderr).not.toContain('WARNING');
    }

    const run = await runCliJson<{ id: string }>(
      ['admin', 'rounds', 'start', '--rounds', '2', '--json'],
      fedEnv,
    );
    expect(run.id).toEqual(expect.any(String));
    // The sites log each round's end: wait for that (cheap) before polling the admin API (a process each).
    await Promise.all(
      [join1, join2].map((j) => j.waitForOutput(/round 2 committed|round \d+ aborted/, 90_000)),
    );
    const rounds = await waitUntil(
      async () => {
        const r = await runCliJson<{ rounds: Round[] }>(
          ['admin', 'rounds', 'list', '--json'],
          fedEnv,
        );
        const aborted = r.rounds.find((x) => x.state === 'aborted');
        if (aborted) {
          throw new Error(
            `round ${aborted.number} aborted: ${aborted.reason}\n--- hospital-1\n${join1.stderr}\n--- hospital-2\n${join2.stderr}\n--- server\n${server.stderr}`,
          );
        }
        return r.rounds.filter((x) => x.state === 'committed').length >= 2 ? r.rounds : undefined;
      },
      30_000,
      'two committed rounds',
    );
    expect(rounds.map((r) => [r.number, r.state])).toEqual([
      [1, 'committed'],
      [2, 'committed'],
    ]);
    for (const j of [join1, join2]) {
      expect(j.stderr).toContain('round 1 committed');
      expect(j.stderr).toContain('round 2 committed');
    }

    const modelFile = join(tmp, 'model.f32');
    const dl = await runCliJson<{ parameters: number; file: string; hash: string }>(
      ['admin', 'model', 'download', '--out', modelFile, '--json'],
      fedEnv,
    );
    expect(dl).toMatchObject({ parameters: 31, file: modelFile });
    expect((await stat(modelFile)).size).toBe(31 * 4);
    const bytes = await readFile(modelFile);
    expect(createHash('sha256').update(bytes).digest('hex')).toBe(dl.hash);
    const weights = Array.from({ length: 31 }, (_, i) => bytes.readFloatLE(i * 4));
    expect(weights.every(Number.isFinite)).toBe(true);
    expect(weights.some((w) => w !== 0)).toBe(true);

    // Revoking a site closes its connection; its `node join` exits non-zero, saying why.
    const revoked = await runCliJson<Site>(
      ['admin', 'site', 'revoke', '--site', site2.id, '--json'],
      fedEnv,
    );
    expect(revoked.status).toBe('revoked');
    const exit2 = await join2.waitForExit(30_000);
    expect(exit2).toEqual({ code: 1, signal: null });
    expect(join2.stderr).toMatch(/^confide node join: stopped: SITE_REVOKED: .*revoked/m);
    expect(join2.stderr).not.toMatch(/^\s+at /m);

    const list = await runCli(['admin', 'site', 'list'], fedEnv);
    expect(list.code).toBe(0);
    expect(list.stdout).toMatch(/hospital-1\s+approved\s+connected/);
    expect(list.stdout).toMatch(/hospital-2\s+revoked\s+offline/);

    // SIGTERM: the remaining site and the server shut down cleanly.
    const exit1 = await join1.stop('SIGTERM');
    expect(exit1).toEqual({ code: 0, signal: null });
    expect(join1.stderr).toMatch(/stopped\n$/);
    const exitServer = await server.stop('SIGTERM');
    expect(exitServer).toEqual({ code: 0, signal: null });
    expect(server.stderr).toContain('received SIGTERM; shutting down');
  }, 120_000);
});
