// Bundles the client for browsers with esbuild (flatbuffers included):
//   dist/framework-client.min.js       ES module, minified
//   dist/framework-client.iife.min.js  a classic script defining `FrameworkClient`
// and reports their sizes, minified and minified + gzip (also in dist/bundle-size.json).
import { build } from 'esbuild';
import { readFileSync, writeFileSync } from 'node:fs';
import { gzipSync } from 'node:zlib';

const common = {
  entryPoints: ['src/index.ts'],
  bundle: true,
  minify: true,
  sourcemap: true,
  target: ['es2020'],
  platform: 'browser',
  legalComments: 'none',
  logLevel: 'warning',
};

const outputs = [
  { outfile: 'dist/framework-client.min.js', format: 'esm' },
  { outfile: 'dist/framework-client.iife.min.js', format: 'iife', globalName: 'FrameworkClient' },
];

const sizes = {};
for (const o of outputs) {
  await build({ ...common, ...o });
  const code = readFileSync(o.outfile);
  sizes[o.outfile] = { min: code.length, gzip: gzipSync(code, { level: 9 }).length };
}
writeFileSync('dist/bundle-size.json', JSON.stringify(sizes, null, 2) + '\n');
for (const [file, s] of Object.entries(sizes)) {
  console.log(`${file}: ${(s.min / 1024).toFixed(1)} KiB minified, ${(s.gzip / 1024).toFixed(1)} KiB minified + gzip`);
}
