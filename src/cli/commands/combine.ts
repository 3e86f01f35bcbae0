/**
 * `dorascope combine OUT SHARD...`: the folders of `analyze --shard K/N` put back together into the
 * folder one unsharded analysis writes (src/analysis/combine.ts). The library is imported lazily so
 * `--help` stays fast.
 */
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';

interface Args {
  out: string;
  shards: string[];
  force: boolean;
  quiet: boolean;
  report: boolean;
  json: boolean;
}

export const combineCommand: CommandModule<object, Args> = {
  command: 'combine <out> <shards..>',
  describe: 'Put the parts of a sharded analysis (analyze --shard K/N) back together: the tables and every statistic, as one run writes them',
  builder: (y: Argv<object>) =>
    y
      .positional('out', { type: 'string', demandOption: true, describe: 'Output folder (what analyze --out would have written); never one of the shards' })
      .positional('shards', { type: 'string', array: true, describe: 'The shard folders, K = 1 to N, in any order', default: undefined })
      .option('force', { type: 'boolean', default: false, describe: 'Replace an existing OUT that is not an earlier analysis (never a shard)' })
      .option('quiet', { type: 'boolean', default: false, describe: 'No progress output' })
      .option('report', { type: 'boolean', default: false, describe: 'Also write report.html into OUT' })
      .option('json', { type: 'boolean', default: false, describe: 'Print a JSON summary on stdout (files written, per-run statistics) instead of the folder name' })
      .example('$0 combine analysis parts/1 parts/2 parts/3 parts/4', 'four shards into one analysis folder')
      .example('$0 combine analysis parts/* --report', 'every shard under parts/, and the report') as unknown as Argv<Args>,
  handler: async (argv: ArgumentsCamelCase<Args>) => {
    const { combine } = await import('../../analysis/combine.js');
    const started = Date.now();
    const command = ['dorascope', 'combine', argv.out, ...argv.shards, ...(argv.force ? ['--force'] : []), ...(argv.report ? ['--report'] : [])];
    const result = await combine({ out: argv.out, shards: argv.shards, force: argv.force, command,
      ...(argv.quiet ? {} : { log: (line: string) => process.stderr.write(`${line}\n`) }) });
    const { finishAnalysisFolder } = await import('../report-output.js');
    await finishAnalysisFolder('combine', argv.out, started, result.summary.runs, argv);
  },
};
