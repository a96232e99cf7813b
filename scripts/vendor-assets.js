// Copy the built front-end assets the console serves from node_modules into web/static/vendor
// (`npm ci && npm run build`). The copies are committed, so installing the product needs no npm;
// this step is for upgrading them: bump the version in package.json, run it, commit the result.
"use strict";
const fs = require("fs");
const path = require("path");
const crypto = require("crypto");

const root = path.resolve(__dirname, "..");
const out = path.join(root, "web", "static", "vendor");
const assets = [
  { from: "node_modules/echarts/dist/echarts.min.js", to: "echarts.min.js" },
  { from: "node_modules/echarts/LICENSE", to: "echarts.LICENSE.txt" },
];

fs.mkdirSync(out, { recursive: true });
const manifest = {};
for (const a of assets) {
  const src = path.join(root, a.from);
  if (!fs.existsSync(src)) {
    console.error(`missing ${a.from}: run \`npm ci\` first`);
    process.exit(1);
  }
  const bytes = fs.readFileSync(src);
  fs.writeFileSync(path.join(out, a.to), bytes);
  manifest[a.to] = crypto.createHash("sha256").update(bytes).digest("hex");
}
const pkg = JSON.parse(fs.readFileSync(path.join(root, "node_modules/echarts/package.json"), "utf8"));
manifest.echarts_version = pkg.version;
fs.writeFileSync(path.join(out, "MANIFEST.json"), JSON.stringify(manifest, null, 2) + "\n");
console.log(`vendored echarts ${pkg.version} into web/static/vendor`);
