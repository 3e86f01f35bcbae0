/**
 * The CLI: a thin yargs layer over the library. `buildCli(argv)` lets tests run
 * commands in-process; `main(argv)` is the one place where errors become a
 * one-line message and an exit code (stack traces only with --debug).
 */
import yargs, { type Argv } from 'yargs';
import { DorascopeError } from '../errors.js';
import { VERSION } from '../version.js';
import { inspectCommand } from './commands/inspect.js';
import { analyzeCommand } from './commands/analyze.js';
import { combineCommand } from './commands/combine.js';
import { reportCommand } from './commands/report.js';
import { compareCommand } from './commands/compare.js';
import { trainCommand } from './commands/train.js';
import { mergeCommand } from './commands/merge.js';
import { reproduceCommand } from './commands/reproduce.js';
import { demoCommand } from './commands/demo.js';

export function buildCli(argv: readonly string[]): Argv {
  return yargs([...argv])
    .scriptName('dorascope')
    .usage('$0 <command> [options]\n\nMagnitude/direction analysis of fine-tuning (DoRA paper, arXiv 2402.09353, §3).')
    .command(demoCommand)
    .command(inspectCommand)
    .command(analyzeCommand)
    .command(combineCommand)
    .command(reportCommand)
    .command(compareCommand)
    .command(trainCommand)
    .command(mergeCommand)
    .command(reproduceCommand)
    .option('debug', { type: 'boolean', default: false, describe: 'Print stack traces for errors' })
    .demandCommand(1, 'Name a command (see --help).')
    .recommendCommands()
    .strict()
    .version(VERSION)
    .help()
    .alias('h', 'help')
    // yargs renders every command's help before it runs one (to have it ready for a failure);
    // wrapping that text to the terminal costs ~30 ms of each run, so only help output is wrapped.
    .wrap(argv.some((a) => a === '--help' || /^-[a-z]*h[a-z]*$/iu.test(a)) ? Math.min(110, process.stdout.columns ?? 100) : null)
    // English whatever LANG says, as every message of dorascope's own is (and the bundled CLI has no yargs locale files).
    .detectLocale(false)
    .exitProcess(false)
    .fail((msg, err) => {
      if (err) throw err;
      throw new DorascopeError('E_USAGE', msg);
    });
}

/** Runs the CLI and returns the process exit code: 0 ok, 1 user/input error, 2 usage error, 70 internal error. */
export async function main(argv: readonly string[]): Promise<number> {
  const debug = argv.includes('--debug');
  try {
    await buildCli(argv).parseAsync();
    return 0;
  } catch (e) {
    return reportError(e, debug);
  }
}

function reportError(e: unknown, debug: boolean): number {
  if (e instanceof DorascopeError) {
    process.stderr.write(`dorascope: error [${e.code}]: ${e.message}\n`);
    if (debug && e.stack) process.stderr.write(`${e.stack}\n`);
    else if (e.code !== 'E_USAGE') process.stderr.write('(run with --debug for a stack trace)\n');
    return e.code === 'E_USAGE' ? 2 : 1;
  }
  const err = e instanceof Error ? e : new Error(String(e));
  process.stderr.write(`dorascope: internal error: ${err.message}\n`);
  if (debug && err.stack) process.stderr.write(`${err.stack}\n`);
  else process.stderr.write('(this is a bug; run with --debug for a stack trace and report it)\n');
  return 70;
}
