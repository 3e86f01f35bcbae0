import { existsSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { DorascopeError, q } from '../../errors.js';
import { writeFileAtomic } from '../atomic.js';
import { JSON_CAPS, readTextCapped } from '../open-regular.js';
import { guardOutput } from '../output-guard.js';
import { writeResultFolder } from '../result-folder.js';
import { VERSION } from '../../version.js';
import { parseJsonLenient } from '../sources/lenient-json.js';
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
 * its base dtype, so memory stays at one tensor. The folder is written as one unit
 * (src/io/result-folder.ts) with a manifest.json of kind `merge`; an `out` that overlaps the base
 * or the adapter is refused, as is one holding anything but an earlier merge unless `force`.
 */
function withoutQuantizationConfig(text: string, path: string): string {
  let json: unknown;
  try {
    json = parseJsonLenient(text);
  } catch (e) {
    throw new DorascopeError('E_UNSUPPORTED_FORMAT', `${q(path)} is not JSON (${(e as Error).message})`);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return text;
  const { quantization_config: _dropped, ...rest } = json as Record<string, unknown>;
  return `${JSON.stringify(rest, null, 2)}\n`;
}

export async function mergeAdapter(basePath: string, adapterDir: string, out: string, opts: { force?: boolean | undefined } = {}): Promise<MergeResult> {
  guardOutput({ out, kind: 'merge', force: opts.force, inputs: [{ role: 'base (--base)', path: basePath }, { role: 'adapter (--adapter)', path: adapterDir }] });
  const base = await openSource(basePath);
  const merged = await openMergedAdapter(adapterDir, base, { closeBase: true });
  try {
    const list = merged.list();
    await writeResultFolder(out, async (dir) => {
      await writeSafetensorsStreaming(
      join(dir, 'model.safetensors'),
      list.map((t) => ({ name: t.name, dtype: t.dtype, shape: t.shape })),
      async (name) => encodeFloat32(merged.info(name)!.dtype, await merged.read(name)),
      { format: 'pt', dorascope_merged_adapter: adapterDir },
      );
      const baseDir = existsSync(basePath) && statSync(basePath).isDirectory() ? basePath : dirname(basePath);
      const cfg = join(baseDir, 'config.json');
      const files = ['model.safetensors', 'manifest.json'];
      if (existsSync(cfg)) {
        // Written weights are dequantized: a config that still says `quantization_config` would make Transformers
        // load them as bitsandbytes tensors, so it is dropped (as Transformers' own `dequantize()` does).
        const quantized = base.list().some((t) => t.quant !== undefined);
        // Read as any JSON input: a regular file only, size-capped (a FIFO named config.json must not hang merge).
        const text = await readTextCapped(cfg, 'base config', JSON_CAPS.config);
        await writeFileAtomic(join(dir, 'config.json'), quantized ? withoutQuantizationConfig(text, cfg) : text);
        files.push('config.json');
      }
      // Marks the folder as a merge result, so a later merge into it may replace it (output-guard.ts).
      await writeFileAtomic(join(dir, 'manifest.json'), `${JSON.stringify({ tool: 'dorascope', version: VERSION, kind: 'merge', created: new Date().toISOString(), base: basePath, adapter: adapterDir, files }, null, 2)}\n`);
    });
    return { out: join(out, 'model.safetensors'), tensors: list.length, adapted: merged.adapted.size };
  } finally {
    await merged.close();
  }
}
