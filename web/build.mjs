// Builds the dashboard into ../api/uiassets (committed, embedded into the
// bouncer binary with go:embed): index.html, assets/app.js (the page and
// Chart.js, bundled and minified by esbuild), assets/app.css and
// assets/favicon.svg. Run `npm ci && npm run build` here, or `make ui`.
// The output depends only on the sources and the locked packages.
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const out = join(here, '..', 'api', 'uiassets');
rmSync(out, { recursive: true, force: true });
mkdirSync(join(out, 'assets'), { recursive: true });

await build({
  entryPoints: [join(here, 'src', 'app.js'), join(here, 'src', 'app.css')],
  outdir: join(out, 'assets'),
  entryNames: '[name]',
  bundle: true,
  minify: true,
  format: 'iife',
  target: ['chrome109', 'firefox115', 'safari16'],
  legalComments: 'eof',
  logLevel: 'info',
});
copyFileSync(join(here, 'src', 'index.html'), join(out, 'index.html'));
copyFileSync(join(here, 'src', 'favicon.svg'), join(out, 'assets', 'favicon.svg'));
