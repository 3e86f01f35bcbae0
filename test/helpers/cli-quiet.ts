import { main } from '../../src/cli/main.js';

/** Runs the CLI in-process with stdout silenced, returning its exit code and what it wrote to stderr. */
export async function runQuiet(args: string[]): Promise<{ code: number; stderr: string }> {
  let stderr = '';
  const out = process.stdout.write.bind(process.stdout), err = process.stderr.write.bind(process.stderr);
  process.stdout.write = (() => true) as typeof process.stdout.write;
  process.stderr.write = ((s: string | Uint8Array) => { stderr += String(s); return true; }) as typeof process.stderr.write;
  try {
    return { code: await main(args), stderr };
  } finally {
    process.stdout.write = out;
    process.stderr.write = err;
  }
}
