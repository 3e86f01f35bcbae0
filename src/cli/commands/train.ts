/**
 * `dorascope train`: full fine-tuning, LoRA, DoRA, VeRA or DVoRA of a tiny Llama-named model
 * on TensorFlow.js. The library function is imported lazily so `--help` stays fast.
 * Progress goes to stderr through the shared reporter (src/progress.ts): a redrawn bar on a
 * terminal, plain lines otherwise.
 */
import type { ArgumentsCamelCase, Argv, CommandModule } from 'yargs';
import { checkTrainNumbers } from '../numbers.js';
import { BACKEND_CHOICES, type BackendChoice } from '../../compute/backend-types.js';
import { DorascopeError } from '../../errors.js';
import { defaultRank, TRAIN_DEFAULTS as D, VERA_DEFAULTS } from '../../train/defaults.js';
import type { AdapterMethod } from '../../train/types.js';
import { SCHEDULERS } from '../../train/schedule.js';

interface Args {
  method: 'full' | AdapterMethod;
  steps: number;
  seed: number;
  backend: BackendChoice;
  r?: number;
  'vera-d-initial': number;
  'projection-prng-key': number;
  alpha: number;
  rslora: boolean;
  target: string;
  lr?: number;
  'dora-detach': boolean;
  quantize?: 'nf4' | 'fp4';
  'quant-block-size'?: number;
  'double-quant'?: boolean;
  layers: number;
  'd-model': number;
  heads: number;
  'eval-every': number;
  json: boolean;
  out?: string;
  'save-every': number;
  init: string;
  data: string;
  resume: boolean;
  force: boolean;
  'lr-scheduler': string;
  'warmup-steps': number;
  'warmup-ratio': number;
  'weight-decay': number;
  'magnitude-only'?: string;
  'batch-size': number;
  'context-length': number;
  quiet: boolean;
  'report-to': string[];
}

const list = (s: string) => s.split(',').map((x) => x.trim()).filter((x) => x.length > 0);

export const trainCommand: CommandModule<object, Args> = {
  command: 'train',
  describe: 'Train a tiny Llama-named model on byte-level text (State of the Union, or CMUdict with --data cmudict) with full fine-tuning, LoRA, DoRA, VeRA or DVoRA (TensorFlow.js: webgpu, tensorflow, wasm or cpu backend)',
  builder: (y: Argv<object>) =>
    y
      .option('method', { type: 'string', choices: ['full', 'lora', 'dora', 'vera', 'dvora'], demandOption: true, describe: 'What to train (dvora: DoRA\'s magnitude on VeRA\'s update)' })
      .option('steps', { type: 'number', default: 200, describe: 'Optimizer steps' })
      .option('seed', { type: 'number', default: D.seed, describe: 'Seed for init, batches and LoRA A; same seed → same run' })
      .option('backend', { type: 'string', choices: [...BACKEND_CHOICES], default: 'auto', describe: 'tfjs backend; auto: webgpu on a hardware GPU, else tensorflow if installed, else wasm' })
      .option('r', { type: 'number', describe: `Adapter rank (default ${D.r} for LoRA/DoRA; ${D.veraR} for VeRA/DVoRA, which typically train at 256–1024)` })
      .option('vera-d-initial', { type: 'number', default: VERA_DEFAULTS.dInitial, describe: "VeRA/DVoRA: initial value of every λ_d (PEFT's d_initial)" })
      .option('projection-prng-key', { type: 'number', default: VERA_DEFAULTS.projectionKey, describe: "VeRA/DVoRA: seed of the shared frozen projections (PEFT's projection_prng_key; saved with the adapter)" })
      .option('alpha', { type: 'number', default: D.alpha, describe: 'LoRA alpha (scaling alpha/r)' })
      .option('rslora', { type: 'boolean', default: D.rslora, describe: 'rsLoRA scaling alpha/√r' })
      .option('target', { type: 'string', default: D.target.join(','), describe: 'Comma-separated module names to adapt' })
      .option('lr', { type: 'number', describe: `AdamW learning rate (default ${D.lr.full} full, ${D.lr.adapter} adapters)` })
      .option('lr-scheduler', { type: 'string', choices: [...SCHEDULERS], default: D.lrScheduler, describe: "Learning-rate schedule (Hugging Face's names and formulas)" })
      .option('warmup-steps', { type: 'number', default: D.warmupSteps, describe: 'Linear warmup steps from 0 (wins over --warmup-ratio when > 0)' })
      .option('warmup-ratio', { type: 'number', default: D.warmupRatio, describe: 'Warmup as a fraction of --steps (⌈steps·ratio⌉)' })
      .option('weight-decay', { type: 'number', default: D.weightDecay, describe: 'AdamW decoupled weight decay' })
      .option('magnitude-only', { type: 'string', describe: "DoRA/DVoRA: comma-separated modules that train only the magnitude (paper Table 6), e.g. 'o_proj,gate_proj,up_proj,down_proj'" })
      .option('dora-detach', { type: 'boolean', default: D.doraDetach, describe: 'DoRA: treat the weight norm as a constant in backward (paper §4.3)' })
      .option('quantize', { choices: ['nf4', 'fp4'] as const, describe: 'QLoRA/QDoRA: keep the frozen base\'s linear weights as bitsandbytes 4-bit blocks, dequantized on the fly; the run gets quantized-base/ (bitsandbytes format) beside base/' })
      .option('quant-block-size', { type: 'number', describe: `With --quantize: values per absmax block (default ${D.quantBlockSize}, bitsandbytes')` })
      .option('double-quant', { type: 'boolean', describe: `With --quantize: 8-bit quantize the block absmax too (bnb_4bit_use_double_quant; default ${D.doubleQuant}, the QLoRA recipe; --no-double-quant turns it off)` })
      .option('layers', { type: 'number', default: D.model.num_hidden_layers, describe: 'Decoder layers' })
      .option('d-model', { type: 'number', default: D.model.hidden_size, describe: 'Hidden size' })
      .option('heads', { type: 'number', default: D.model.num_attention_heads, describe: 'Attention heads' })
      .option('eval-every', { type: 'number', default: 50, describe: 'Held-out loss every N steps (0: only at the end)' })
      .option('data', { type: 'string', choices: ['sotu', 'cmudict'], default: D.dataName, describe: 'sotu: State of the Union text (pretraining); cmudict: word → phonemes lines (the downstream task)' })
      .option('init', { type: 'string', default: D.init, describe: "'random' or an HF folder (model.safetensors + config.json with Llama names), e.g. a run's base/" })
      .option('out', { type: 'string', describe: 'Run folder for checkpoint-<step>/ (HF Trainer/PEFT layout) and base/' })
      .option('save-every', { type: 'number', default: D.saveEvery, describe: 'Also checkpoint every K steps (0: only at the end)' })
      .option('resume', { type: 'boolean', default: false, describe: 'Continue from the newest complete checkpoint in --out (pass the original options)' })
      .option('force', { type: 'boolean', default: false, describe: 'Write a fresh run into a non-empty --out that holds other files' })
      .option('batch-size', { type: 'number', default: D.batchSize, describe: 'Sequences per step' })
      .option('context-length', { type: 'number', default: D.contextLength, describe: 'Tokens per sequence' })
      .option('quiet', { type: 'boolean', default: false, describe: 'No progress output' })
      .option('json', { type: 'boolean', default: false, describe: 'Print the result as JSON' })
      .option('report-to', { type: 'string', array: true, choices: ['none', 'tensorboard'], default: ['none'], describe: 'Besides --out/metrics.jsonl (always written): tensorboard writes event files to --out/tensorboard/ (needs --out)' })
      .example('$0 train --method dora --steps 300 --target q_proj,k_proj,v_proj --out runs/dora --save-every 100', 'DoRA on attention projections; checkpoints in runs/dora')
      .example('$0 train --method lora --r 4 --alpha 8 --rslora --backend cpu', 'rank-4 rsLoRA on the cpu backend')
      .example('$0 train --method dvora --r 256 --out runs/dvora', 'DVoRA: VeRA\'s shared random projections (rank 256) with DoRA\'s magnitude')
      .example('$0 train --method full --steps 100 --json', 'full fine-tuning, JSON result')
      .example('$0 train --method lora --out runs/lora --report-to tensorboard', 'then: tensorboard --logdir runs/lora')
      .example('$0 train --method dora --target q_proj,k_proj,v_proj --magnitude-only o_proj,gate_proj,up_proj,down_proj --out runs/t6', 'magnitude on all modules, direction on QKV')
      .example('$0 train --method dora --quantize nf4 --out runs/qdora', 'QDoRA: DoRA on an NF4 base (then: analyze --base runs/qdora/base --quantized-base runs/qdora/quantized-base runs/qdora)')
      .example('$0 train --method dora --steps 300 --target q_proj,k_proj,v_proj --out runs/dora --save-every 100 --resume', 'continue the first example\'s run from its newest checkpoint (same options)') as unknown as Argv<Args>,
  handler: async (argv: ArgumentsCamelCase<Args>) => {
    // Bounds first, before tfjs loads; then the rank against the width where the method bounds it (LoRA's B·A does, VeRA's does not).
    checkTrainNumbers(argv, false);
    const { adapterVariant } = await import('../../train/adapters/build.js');
    // The rank a run will use, given or the method's default, against the width.
    if (argv.method !== 'full') checkTrainNumbers({ ...argv, r: argv.r ?? defaultRank(argv.method) }, adapterVariant({ method: argv.method, doraDetach: true }).rankAtMostWidth);
    const { train } = await import('../../train/train.js');
    const reportTo = argv['report-to'].includes('tensorboard') ? ['tensorboard' as const] : [];
    if (reportTo.length > 0 && argv.out === undefined) throw new DorascopeError('E_USAGE', '--report-to tensorboard writes into the run folder: pass --out');
    const { stderrProgress } = await import('../../progress.js');
    let progress: ReturnType<typeof stderrProgress> | undefined;
    // tokens/s over this invocation's steps, timed from the first step's start (set-up not counted).
    let started = performance.now(), tokens = 0;
    const res = await train({
      method: argv.method,
      steps: argv.steps,
      seed: argv.seed,
      init: argv.init,
      dataName: argv.data,
      backend: argv.backend,
      onBackend: (b) => {
        process.stderr.write(`backend: ${b.name} on ${b.device}\n`);
        for (const s of b.skipped) process.stderr.write(`  (auto skipped ${s})\n`);
      },
      ...(argv.r === undefined ? {} : { r: argv.r }),
      veraDInitial: argv['vera-d-initial'],
      projectionKey: argv['projection-prng-key'],
      alpha: argv.alpha,
      rslora: argv.rslora,
      target: list(argv.target),
      ...(argv['magnitude-only'] === undefined ? {} : { magnitudeOnly: list(argv['magnitude-only']) }),
      doraDetach: argv['dora-detach'],
      ...(argv.quantize === undefined ? {} : { quantize: argv.quantize }),
      ...(argv['quant-block-size'] === undefined ? {} : { quantBlockSize: argv['quant-block-size'] }),
      ...(argv['double-quant'] === undefined ? {} : { doubleQuant: argv['double-quant'] }),
      evalEvery: argv['eval-every'],
      lrScheduler: argv['lr-scheduler'],
      warmupSteps: argv['warmup-steps'],
      warmupRatio: argv['warmup-ratio'],
      weightDecay: argv['weight-decay'],
      batchSize: argv['batch-size'],
      contextLength: argv['context-length'],
      resume: argv.resume,
      force: argv.force,
      reportTo,
      config: {
        num_hidden_layers: argv.layers, hidden_size: argv['d-model'],
        intermediate_size: Math.round((argv['d-model'] * 8) / 3), num_attention_heads: argv.heads,
      },
      ...(argv.lr === undefined ? {} : { lr: argv.lr }),
      ...(argv.out === undefined ? {} : { out: argv.out, saveEvery: argv['save-every'] }),
      onStart: (e) => {
        // A resumed run counts the steps it still has to do, so the ETA is right.
        progress = stderrProgress({
          total: e.totalSteps - e.startStep, unit: 'step', quiet: argv.quiet,
          label: e.startStep > 0 ? `train (from step ${e.startStep})` : 'train',
        });
        started = performance.now();
      },
      onProgress: (e) => {
        tokens += e.tokens;
        const tokPerS = tokens / Math.max(1e-6, (performance.now() - started) / 1000);
        // done/total is the step; a resumed run also shows the global step.
        const fields: Record<string, number> = {
          ...(e.startStep > 0 ? { step: e.step } : {}), loss: e.loss, 'tok/s': Math.round(tokPerS), lr: e.learningRate,
        };
        if (e.evalLoss !== undefined) fields['eval_loss'] = e.evalLoss;
        progress?.update(e.step - e.startStep, { fields });
      },
    }).catch((err: unknown) => {
      progress?.interrupt();
      throw err;
    });
    progress?.finish();
    if (argv.json) process.stdout.write(`${JSON.stringify(res, null, 2)}\n`);
    else if (res.startStep >= res.steps) process.stdout.write(`${res.resumedFrom ?? ''} is already at step ${res.startStep} ≥ --steps ${res.steps}: nothing to do\n`);
    else
      process.stdout.write(
        `${res.dataset} on ${res.backend}: eval loss ${res.evalLossBefore.toFixed(4)} → ${res.evalLossAfter.toFixed(4)} after ${res.steps} steps${res.resumedFrom === undefined ? '' : ` (resumed from ${res.resumedFrom})`}\n`,
      );
  },
};
