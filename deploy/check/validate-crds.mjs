// Validates Prometheus Operator resources (ServiceMonitor, PrometheusRule) against the
// schemas of @kubernetes-models/prometheus-operator, generated from the operator's Go API
// types: field types, required fields, enums and patterns (unknown fields pass).
// Usage: node validate-crds.mjs NODE_MODULES_DIR < [{"name": ..., "doc": {...}}, ...]
// Prints one line per document ("ok NAME" or "FAIL NAME: errors"); exits 1 on any failure.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.argv[2];
const v1 = await import(
  pathToFileURL(join(modules, "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/index.js")).href
);
const docs = JSON.parse(readFileSync(0, "utf8"));
let failed = 0;
for (const { name, doc } of docs) {
  const Model = doc.apiVersion === "monitoring.coreos.com/v1" ? v1[doc.kind] : undefined;
  if (typeof Model !== "function") {
    console.log(`FAIL ${name}: no schema for ${doc.apiVersion} ${doc.kind}`);
    failed++;
    continue;
  }
  try {
    new Model(doc).validate();
    console.log(`ok ${name}`);
  } catch (err) {
    console.log(`FAIL ${name}: ${err.message}`);
    failed++;
  }
}
process.exit(failed ? 1 : 0);
