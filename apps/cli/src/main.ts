import { CliError, parseCommandArgs, usage, UsageError, type Command, type Io } from './command';
import { adminCommands, apiFailure } from './commands/admin';
import { auditCommands } from './commands/audit';
import { dbCommands } from './commands/db';
import { demoCommand } from './commands/demo-command';
import { nodeJoinCommand, nodeKeysCommand, nodePolicyCommand } from './commands/node';
import { privacyCommands } from './commands/privacy';
import { serverCommand } from './commands/server';
import { simulateCommand } from './commands/simulate';
import { tlsCreateCommand } from './commands/tls';

/** Every command of `confide`. */
export const COMMANDS: Command[] = [
  demoCommand,
  simulateCommand,
  serverCommand,
  nodeKeysCommand,
  nodeJoinCommand,
  nodePolicyCommand,
  ...adminCommands,
  ...auditCommands,
  ...dbCommands,
  ...privacyCommands,
  tlsCreateCommand,
];

const GROUPS: Record<string, string> = {
  node: 'run a site: create keys, check its privacy policy, join a federation',
  admin: 'manage federations, sites, rounds and tokens over the REST API',
  db: 'database migrations and roles',
  audit: 'verify and export the epsilon ledger',
  privacy: 'differential privacy: epsilon of a plan, noise for a budget',
  tls: 'TLS material for the aggregator: a private CA and a certificate',
};

function topHelp(): string {
  const lines = [
    'confide — federated learning with secure aggregation, differential privacy and an auditable epsilon ledger',
    '',
    'Usage: confide <command> [options]      confide <command> --help for its options',
    '',
    'Commands:',
  ];
  const w = Math.max(...COMMANDS.map((c) => c.path.join(' ').length)) + 2;
  for (const c of COMMANDS) lines.push(`  ${c.path.join(' ').padEnd(w)}${c.summary}`);
  lines.push(
    '',
    'Environment: DATABASE_URL (Postgres for server and demo), DATABASE_OWNER_URL (its migrations), CONFIDE_SERVER, CONFIDE_TOKEN, CONFIDE_FEDERATION',
  );
  return lines.join('\n');
}

function groupHelp(prefix: string[]): string {
  const cmds = COMMANDS.filter((c) => prefix.every((p, i) => c.path[i] === p));
  const w = Math.max(...cmds.map((c) => c.path.join(' ').length)) + 2;
  return [
    `Usage: confide ${prefix.join(' ')} <command> [options]`,
    '',
    GROUPS[prefix[0]!] ?? '',
    '',
    'Commands:',
    ...cmds.map((c) => `  ${c.path.join(' ').padEnd(w)}${c.summary}`),
  ].join('\n');
}

/** Runs the CLI on `argv` (without node and script); returns the exit code. */
export async function main(argv: string[], io: Io): Promise<number> {
  if (argv.length === 0 || argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help') {
    io.out(topHelp());
    return argv.length === 0 ? 2 : 0;
  }
  if (argv[0] === '--version') {
    io.out('confide 0.1.0');
    return 0;
  }
  // The longest command path that matches the leading words.
  const words = argv.filter((a) => !a.startsWith('-'));
  let cmd: Command | undefined;
  for (const c of COMMANDS) {
    if (c.path.every((p, i) => argv[i] === p) && (!cmd || c.path.length > cmd.path.length)) cmd = c;
  }
  if (!cmd) {
    const prefix = words
      .slice(0, 2)
      .filter((w, i) =>
        COMMANDS.some((c) => c.path[i] === w && (i === 0 || c.path[0] === words[0])),
      );
    if (prefix.length && COMMANDS.some((c) => c.path[0] === prefix[0])) {
      const isHelp = argv.includes('--help') || argv.includes('-h');
      io[isHelp ? 'out' : 'err'](
        (isHelp || prefix.length === words.length
          ? ''
          : `confide: unknown command "${words.join(' ')}"\n\n`) + groupHelp(prefix),
      );
      return isHelp ? 0 : 2;
    }
    io.err(`confide: unknown command "${argv[0]}"\n\n${topHelp()}`);
    return 2;
  }
  const rest = argv.slice(cmd.path.length);
  if (rest.includes('--help') || rest.includes('-h')) {
    io.out(usage(cmd));
    return 0;
  }
  try {
    const { opts, positionals } = parseCommandArgs(cmd, rest);
    return (await cmd.run(opts, positionals, io)) ?? 0;
  } catch (e) {
    if (e instanceof UsageError) {
      io.err(`confide ${cmd.path.join(' ')}: ${e.message}\n\n${usage(cmd)}`);
      return 2;
    }
    const api = apiFailure(e);
    if (api) {
      io.err(`confide ${cmd.path.join(' ')}: ${api.message}`);
      return api.exitCode;
    }
    if (e instanceof CliError) {
      io.err(`confide ${cmd.path.join(' ')}: ${e.message}`);
      return e.exitCode;
    }
    const err = e as Error;
    // Errors from our libraries carry messages meant for people (MlError, NodeError, ProtocolError...).
    io.err(`confide ${cmd.path.join(' ')}: ${err?.message ?? String(e)}`);
    if (process.env['CONFIDE_DEBUG']) io.err(err?.stack ?? '');
    return 1;
  }
}
