import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { BACKEND_CHOICES } from '../../compute/backend-types.js';

interface Args {
  out: string;
  backend: string;
}

/** `dorascope demo`: `reproduce --quick` into ./dorascope-demo, offline, well under a minute on a laptop CPU. */
export const demoCommand: CommandModule<object, Args> = {
  command: 'demo',
  describe: 'Run the whole pipeline on a tiny model (reproduce --quick) and print where the report is',
  builder: (y: Argv<object>) =>
    y
      .option('out', { type: 'string', default: 'dorascope-demo', describe: 'Folder for the demo report and checkpoints' })
      .option('backend', { type: 'string', default: 'auto', choices: [...BACKEND_CHOICES], describe: 'Training backend' })
      .example('$0 demo', 'train FT, LoRA, DoRA and DoRA† on a tiny model, analyse them, and write dorascope-demo/report.html')
      .example('$0 demo --out /tmp/demo --backend wasm', 'elsewhere, on the WebAssembly backend') as unknown as Argv<Args>,
  handler: async (argv: ArgumentsCamelCase<Args>) => {
    const { reproduce } = await import('../../reproduce/reproduce.js');
    const res = await reproduce({ out: argv.out, quick: true, backend: argv.backend, command: ['demo', ...(argv.out === 'dorascope-demo' ? [] : ['--out', argv.out])] });
    process.stdout.write(
      `\nThe demo report is ready:\n  ${res.report}\n` +
        `Results table and the exact command: ${res.readme}\n` +
        `Checkpoints (HF Trainer / PEFT folders) to explore: ${res.out}/checkpoints\n`,
    );
  },
};
