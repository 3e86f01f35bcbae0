import { spawn } from 'node:child_process';

/** `--open`: hand the file to the desktop's opener (xdg-open / open) when there is one; always print the path. */
export async function openOrPrint(path: string, open: boolean): Promise<void> {
  process.stdout.write(`${path}\n`);
  if (!open) return;
  const opener = process.platform === 'darwin' ? 'open' : process.platform === 'win32' ? null : 'xdg-open';
  if (!opener || (process.platform === 'linux' && !process.env.DISPLAY && !process.env.WAYLAND_DISPLAY)) return;
  await new Promise<void>((res) => {
    const p = spawn(opener, [path], { stdio: 'ignore', detached: true });
    p.on('error', () => res()); // no opener installed: the path printed above is the answer
    p.on('spawn', () => { p.unref(); res(); });
  });
}
