// Runs the Khronos glTF Validator on each .glb named on the command line and prints one
// JSON line per file: counts by severity and every message. Exit status: 0 when no file
// has an error or a warning, 1 when one does, 2 when a file cannot be read.
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const validator = require("gltf-validator");

let worst = 0;
for (const path of process.argv.slice(2)) {
  let bytes;
  try {
    bytes = new Uint8Array(await readFile(path));
  } catch (error) {
    console.error(`${path}: ${error.message}`);
    worst = 2;
    continue;
  }
  // A GLB from us never references external files; refuse any instead of reading disk.
  const report = await validator.validateBytes(bytes, {
    uri: path,
    maxIssues: 0,
    externalResourceFunction: (uri) => Promise.reject(new Error(`external resource ${uri}`)),
  });
  const issues = report.issues;
  console.log(JSON.stringify({
    file: path,
    validator: report.validatorVersion,
    errors: issues.numErrors,
    warnings: issues.numWarnings,
    infos: issues.numInfos,
    hints: issues.numHints,
    messages: issues.messages.map((m) => ({ code: m.code, severity: m.severity, pointer: m.pointer, message: m.message })),
  }));
  if (issues.numErrors > 0 || issues.numWarnings > 0) worst = Math.max(worst, 1);
}
process.exit(worst);
