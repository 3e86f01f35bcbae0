/**
 * README.md is the user's first page: short, its links resolve, its quick start is the two set-up
 * lines, its command table names exactly the CLI's commands with flags the CLI accepts, its library
 * example runs, and its published result is docs/reproduce.md's (scripts/build-readme.mjs).
 * The CLI is spawned from dist/ (`npm test` builds first).
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const readme = readFileSync(join(root, 'README.md'), 'utf8');
const cli = (...args: string[]) => execFileSync(process.execPath, [join(root, 'bin/dorascope.js'), ...args], { cwd: root, encoding: 'utf8' });

/** The body of the first ``` fence of `lang` after `heading`. */
function block(heading: string, lang: string): string {
  const at = readme.indexOf(`\n${heading}\n`);
  expect(at, `README.md has no "${heading}"`).toBeGreaterThan(-1);
  const open = readme.indexOf(`\`\`\`${lang}\n`, at) + lang.length + 4;
  return readme.slice(open, readme.indexOf('\n```', open));
}

/** Rows of the "## Commands" table: [command, example]. */
function commandRows(): [string, string][] {
  const section = readme.slice(readme.indexOf('\n## Commands\n'), readme.indexOf('\n## ', readme.indexOf('\n## Commands\n') + 1));
  return section.split('\n').filter((l) => /^\| `[a-z]+` \|/.test(l)).map((l) => {
    const cells = l.split(' | ');
    return [/`([a-z]+)`/.exec(cells[0]!)![1]!, /`([^`]+)`/.exec(cells[cells.length - 1]!)![1]!];
  });
}

describe('README.md', () => {
  it('is short enough to read in five minutes (< 15 KB)', () => {
    expect(Buffer.byteLength(readme)).toBeLessThan(15_000);
  });

  it('carries docs/reproduce.md\'s published result (scripts/build-readme.mjs --check)', () => {
    // Exits 1 when docs/reproduce.md's marked part changed and README.md was not rebuilt.
    execFileSync(process.execPath, ['scripts/build-readme.mjs', '--check'], { cwd: root, stdio: 'pipe' });
  });

  it('links only to files that exist, and to every page of docs/', () => {
    const targets = [...readme.matchAll(/\]\(([^)#\s]+)(#[^)]*)?\)/g)].map((m) => m[1]!).filter((t) => !/^[a-z]+:/.test(t));
    expect(targets.length).toBeGreaterThan(5);
    for (const t of targets) expect(existsSync(join(root, t)), `README.md links to ${t}, which does not exist`).toBe(true);
    for (const page of readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md'))) {
      expect(targets, `docs/${page} is not linked from README.md`).toContain(`docs/${page}`);
    }
  });

  it('docs/ and CONTRIBUTING.md link only to files that exist', () => {
    const pages = [...readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`), 'CONTRIBUTING.md'];
    for (const page of pages) {
      const text = readFileSync(join(root, page), 'utf8');
      for (const m of text.matchAll(/\]\(([^)#\s]+)(#[^)]*)?\)/g)) {
        if (/^[a-z]+:/.test(m[1]!)) continue;
        expect(existsSync(join(root, dirname(page), m[1]!)), `${page} links to ${m[1]}, which does not exist`).toBe(true);
      }
    }
  });

  it('has a quick start of exactly two set-up lines: install-and-demo, and the tests', () => {
    const lines = block('## Quick start', 'sh').split('\n').map((l) => l.replace(/#.*$/, '').trim()).filter((l) => l !== '');
    expect(lines).toEqual(['npm install && npx dorascope demo', 'npm test']);
  });

  it("lists exactly the CLI's commands, each example using only that command's flags", () => {
    const help = cli('--help');
    const commands = [...help.matchAll(/^ {2}dorascope ([a-z]+)/gm)].map((m) => m[1]);
    expect(commands.length).toBeGreaterThan(5);
    const rows = commandRows();
    expect(rows.map(([c]) => c)).toEqual(commands);
    for (const [command, example] of rows) {
      expect(example.startsWith(`npx dorascope ${command}`), example).toBe(true);
      const own = cli(command, '--help');
      for (const flag of example.match(/(?<= )--[a-z-]+/g) ?? []) {
        expect(own, `README's ${command} example uses ${flag}, which \`dorascope ${command} --help\` does not list`).toMatch(new RegExp(`\\s${flag}\\s`));
      }
    }
  });

  it('has a library example that runs against the built package', () => {
    const code = block('## Library', 'js');
    expect(code).toContain("from 'dorascope'");
    const dir = mkdtempSync(join(tmpdir(), 'dorascope-readme-'));
    try {
      const file = join(dir, 'example.mjs');
      writeFileSync(file, code.replace("from 'dorascope'", `from '${pathToFileURL(join(root, 'dist/index.js')).href}'`));
      const out = execFileSync(process.execPath, [file], { cwd: dir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      // One line per run, r a correlation inside its interval; the report is where the example says.
      const lines = [...out.matchAll(/^(\S+): r = (\S+), 95% CI \[(\S+),(\S+)\]$/gm)];
      expect(lines.map((m) => m[1]), out).toEqual(['lora', 'dora']);
      for (const [, , r, lo, hi] of lines) {
        expect(Math.abs(Number(r))).toBeLessThanOrEqual(1);
        expect(Number(lo)).toBeLessThanOrEqual(Number(hi));
      }
      expect(existsSync(join(dir, 'out/report.html'))).toBe(true);
      expect(existsSync(join(dir, 'dorascope-out')), 'a library call wrote to the CLI\'s default folder').toBe(false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});
