// Builds the playground into sgflow/service/playground/static (or the folder given as the
// first argument): app.js, app.css and index.html. Fixed options and no timestamps, so the
// same sources and lockfile give the same bytes (tests/playground/test_bundle.py checks it).
import { copyFile, mkdir } from "node:fs/promises";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const here = dirname(fileURLToPath(import.meta.url));
const outdir = resolve(process.argv[2] ?? join(here, "..", "sgflow", "service", "playground", "static"));

await mkdir(outdir, { recursive: true });
await build({
  entryPoints: { app: join(here, "src", "main.ts") },
  outdir,
  absWorkingDir: here,
  bundle: true,
  format: "esm",
  target: "es2022",
  platform: "browser",
  minify: true,
  sourcemap: false,
  legalComments: "eof",
  charset: "utf8",
  logLevel: "warning",
});
await copyFile(join(here, "src", "index.html"), join(outdir, "index.html"));
