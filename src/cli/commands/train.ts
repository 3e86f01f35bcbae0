/**
 * `dorascope train`: full fine-tuning, LoRA or DoRA of a tiny Llama-named model
 * on TensorFlow.js. The library function is imported lazily so `--help` stays fast.
 * Not implemented yet: --resume.
 */
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';

interface Args {
  method: 'full' | 'lora' | 'dora';
  steps: number;
  seed: number;
  backend: 'wasm' | 'cpu';
  r: number;
  alpha: number;
  rslora: boolean;
  target: string;
  lr?: number;
  'dora-detach': boolean;
  layers: number;
  'd-model': number;
  heads: number;
  'eval-every': number;
  json: boolean;
  out?: string;
  'save-every': number;
  init: string;
  data: string;
}

export const trainCommand: CommandModule<object, Args> = {
  command: 'train',
  describe: 'Train a tiny Llama-named model on byte-level State of the Union text with full fine-tuning, LoRA or DoRA (tfjs, wasm or cpu backend)',
  builder: (y: Argv<object>) =>
    y
      .option('method', { type: 'string', choices: ['full', 'lora', 'dora'], demandOption: true, describe: 'What to train' })
      .option('steps', { type: 'number', default: 200, describe: 'Optimizer steps' })
      .option('seed', { type: 'number', default: 0, describe: 'Seed for init, batches and LoRA A; same seed → same run' })
      .option('backend', { type: 'string', choices: ['wasm', 'cpu'], default: 'wasm', describe: 'tfjs backend (webgpu/tensorflow: not yet)' })
      .option('r', { type: 'number', default: 8, describe: 'LoRA rank' })
      .option('alpha', { type: 'number', default: 16, describe: 'LoRA alpha (scaling alpha/r)' })
      .option('rslora', { type: 'boolean', default: false, describe: 'rsLoRA scaling alpha/√r' })
      .option('target', { type: 'string', default: 'q_proj,v_proj', describe: 'Comma-separated module names to adapt' })
      .option('lr', { type: 'number', describe: 'AdamW learning rate (default 3e-3 full, 1e-2 adapters)' })
      .option('dora-detach', { type: 'boolean', default: true, describe: 'DoRA: treat the weight norm as a constant in backward (paper §4.3)' })
      .option('layers', { type: 'number', default: 2, describe: 'Decoder layers' })
      .option('d-model', { type: 'number', default: 64, describe: 'Hidden size' })
      .option('heads', { type: 'number', default: 4, describe: 'Attention heads' })
      .option('eval-every', { type: 'number', default: 50, describe: 'Held-out loss every N steps (0: only at the end)' })
      .option('data', { type: 'string', choices: ['sotu', 'cmudict'], default: 'sotu', describe: 'sotu: State of the Union text (pretraining); cmudict: word → phonemes lines (the downstream task)' })
      .option('init', { type: 'string', default: 'random', describe: "'random' or an HF folder (model.safetensors + config.json with Llama names), e.g. a run's base/" })
      .option('out', { type: 'string', describe: 'Run folder for checkpoint-<step>/ (HF Trainer/PEFT layout) and base/' })
      .option('save-every', { type: 'number', default: 0, describe: 'Also checkpoint every K steps (0: only at the end)' })
      .option('json', { type: 'boolean', default: false, describe: 'Print the result as JSON' })
      .example('$0 train --method dora --steps 300 --target q_proj,k_proj,v_proj --out runs/dora --save-every 100', 'DoRA on attention projections; checkpoints in runs/dora')
      .example('$0 train --method lora --r 4 --alpha 8 --rslora --backend cpu', 'rank-4 rsLoRA on the cpu backend')
      .example('$0 train --method full --steps 100 --json', 'full fine-tuning, JSON result') as unknown as Argv<Args>,
  handler: async (argv: ArgumentsCamelCase<Args>) => {
    const { train } = await import('../../train/train.js');
    process.stderr.write(`backend: ${argv.backend}\n`);
    const res = await train({
      method: argv.method,
      steps: argv.steps,
      seed: argv.seed,
      init: argv.init,
      dataName: argv.data,
      backend: argv.backend,
      r: argv.r,
      alpha: argv.alpha,
      rslora: argv.rslora,
      target: argv.target.split(',').map((s) => s.trim()).filter((s) => s.length > 0),
      doraDetach: argv['dora-detach'],
      evalEvery: argv['eval-every'],
      config: {
        num_hidden_layers: argv.layers, hidden_size: argv['d-model'],
        intermediate_size: Math.round((argv['d-model'] * 8) / 3), num_attention_heads: argv.heads,
      },
      ...(argv.lr === undefined ? {} : { lr: argv.lr }),
      ...(argv.out === undefined ? {} : { out: argv.out, saveEvery: argv['save-every'] }),
      onProgress: (e) => {
        if (e.evalLoss !== undefined) process.stderr.write(`step ${e.step}: loss ${e.loss.toFixed(4)} eval ${e.evalLoss.toFixed(4)}\n`);
      },
    });
    if (argv.json) process.stdout.write(`${JSON.stringify(res, null, 2)}\n`);
    else
      process.stdout.write(
        `${res.dataset} on ${res.backend}: eval loss ${res.evalLossBefore.toFixed(4)} → ${res.evalLossAfter.toFixed(4)} after ${res.steps} steps\n`,
      );
  },
};
