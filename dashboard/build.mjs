// dashboard/build.mjs — bundle the dashboard into dist/: one script (Chart.js
// included, nothing fetched at run time), its page and its style sheet.
import { build } from 'esbuild';
import { copyFile, mkdir, rm } from 'node:fs/promises';

const here = new URL('.', import.meta.url).pathname;
const dist = here + 'dist';

await rm(dist, { recursive: true, force: true });
await mkdir(dist, { recursive: true });
await build({
  entryPoints: [here + 'src/main.js'],
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['es2020'],
  sourcemap: false,
  legalComments: 'eof',
  outfile: dist + '/app.js',
  logLevel: 'warning',
});
await copyFile(here + 'src/index.html', dist + '/index.html');
await copyFile(here + 'src/style.css', dist + '/style.css');
console.log('dashboard built in ' + dist);
