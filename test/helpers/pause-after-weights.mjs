// Preloaded with `node --import` into a real `dorascope train` process by
// test/train/resume-kill.test.ts, so the library needs no test hook. When the adapter
// weights of checkpoint-<PAUSE_AFTER_WEIGHTS_OF> land in the checkpoint's temporary folder
// (the rename of writeFileAtomic/openAtomic's commit), it prints one line on stderr and
// never returns, so the test can SIGKILL the process between the files of a checkpoint.
import fsp from 'node:fs/promises';
import { syncBuiltinESMExports } from 'node:module';

const step = process.env.PAUSE_AFTER_WEIGHTS_OF;
if (step !== undefined) {
  const weights = new RegExp(`/\\.checkpoint-${step}\\.tmp-[^/]+/adapter_model\\.safetensors$`);
  const rename = fsp.rename;
  fsp.rename = async (from, to) => {
    await rename(from, to);
    if (typeof to === 'string' && weights.test(to)) {
      process.stderr.write(`paused: checkpoint-${step} half written; waiting to be killed\n`);
      await new Promise(() => setInterval(() => undefined, 1 << 30));
    }
  };
  // Named imports of node:fs/promises (`import { rename }`) see the patched function.
  syncBuiltinESMExports();
}
