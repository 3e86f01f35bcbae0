import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { BACKEND_CHOICES } from '../../compute/backend-types.js';
import { DorascopeError } from '../../errors.js';

interface Args {
  out: string;
  quick: boolean;
  preset?: string;
  rejudge?: string;
  base?: string;
  work?: string;
  backend: string;
  png: boolean;
  notes?: string;
  methods?: string;
  'drop-checkpoints': boolean;
}

/** `dorascope reproduce`: the DoRA paper's Figure 2 analysis end to end (src/reproduce). */
export const reproduceCommand: CommandModule<object, Args> = {
  command: 'reproduce',
  describe: "Reproduce the DoRA paper's magnitude/direction analysis end to end: pretrain, fine-tune FT/LoRA/DoRA/DoRA†, analyse, report",
  builder: (y: Argv<object>) =>
    y
      .option('out', { type: 'string', default: 'reports/reproduce', describe: 'Folder for the report, tables, summary.json and README.md' })
      .option('quick', { type: 'boolean', default: false, describe: 'The quick preset: tiny model, few steps (about a minute on 2 CPU cores); what `demo` and CI run' })
      .option('rejudge', { type: 'string', describe: 'Recompute the statistics, tables, summary.json, README.md and pages of a finished reproduction folder from its saved tables (no training; with --png, the figures too)' })
      .option('preset', { type: 'string', choices: ['quick', 'full', 'gpu'], describe: 'quick; full (the published run: 8 layers, 2 bases × 2 seeds, about half an hour on 2 quiet CPU cores); gpu (wider, deeper, longer: for --backend webgpu)' })
      .option('methods', { type: 'string', describe: "PEFT methods to train and compare beside the paper's four (FT, LoRA, DoRA, DoRA†): a comma-separated list of vera, dvora, qlora, qdora, or all" })
      .option('base', { type: 'string', describe: 'Fine-tune this base model (HF folder or .safetensors) instead of pretraining one' })
      .option('work', { type: 'string', describe: 'Folder for the checkpoints (default OUT/checkpoints)' })
      .option('drop-checkpoints', { type: 'boolean', default: false, describe: 'Delete the checkpoints at the end (keep only report, tables, summary)' })
      .option('backend', { type: 'string', default: 'auto', choices: [...BACKEND_CHOICES], describe: 'Training backend' })
      .option('notes', { type: 'string', describe: "A markdown file with a hand-written discussion to put in the README" })
      .option('png', { type: 'boolean', default: false, describe: "Also export the report's figures as PNG into OUT/png (needs Chromium)" })
      .example('$0 reproduce --quick --out my-run', 'the quick preset (about a minute on 2 CPU cores): my-run/report.html and README.md')
      .example('$0 reproduce --preset full --out reports/reproduce --png', 'the published run, with PNG figures')
      .example('$0 reproduce --quick --methods all --out methods-run', 'FT, LoRA, DoRA, DoRA†, VeRA, DVoRA, QLoRA and QDoRA side by side in one compare report')
      .example('$0 reproduce --base ./my-model --preset quick --drop-checkpoints', 'fine-tune your own base model; keep only the report, tables and summary') as unknown as Argv<Args>,
  handler: async (argv: ArgumentsCamelCase<Args>) => {
    if (argv.rejudge !== undefined) {
      const { rejudge } = await import('../../reproduce/judge.js');
      const res = await rejudge(argv.rejudge, { png: argv.png });
      process.stdout.write(`README: ${res.readme}\n`);
      return;
    }
    const { reproduce } = await import('../../reproduce/reproduce.js');
    const { presetByName } = await import('../../reproduce/plan.js');
    const { parseMethods } = await import('../../reproduce/methods.js');
    const methods = parseMethods(argv.methods);
    if (argv.quick && argv.preset !== undefined) throw new DorascopeError('E_USAGE', '--quick and --preset cannot be used together (--quick is --preset quick)');
    // The command to record, rebuilt from the parsed options (process.argv is not ours when run in-process).
    const command = [
      'reproduce', ...(argv.quick ? ['--quick'] : []), ...(argv.preset === undefined ? [] : ['--preset', argv.preset]), '--out', argv.out,
      ...(argv.base === undefined ? [] : ['--base', argv.base]), ...(argv.work === undefined ? [] : ['--work', argv.work]),
      ...(argv['drop-checkpoints'] ? ['--drop-checkpoints'] : []), '--backend', argv.backend, ...(argv.png ? ['--png'] : []),
      ...(argv.notes === undefined ? [] : ['--notes', argv.notes]),
      ...(methods.length === 0 ? [] : ['--methods', methods.map((m) => m.key).join(',')]),
    ];
    const res = await reproduce({
      command,
      out: argv.out,
      quick: argv.quick,
      ...(argv.preset === undefined ? {} : { preset: presetByName(argv.preset) }),
      backend: argv.backend,
      png: argv.png,
      dropCheckpoints: argv['drop-checkpoints'],
      ...(argv.base === undefined ? {} : { base: argv.base }),
      ...(argv.work === undefined ? {} : { work: argv.work }),
      ...(argv.notes === undefined ? {} : { notes: argv.notes }),
      methods,
    });
    process.stdout.write(`report: ${res.report}\nREADME: ${res.readme}\n`);
  },
};
