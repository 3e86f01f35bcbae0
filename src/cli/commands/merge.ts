/**
 * `dorascope merge`: base + PEFT LoRA/DoRA adapter → one plain model folder.
 * The library function is imported lazily so `--help` stays fast.
 */
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';

interface Args {
  base: string;
  adapter: string;
  out: string;
  force: boolean;
}

export const mergeCommand: CommandModule<object, Args> = {
  command: 'merge',
  describe: "Merge a PEFT LoRA/DoRA adapter into its base model (PEFT's merge rule), streaming one tensor at a time, written atomically",
  builder: (y: Argv<object>) =>
    y
      .option('base', { type: 'string', demandOption: true, describe: 'Base model: .safetensors file, HF folder (sharded ok) or org/name in the local HF cache' })
      .option('adapter', { type: 'string', demandOption: true, describe: 'PEFT adapter folder (adapter_config.json + adapter_model.safetensors)' })
      .option('out', { type: 'string', demandOption: true, describe: 'Output folder for model.safetensors (+ config.json copied from the base); never inside the base or the adapter' })
      .option('force', { type: 'boolean', default: false, describe: 'Replace an existing --out that is not an earlier merge' })
      .example('$0 merge --base runs/dora/base --adapter runs/dora/checkpoint-300 --out merged/', 'merge a trained DoRA adapter') as unknown as Argv<Args>,
  handler: async (argv: ArgumentsCamelCase<Args>) => {
    const { mergeAdapter } = await import('../../io/peft/merge-adapter.js');
    const r = await mergeAdapter(argv.base, argv.adapter, argv.out, { force: argv.force });
    process.stdout.write(`wrote ${r.out}: ${r.tensors} tensors, ${r.adapted} adapted\n`);
  },
};
