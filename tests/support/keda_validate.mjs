// Validates KEDA objects (a JSON array in the file named by the first argument) with the
// validators @kubernetes-models/keda compiles from KEDA's current API types, and prints
// [{kind, name, error}] (error null when valid). tests/support/tools.py runs it as a module
// from the package's install directory, where its imports resolve.
import { readFileSync } from "node:fs";
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
import { TriggerAuthentication } from "@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication";

const kinds = { ScaledObject, TriggerAuthentication };
const docs = JSON.parse(readFileSync(process.argv.at(-1), "utf8"));
const results = docs.map((doc) => {
  try {
    new kinds[doc.kind](doc).validate();
    return { kind: doc.kind, name: doc.metadata.name, error: null };
  } catch (error) {
    return { kind: doc.kind, name: doc.metadata.name, error: String(error.message ?? error) };
  }
});
process.stdout.write(JSON.stringify(results));
