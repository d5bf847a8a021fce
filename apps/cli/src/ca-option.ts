import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { CliError, type OptionSpec, type ParsedOptions } from './command';

/** `--ca FILE`: the CAs that may sign the aggregator's TLS certificate (a private CA). */
export const caOption: Record<string, OptionSpec> = {
  ca: {
    type: 'string',
    value: 'FILE.pem',
    description:
      "trust the aggregator's TLS certificate when this CA bundle signed it (NODE_EXTRA_CA_CERTS works too)",
    env: 'CONFIDE_CA',
  },
};

/** The PEM bundle named by --ca, or undefined; a clear error when it cannot be read or holds no certificate. */
export function readCaOption(opts: ParsedOptions): string | undefined {
  const file = opts['ca'];
  if (typeof file !== 'string' || file === '') return undefined;
  let pem: string;
  try {
    pem = readFileSync(resolve(file), 'utf8');
  } catch (e) {
    throw new CliError(`--ca ${file}: ${(e as Error).message}`, 2);
  }
  if (!pem.includes('-----BEGIN CERTIFICATE-----')) {
    throw new CliError(`--ca ${file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)`, 2);
  }
  return pem;
}
