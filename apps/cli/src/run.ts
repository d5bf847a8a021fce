import { main } from './main';

// Entry point used by bin/confide.js.
const code = await main(process.argv.slice(2), {
  out: (t) => process.stdout.write(`${t}\n`),
  err: (t) => process.stderr.write(`${t}\n`),
});
process.exitCode = code;
// Background handles (tfjs, pg pools) must not keep a finished command alive.
setTimeout(() => process.exit(code), 200).unref();
