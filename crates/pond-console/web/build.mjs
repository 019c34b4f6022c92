// Bundles the third-party libraries (vendor/*.js) into ES modules in dist/,
// which pond-console embeds at compile time. Run by scripts/console_assets.sh
// after `npm ci`; the same lockfile gives the same bundles.
import { build } from "esbuild";

await build({
  entryPoints: ["vendor/codemirror.js", "vendor/arrow.js", "vendor/uplot.js"],
  outdir: "dist",
  bundle: true,
  format: "esm",
  minify: true,
  target: "es2020",
  legalComments: "eof",
  logLevel: "warning",
});
