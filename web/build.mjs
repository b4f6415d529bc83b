// Builds the dashboard into ../api/uiassets (committed, embedded into the
// bouncer binary with go:embed): index.html, assets/app.js (the page and
// Chart.js, bundled and minified by esbuild), assets/app.css and
// assets/favicon.svg. Run `npm ci && npm run build` here, or `make ui`.
// The output depends only on the sources and the locked packages.
//
// `node build.mjs --check` builds into a temporary folder instead and fails
// when api/uiassets differs from it (sources changed without `make ui`).
import { build } from 'esbuild';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const committed = join(here, '..', 'api', 'uiassets');
const check = process.argv.includes('--check');
const out = check ? mkdtempSync(join(tmpdir(), 'bouncer-ui-')) : committed;
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
  logLevel: check ? 'warning' : 'info',
});
copyFileSync(join(here, 'src', 'index.html'), join(out, 'index.html'));
copyFileSync(join(here, 'src', 'favicon.svg'), join(out, 'assets', 'favicon.svg'));

if (check) {
  const files = (dir) => readdirSync(dir, { recursive: true, withFileTypes: true })
    .filter((d) => d.isFile()).map((d) => relative(dir, join(d.parentPath ?? d.path, d.name))).sort();
  const want = files(out);
  let have = [];
  try { have = files(committed); } catch { /* missing: stale */ }
  const stale = want.filter((f) => !have.includes(f) || !readFileSync(join(out, f)).equals(readFileSync(join(committed, f))))
    .concat(have.filter((f) => !want.includes(f)));
  rmSync(out, { recursive: true, force: true });
  if (stale.length) {
    console.error(`api/uiassets does not match web/src (${stale.join(', ')}): run make ui and commit api/uiassets`);
    process.exit(1);
  }
  console.error('api/uiassets matches web/src');
}
