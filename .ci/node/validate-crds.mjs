// Validate Prometheus Operator objects (ServiceMonitor, PodMonitor, PrometheusRule) in
// YAML files against validators generated from the operator's CRD schemas
// (@kubernetes-models/prometheus-operator). Prints one line per object; exit 1 if any
// object fails, 2 if a file holds none of these kinds (nothing validated is no pass).
// Usage: node validate-crds.mjs FILE...
import fs from "fs";
import * as yaml from "js-yaml";
import { PodMonitor, PrometheusRule, ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";

const kinds = { ServiceMonitor, PodMonitor, PrometheusRule };
let bad = 0;
let seen = 0;
for (const file of process.argv.slice(2)) {
  for (const doc of yaml.loadAll(fs.readFileSync(file, "utf8"))) {
    if (!doc || !kinds[doc.kind]) continue;
    seen++;
    try {
      new kinds[doc.kind](doc).validate();
      console.log("OK", file, doc.kind, doc.metadata.name);
    } catch (e) {
      bad++;
      console.log("FAIL", file, doc.kind, doc.metadata && doc.metadata.name, e.message);
    }
  }
}
process.exit(bad ? 1 : seen ? 0 : 2);
