import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { writeFileAtomic } from '../atomic.js';
import { openSource } from '../sources/open-source.js';
import { openMergedAdapter } from './merged-source.js';
import { encodeFloat32, writeSafetensorsStreaming } from '../safetensors/writer.js';

export interface MergeResult {
  out: string;
  tensors: number;
  adapted: number;
}

/**
 * `dorascope merge`: writes base + adapter as one plain model folder
 * (`OUT/model.safetensors`, and the base's config.json when it has one). The
 * merge math is the PEFT layer's (`openMergedAdapter`, one implementation in
 * src/methods/merge.ts); tensors are produced one at a time and each keeps
 * its base dtype, so memory stays at one tensor. Written atomically; inputs untouched.
 */
export async function mergeAdapter(basePath: string, adapterDir: string, out: string): Promise<MergeResult> {
  const base = await openSource(basePath);
  const merged = await openMergedAdapter(adapterDir, base, { closeBase: true });
  try {
    mkdirSync(out, { recursive: true });
    const list = merged.list();
    const file = join(out, 'model.safetensors');
    await writeSafetensorsStreaming(
      file,
      list.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape })),
      async (name) => encodeFloat32(merged.info(name)!.dtype, await merged.read(name)),
      { format: 'pt', dorascope_merged_adapter: adapterDir },
    );
    const baseDir = existsSync(basePath) && statSync(basePath).isDirectory() ? basePath : dirname(basePath);
    const cfg = join(baseDir, 'config.json');
    if (existsSync(cfg)) await writeFileAtomic(join(out, 'config.json'), readFileSync(cfg));
    return { out: file, tensors: list.length, adapted: merged.adapted.size };
  } finally {
    await merged.close();
  }
}
