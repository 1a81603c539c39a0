// install/server.json for the official MCP Registry: checks it against the registry's published
// schema, and fills in a release's checksums.
//
//   node install/registry/server-json.mjs check <file>...
//       Validates each file against server.schema.json (next to this script) with Ajv in strict
//       mode and every standard format checked: an unknown keyword or format in the schema, or
//       any mismatch in the file, fails. The one keyword the schema uses beyond JSON Schema,
//       the OpenAPI annotation `example`, is declared as an annotation and nothing else.
//   node install/registry/server-json.mjs release <dist-dir> <tag>
//       Writes <dist-dir>/server.json: install/server.json with each package's `fileSha256`
//       read from <dist-dir>/<bundle>.sha256 (as install/mcpb/pack.sh writes it), after checking
//       that the tag is v<version> and that every package is a bundle of that tag's release;
//       then validates the result as `check` does. This is the file to publish.
//
// Runs on the pinned Node with the pinned Ajv (ui-tests/package.json; npm ci --prefix ui-tests).
// Exit status: 0 valid, 1 invalid or failed, 2 usage error.

import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { basename, dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, "..", "..");
const require = createRequire(join(root, "ui-tests", "package.json"));
const Ajv = require("ajv").default;
const addFormats = require("ajv-formats").default;

function validator() {
  const ajv = new Ajv({
    // Every strict check but one: the schema is refused for an unknown keyword or format,
    // ignored defaults, union or missing types. strictRequired is a lint of the schema's own
    // style (it puts `required` in an `anyOf` branch beside the `properties` that define
    // them, which is valid JSON Schema) and says nothing about the document checked.
    strict: true,
    strictRequired: false,
    allErrors: true,
    validateFormats: true,
  });
  addFormats(ajv);
  ajv.addVocabulary(["example"]);
  const schema = JSON.parse(readFileSync(join(here, "server.schema.json"), "utf8"));
  return ajv.compile(schema);
}

function check(validate, path, doc) {
  if (validate(doc)) {
    console.log(`valid: ${path}`);
    return true;
  }
  console.log(`INVALID: ${path}`);
  for (const e of validate.errors) {
    console.log(`  ${e.instancePath || "/"} ${e.message} ${JSON.stringify(e.params)}`);
  }
  return false;
}

function fail(message) {
  console.error(`server-json.mjs: error: ${message}`);
  process.exit(1);
}

const [command, ...args] = process.argv.slice(2);
if (command === "check" && args.length > 0) {
  const validate = validator();
  let ok = true;
  for (const path of args) {
    ok = check(validate, path, JSON.parse(readFileSync(path, "utf8"))) && ok;
  }
  process.exit(ok ? 0 : 1);
} else if (command === "release" && args.length === 2) {
  const [dist, tag] = args;
  const doc = JSON.parse(readFileSync(join(root, "install", "server.json"), "utf8"));
  if (tag !== `v${doc.version}`) {
    fail(`tag ${tag} is not v${doc.version}, the version in install/server.json`);
  }
  for (const pkg of doc.packages) {
    if (pkg.registryType !== "mcpb") continue;
    const prefix = `/releases/download/${tag}/`;
    if (!pkg.identifier.includes(prefix)) {
      fail(`${pkg.identifier} is not an asset of the release ${tag}`);
    }
    if (pkg.version !== doc.version) {
      fail(`package ${pkg.identifier} has version ${pkg.version}, not ${doc.version}`);
    }
    const file = basename(new URL(pkg.identifier).pathname);
    let line;
    try {
      line = readFileSync(join(dist, `${file}.sha256`), "utf8");
    } catch (e) {
      fail(`no checksum for ${file} in ${dist} (${e.code})`);
    }
    const match = /^([0-9a-f]{64}) {2}(\S+)\n$/.exec(line);
    if (!match || match[2] !== file) fail(`${file}.sha256 is not "<hex>  ${file}"`);
    pkg.fileSha256 = match[1];
  }
  const out = join(dist, "server.json");
  writeFileSync(out, JSON.stringify(doc, null, 2) + "\n");
  process.exit(check(validator(), out, doc) ? 0 : 1);
} else {
  console.error("usage: server-json.mjs check <file>... | release <dist-dir> <tag>");
  process.exit(2);
}
