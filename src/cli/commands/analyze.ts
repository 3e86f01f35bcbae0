import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { DorascopeError, q } from '../../errors.js';
import { boundedOptional } from '../numbers.js';

interface Args {
  base: string;
  quantizedBase?: string;
  runs: string[];
  label?: string[];
  modules?: string;
  modulesRegex?: string;
  layers?: string;
  out: string;
  perRow: boolean;
  force: boolean;
  format: string[];
  quiet: boolean;
  report: boolean;
  adapterPath: 'fast' | 'merge';
  workers?: number;
  group?: string[];
  shard?: string;
  json: boolean;
}

export const analyzeCommand: CommandModule<object, Args> = {
  command: 'analyze <runs..>',
  describe: 'ΔM and ΔD (DoRA paper §3.2) of every checkpoint of each run against the base, plus statistics',
  builder: (y: Argv<object>) =>
    y
      .positional('runs', { type: 'string', array: true, describe: 'Trainer run folders, checkpoints, PEFT adapter folders or full weights (one or more)',
        default: undefined }) // yargs would show a variadic positional as both required and "[default: []]"
      .option('base', { type: 'string', demandOption: true, describe: 'Pretrained weights (file, folder, sharded folder, or org/name in the local HF cache)' })
      .option('quantized-base', { type: 'string', describe: 'The bitsandbytes-quantized base (NF4/FP4/int8) the runs were trained on (QLoRA/QDoRA): runs are measured against it dequantized, and a run "quantization" compares --base with it' })
      // nargs 1: `--label dora=RUN RUN` must leave RUN as a positional (repeat --label for several runs).
      .option('label', { type: 'string', array: true, nargs: 1, describe: 'Name a run: NAME=RUN (default: the folder name)' })
      .option('modules', { type: 'string', describe: 'Comma-separated module names, e.g. q_proj,v_proj' })
      .option('modules-regex', { type: 'string', describe: 'Regex on full tensor names (instead of --modules)' })
      .option('layers', { type: 'string', describe: 'Layer indices and ranges, e.g. 0-5,8' })
      .option('out', { type: 'string', default: 'dorascope-out', describe: 'Output folder' })
      .option('per-row', { type: 'boolean', default: false, describe: 'Also write rows.arrow (and rows.parquet) with per-feature m0, mt and cos' })
      .option('format', { type: 'string', array: true, default: ['arrow,parquet,csv'], describe: 'Table file formats, comma-separated: arrow (the report reads it), parquet, csv' })
      .option('force', { type: 'boolean', default: false, describe: 'Replace an existing --out that is not an earlier analysis (never an input)' })
      .option('quiet', { type: 'boolean', default: false, describe: 'No progress output' })
      .option('report', { type: 'boolean', default: false, describe: 'Also write report.html into the output folder' })
      .option('adapter-path', { choices: ['fast', 'merge'] as const, default: 'fast' as const, describe: 'Adapter checkpoints: exact algebra where the method has one (LoRA family from W0·Aᵀ and A·Aᵀ, IA³ in one pass over W0; LoHa/LoKr always merge) (fast) or through the merged weights (merge)' })
      .option('workers', { type: 'number', describe: 'Worker threads (0: none); default: 2 on a multi-core machine for large analyses' })
      .option('group', { type: 'string', array: true, nargs: 1, describe: 'Runs that are seeds of one configuration: NAME=RUN,RUN (run labels); summary.json gets each statistic\'s mean and range' })
      .option('shard', { type: 'string', describe: 'Do part K of N of the analysis (K/N, 1 ≤ K ≤ N ≤ 10000), for N processes on N machines; put the parts together with `dorascope combine`' })
      .option('json', { type: 'boolean', default: false, describe: 'Print a JSON summary on stdout (files written, per-run statistics) instead of the folder name' })
      .conflicts('modules', 'modules-regex')
      .example('$0 analyze --base base/ runs/lora runs/ft --modules q_proj,v_proj', 'two Trainer runs, query and value matrices')
      .example('$0 analyze --base meta-llama/Llama-3.1-8B --label dora=out/dora-adapter out/dora-adapter --report', 'a PEFT adapter against a base from the local HF cache')
      .example('$0 analyze --base base/ --label ft-s1=runs/ft-s1 --label ft-s2=runs/ft-s2 runs/ft-s1 runs/ft-s2 --group ft=ft-s1,ft-s2', 'two seeds of full fine-tuning, summarised together')
      .example('$0 analyze --base base-fp16/ --quantized-base base-nf4/ --label qdora=out/qdora out/qdora', 'a QDoRA adapter against its NF4 base, with the quantization step as a run of its own')
      .example('$0 analyze --base model.safetensors ckpt.safetensors --layers 0-5,8 --per-row', 'one checkpoint, six layers, per-feature table')
      .example('$0 analyze --base base/ runs/dora --quiet --json | jq .runs[0].overall.pearson_r', 'machine-readable: files written and each run\'s statistics')
      .example('$0 analyze --base base/ runs/lora --format parquet', 'Parquet tables only (for DuckDB or pandas)')
      .example('$0 analyze --base base/ runs/ft --shard 2/4 --out parts/2', 'the second of four parts (docs/sharding.md); then: dorascope combine out parts/1 parts/2 parts/3 parts/4') as unknown as Argv<Args>,
  handler: async (argv: ArgumentsCamelCase<Args>) => {
    boundedOptional('workers', argv.workers, { min: 0, max: Number.MAX_SAFE_INTEGER, integer: true });
    // Worker threads start while the analysis loads and opens its inputs, where the runs' bytes over 4
    // (F32 weights) already call for them. An estimate: a run folder's optimizer state counts too, and
    // --modules or --layers may leave less work (workers the analysis does not take just exit with the
    // process); adapter runs are small files, and their workers start when the analysis decides.
    const { prestartWorkers } = await import('../../analysis/pool.js');
    const { workerCount } = await import('../../analysis/worker-count.js');
    const { pathBytes } = await import('../../io/path-bytes.js');
    prestartWorkers(workerCount(argv.workers, argv.runs.reduce((a, r) => a + (pathBytes(r) ?? 0), 0) / 4));
    const { analyze, parseLayers } = await import('../../analysis/analyze.js');
    const { parseGroup } = await import('../../analysis/run-summary.js');
    const { parseFormats } = await import('../../analysis/table-formats.js');
    const { parseShard } = await import('../../analysis/shard.js');
    const formats = parseFormats(argv.format);
    const shard = argv.shard === undefined ? undefined : parseShard(argv.shard);
    if (shard && argv.report) throw new DorascopeError('E_USAGE', '--report with --shard: a shard holds part of the rows; report the folder `dorascope combine` writes');
    if (argv.report && !formats.includes('arrow')) throw new DorascopeError('E_USAGE', `--report reads decomposition.arrow: add arrow to --format ${q(formats.join(','))}`);
    const groups = Object.fromEntries((argv.group ?? []).map(parseGroup));
    const labels = new Map<string, string>();
    for (const l of argv.label ?? []) {
      const i = l.indexOf('=');
      if (i <= 0) throw new DorascopeError('E_USAGE', `--label ${q(l)}: expected NAME=RUN`);
      labels.set(l.slice(i + 1), l.slice(0, i));
    }
    for (const run of labels.keys()) {
      if (!argv.runs.includes(run)) throw new DorascopeError('E_USAGE', `--label names ${q(run)}, which is not one of the runs`);
    }
    // The command to record, rebuilt from the parsed options: process.argv is not this command's
    // when the CLI runs in-process (tests, notebooks calling buildCli/main).
    const command = [
      'dorascope', 'analyze', '--base', argv.base,
      ...(argv.quantizedBase === undefined ? [] : ['--quantized-base', argv.quantizedBase]),
      ...(argv.label ?? []).flatMap((l) => ['--label', l]),
      ...(argv.modules === undefined ? [] : ['--modules', argv.modules]),
      ...(argv.modulesRegex === undefined ? [] : ['--modules-regex', argv.modulesRegex]),
      ...(argv.layers === undefined ? [] : ['--layers', argv.layers]),
      '--out', argv.out,
      ...(formats.join(',') === 'arrow,parquet,csv' ? [] : ['--format', formats.join(',')]),
      ...(argv.adapterPath === 'merge' ? ['--adapter-path', 'merge'] : []),
      ...(argv.workers === undefined ? [] : ['--workers', String(argv.workers)]),
      ...(argv.group ?? []).flatMap((g) => ['--group', g]),
      ...(shard === undefined ? [] : ['--shard', `${shard.k}/${shard.n}`]),
      ...(argv.perRow ? ['--per-row'] : []), ...(argv.force ? ['--force'] : []), ...(argv.quiet ? ['--quiet'] : []), ...(argv.report ? ['--report'] : []),
      ...argv.runs,
    ];
    const started = Date.now();
    const options = {
      base: argv.base,
      quantizedBase: argv.quantizedBase,
      runs: argv.runs.map((path) => ({ path, label: labels.get(path) })),
      modules: argv.modules?.split(',').map((s) => s.trim()).filter(Boolean),
      modulesRegex: argv.modulesRegex,
      layers: argv.layers === undefined ? undefined : parseLayers(argv.layers),
      out: argv.out,
      perRow: argv.perRow,
      force: argv.force,
      formats,
      quiet: argv.quiet,
      adapterPath: argv.adapterPath,
      workers: argv.workers,
      groups,
      command,
    };
    if (shard) {
      const { analyzeShard } = await import('../../analysis/analyze.js');
      const part = await analyzeShard(options, shard);
      if (argv.json) {
        const { filesWrittenSince, printJson } = await import('../json-summary.js');
        printJson({ command: 'analyze', out: argv.out, files: filesWrittenSince(argv.out, started), shard: { k: shard.k, n: shard.n, rows: part.summary.shard.items, fingerprint: part.summary.shard.fingerprint } });
      } else {
        process.stdout.write(`${argv.out}\n`);
      }
      return;
    }
    const result = await analyze(options);
    const { finishAnalysisFolder } = await import('../report-output.js');
    await finishAnalysisFolder('analyze', argv.out, started, result.summary.runs, argv);
  },
};
