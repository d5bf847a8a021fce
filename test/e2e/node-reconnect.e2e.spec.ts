import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { datasetToCsv, loadCsv, partitionIid } from '@confide/ml';
import { ApiClient } from '../../apps/cli/src/api-client';
import { cliEnv, runCliJson, type CliProcess } from '../support/cli';
import { databaseKind, freshDatabaseUrl } from '../support/database';
import { DATASET } from '../support/federation';
import { freePort, ProcessGroup } from '../support/processes';

/**
 * Issue 15's first complaint, as processes: a node started before its aggregator, and one whose
 * aggregator is killed and restarted, stays up and logs in again by itself.
 */
describe(`a client node outlives its aggregator (${databaseKind})`, () => {
  const group = new ProcessGroup();
  let tmp: string;
  let db: Awaited<ReturnType<typeof freshDatabaseUrl>>;

  const spawn = (args: string[], env: NodeJS.ProcessEnv): CliProcess => group.spawn(args, env);

  beforeAll(async () => {
    tmp = await mkdtemp(join(tmpdir(), 'confide-reconnect-'));
    db = await freshDatabaseUrl();
  });
  afterAll(async () => {
    await group.killAll();
    await db?.drop();
    if (tmp) await rm(tmp, { recursive: true, force: true });
  });

  it('waits for an aggregator that is not up yet, and logs in again after each kill -9 and restart', async () => {
    const port = await freePort();
    const serverEnv = cliEnv({ DATABASE_URL: db.url });
    const startServer = async (): Promise<CliProcess> => {
      const s = spawn(
        ['server', '--port', String(port), '--data-dir', join(tmp, 'server')],
        serverEnv,
      );
      await s.waitForOutput(/Confide aggregator listening on /, 60_000);
      return s;
    };

    // A federation and an approved site, then the aggregator goes away.
    let server = await startServer();
    const [, tokenFile] = await server.waitForOutput(/admin token was written to (\S+) /, 5000);
    const url = `http://127.0.0.1:${port}`;
    const api = new ApiClient(url, (await readFile(tokenFile!, 'utf8')).trim());
    const fed = await api.post<{ id: string }>('/api/v1/federations', {
      name: 'reconnect',
      modelSpec: { kind: 'logistic', inputDim: 30 },
      minSites: 1,
    });
    const keys = await runCliJson<{ publicKey: string }>([
      'node',
      'keys',
      '--key-dir',
      join(tmp, 'site'),
      '--json',
    ]);
    const site = await api.post<{ id: string }>(`/api/v1/federations/${fed.id}/sites`, {
      name: 'hospital-1',
      publicKey: keys.publicKey,
    });
    await api.post(`/api/v1/federations/${fed.id}/sites/${site.id}/approve`);
    const data = await loadCsv(DATASET, { label: 'diagnosis' });
    await writeFile(join(tmp, 'site.csv'), datasetToCsv(partitionIid(data, 3, 5)[0]!));
    await server.stop('SIGKILL');

    const node = spawn(
      [
        'node',
        'join',
        '--quiet',
        '--server',
        url,
        '--federation',
        fed.id,
        '--key-dir',
        join(tmp, 'site'),
        '--data',
        join(tmp, 'site.csv'),
        '--label',
        'diagnosis',
        '--max-backoff',
        '1s',
        '--json',
      ],
      cliEnv(),
    );
    // Started before its aggregator: it says so and keeps trying (it used to exit with code 13).
    await node.waitForOutput(/aggregator not reachable \(\d+\); reconnecting in \d\.\d s/, 30_000);
    await node.waitForOutput(/(aggregator not reachable[^\n]*\n[\s\S]*){3}/, 10_000);
    expect(node.running).toBe(true);

    server = await startServer();
    await node.waitForOutput(/connected as site "hospital-1"/, 30_000);
    await node.waitForOutput(/waiting for a round/, 5000);

    // kill -9 of the aggregator: the node notices, waits at most --max-backoff, comes back.
    await server.stop('SIGKILL');
    await node.waitForOutput(/connection lost \(\d+\); reconnecting in [01]\.\d s/, 30_000);
    expect(node.running).toBe(true);
    server = await startServer();
    await node.waitForOutput(/reconnected as site "hospital-1"/, 30_000);
    const sites = await api.get<Array<{ id: string; connected: boolean }>>(
      `/api/v1/federations/${fed.id}/sites`,
    );
    expect(sites.find((s) => s.id === site.id)?.connected).toBe(true);

    // A signal ends it cleanly, saying what it abandons.
    expect(await node.stop('SIGTERM')).toEqual({ code: 0, signal: null });
    expect(node.stderr).toMatch(/SIGTERM: stopping; abandoned waiting for a round/);
    expect(node.stderr).toMatch(/\nstopped\n?$/);
    // --json tells a script each change: reconnecting (with the wait), connected, waiting, stopped.
    const events = node.stdout
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { event: string; inMs?: number });
    const kinds = events.map((e) => e.event).filter((k, i, all) => k !== all[i - 1]);
    expect(kinds).toEqual([
      'start',
      'reconnecting',
      'connected',
      'waiting',
      'reconnecting',
      'connected',
      'waiting',
      'stopping',
      'stopped',
    ]);
    for (const e of events.filter((x) => x.event === 'reconnecting')) {
      expect(e.inMs).toBeGreaterThanOrEqual(0);
      expect(e.inMs).toBeLessThanOrEqual(1000);
    }
    await server.stop('SIGTERM');
  }, 180_000);

  it('gives up after --give-up-after without a connection, with the reason and a non-zero exit', async () => {
    const port = await freePort();
    await runCliJson(['node', 'keys', '--key-dir', join(tmp, 'lonely'), '--json']);
    const data = await loadCsv(DATASET, { label: 'diagnosis' });
    await writeFile(join(tmp, 'lonely.csv'), datasetToCsv(partitionIid(data, 3, 5)[1]!));
    const node = spawn(
      [
        'node',
        'join',
        '--quiet',
        '--server',
        `http://127.0.0.1:${port}`,
        '--federation',
        '00000000-0000-4000-8000-000000000000',
        '--key-dir',
        join(tmp, 'lonely'),
        '--data',
        join(tmp, 'lonely.csv'),
        '--label',
        'diagnosis',
        '--max-backoff',
        '1s',
        '--give-up-after',
        '3s',
      ],
      cliEnv(),
    );
    const exit = await node.waitForExit(30_000);
    expect(exit.code).not.toBe(0);
    expect(exit.code).not.toBeNull();
    expect(node.stderr).toMatch(/gave up: no connection to \S+ for \d+ s \(--give-up-after\)/);
  }, 60_000);

  it('refuses a malformed --max-backoff before it starts', async () => {
    const node = spawn(
      [
        'node',
        'join',
        '--server',
        'http://127.0.0.1:9',
        '--federation',
        '00000000-0000-4000-8000-000000000000',
        '--key-dir',
        join(tmp, 'nowhere'),
        '--data',
        join(tmp, 'nowhere.csv'),
        '--label',
        'diagnosis',
        '--max-backoff',
        'soon',
      ],
      cliEnv(),
    );
    const exit = await node.waitForExit(30_000);
    expect(exit.code).toBe(2);
    expect(node.stderr).toMatch(/--max-backoff must be a duration such as 30m/);
  }, 40_000);
});
