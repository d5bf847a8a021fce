import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { isIP } from 'node:net';
import { join, resolve } from 'node:path';
import { CliError, numberOption, str, UsageError, type Command } from '../command';

export const tlsCreateCommand: Command = {
  path: ['tls', 'create'],
  summary: 'Create a private CA and a TLS certificate for the aggregator',
  description:
    'Writes ca.pem (give it to the sites and admins: --ca), cert.pem and key.pem (mode 0600; give them to\n' +
    '`confide server --tls-cert cert.pem --tls-key key.pem`) into --out-dir. The CA key is never written:\n' +
    'nothing else can be signed with it, so run this again (and hand out the new ca.pem) to renew.',
  options: {
    hostname: {
      type: 'string',
      value: 'NAMES',
      description: 'DNS names or IP addresses of the aggregator, comma separated',
      required: true,
    },
    'out-dir': { type: 'string', value: 'DIR', description: 'where to write', required: true },
    days: { type: 'string', value: 'N', description: 'validity in days', default: '365' },
    json: { type: 'boolean', description: 'print { caFile, certFile, keyFile, caFingerprint }' },
  },
  examples: ['confide tls create --hostname aggregator,localhost --out-dir deploy/tls'],
  async run(opts, _pos, io) {
    const names = str(opts, 'hostname')
      .split(',')
      .map((n) => n.trim())
      .filter(Boolean);
    if (!names.length) throw new UsageError('--hostname names at least one host');
    const days = numberOption(opts, 'days', { integer: true, min: 1, max: 397 })!;
    const { createThrowawayCa } = await import('../tls-ca');
    let made;
    try {
      made = await createThrowawayCa({
        hostnames: names.filter((n) => !isIP(n)),
        ips: names.filter((n) => isIP(n)),
        days,
      });
    } catch (e) {
      throw new CliError((e as Error).message, 2);
    }
    const dir = resolve(str(opts, 'out-dir'));
    await mkdir(dir, { recursive: true });
    const files = {
      caFile: join(dir, 'ca.pem'),
      certFile: join(dir, 'cert.pem'),
      keyFile: join(dir, 'key.pem'),
    };
    await writeFile(files.caFile, made.caCertPem);
    await writeFile(files.certFile, made.certPem);
    await writeFile(files.keyFile, made.keyPem, { mode: 0o600 });
    await chmod(files.keyFile, 0o600);
    if (opts['json']) {
      io.out(JSON.stringify({ ...files, caFingerprint: made.caFingerprint }));
    } else {
      io.err(`CA ${made.caFingerprint}; certificate for ${names.join(', ')}, ${days} days`);
      io.out(`${files.caFile}\n${files.certFile}\n${files.keyFile}`);
    }
    return 0;
  },
};
