/**
 * `dorascope inspect PATH`: what a checkpoint holds, from headers only.
 * The library function is imported lazily so `--help` stays fast.
 */
import type { CommandModule } from 'yargs';

interface InspectArgs {
  path: string;
  json: boolean;
  base: string | undefined;
}

export const inspectCommand: CommandModule<object, InspectArgs> = {
  command: 'inspect <path>',
  describe: 'List the tensors (dtype, shape, parameters), totals by dtype and metadata of a checkpoint; the config and targets of a PEFT adapter; the checkpoints of a Trainer run. Reads headers only.',
  builder: (y) =>
    y
      .positional('path', {
        type: 'string',
        demandOption: true,
        describe: 'A .safetensors file, a model folder (model.safetensors or a sharded index), a PEFT adapter folder, a Trainer run folder (checkpoint-<N>/), or a Hugging Face id org/name[@revision] from the local cache',
      })
      .option('json', { type: 'boolean', default: false, describe: 'Print JSON for machines instead of text' })
      .option('base', { type: 'string', describe: 'For an adapter: the base model to map its modules onto (path or org/name), checking shapes and layouts' })
      .example('$0 inspect model.safetensors', 'tensors, dtypes, parameter counts, metadata')
      .example('$0 inspect ./Llama-3.1-8B --json', 'a sharded folder, as JSON')
      .example('$0 inspect ./out/checkpoint-500 --base meta-llama/Llama-3.2-1B', 'a DoRA/LoRA adapter: r, alpha, scaling, and the base tensor each module changes')
      .example('$0 inspect ./out', 'a Trainer run: its checkpoints ordered by step') as never,
  handler: async (args) => {
    const { inspect, formatInspect } = await import('../../io/inspect.js');
    const r = await inspect(args.path, { base: args.base });
    process.stdout.write(args.json ? `${JSON.stringify(r, null, 2)}\n` : formatInspect(r));
  },
};
