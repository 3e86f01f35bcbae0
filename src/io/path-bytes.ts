/**
 * The size of what a path names, for provenance: a file's size, or the sum of the regular files under
 * a folder (a checkpoint folder's weights, config and optimizer state), never the folder entry's own
 * size (4096 on ext4, which says nothing about the checkpoint). Symbolic links are not followed, so a
 * link out of the folder (or a cycle) counts nothing. Null when the path cannot be read.
 */
import { lstatSync, readdirSync } from 'node:fs';
import { join } from 'node:path';

export function pathBytes(path: string): number | null {
  let st: ReturnType<typeof lstatSync>;
  try { st = lstatSync(path); } catch { return null; }
  if (st.isFile()) return st.size;
  if (!st.isDirectory()) return 0;
  let total = 0;
  let entries: import('node:fs').Dirent[];
  try { entries = readdirSync(path, { withFileTypes: true }); } catch { return null; }
  for (const e of entries) {
    if (e.isFile() || e.isDirectory()) total += pathBytes(join(path, e.name)) ?? 0;
  }
  return total;
}
