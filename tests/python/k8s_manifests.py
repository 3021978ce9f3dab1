"""Reads Kubernetes manifests for tests/deploy.rs: parses every YAML document of the files
named on the command line, validates each against the Kubernetes OpenAPI schemas of the
kubernetes-validate package (offline, strict: unknown fields are errors) for every version
given, and prints one JSON object on stdout:

    {"documents": [{"file": ..., "index": ..., "schema_checked": bool, "doc": {...}}],
     "errors": ["<file> #<n> <kind>/<name>: Kubernetes <version>: <path>: <message>", ...]}

Custom resources that the package has no schema for (the Prometheus Operator's and
cert-manager's) are listed with "schema_checked": false; the Rust test checks their required
fields itself. Any other kind without a schema is an error, so nothing passes unchecked.

Usage: python k8s_manifests.py VERSION[,VERSION...] FILE...
"""

import json
import sys

import kubernetes_validate
import yaml

# (apiVersion, kind) of the custom resources deploy/ uses, checked by the tests/deploy*.rs targets.
CUSTOM_RESOURCES = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"),
    ("monitoring.coreos.com/v1", "PrometheusRule"),
    ("cert-manager.io/v1", "Certificate"),
}


def describe(path, index, doc):
    meta = doc.get("metadata") or {}
    return f"{path} #{index} {doc.get('kind')}/{meta.get('name')}"


def main():
    versions = sys.argv[1].split(",")
    documents, errors = [], []
    for path in sys.argv[2:]:
        with open(path, encoding="utf-8") as f:
            try:
                docs = [d for d in yaml.safe_load_all(f) if d is not None]
            except yaml.YAMLError as e:
                errors.append(f"{path}: not YAML: {e}")
                continue
        for index, doc in enumerate(docs, start=1):
            if not isinstance(doc, dict):
                errors.append(f"{path} #{index}: not a mapping")
                continue
            where = describe(path, index, doc)
            custom = (doc.get("apiVersion"), doc.get("kind")) in CUSTOM_RESOURCES
            if not custom:
                for version in versions:
                    try:
                        kubernetes_validate.validate(doc, version, strict=True)
                    except kubernetes_validate.ValidationError as e:
                        at = ".".join(str(p) for p in e.absolute_path) or "(top)"
                        errors.append(f"{where}: Kubernetes {version}: {at}: {e.message}")
                    except kubernetes_validate.SchemaNotFoundError as e:
                        errors.append(f"{where}: Kubernetes {version}: no schema: {e}")
            documents.append(
                {"file": path, "index": index, "schema_checked": not custom, "doc": doc}
            )
    json.dump({"documents": documents, "errors": errors}, sys.stdout)


if __name__ == "__main__":
    main()
