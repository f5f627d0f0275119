#!/usr/bin/env python3
"""Renders deploy/k8s (a resources-only kustomization: the rendering is the listed files'
documents, with the kustomization's labels added) and validates every document offline:
core resources with `kubernetes-validate` (the API server's OpenAPI schemas, strict: no
unknown fields), KEDA resources with deploy/k8s/schemas/keda-v1alpha1.json. Exit 1 on any
error. Needs `pip install kubernetes-validate==1.37.0` (.ci/run installs it).

    python3 scripts/validate-k8s.py [--quiet] [--out rendered.yaml]
"""
import json
import pathlib
import sys

import jsonschema
import kubernetes_validate
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent / "deploy" / "k8s"
K8S_VERSION = "1.33.0"
CORE_KINDS = {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "Secret"}


def render():
    kustomization = yaml.safe_load((ROOT / "kustomization.yaml").read_text())
    allowed = {"apiVersion", "kind", "resources", "labels"}
    unknown = set(kustomization) - allowed
    if unknown:
        raise SystemExit(f"kustomization.yaml uses {sorted(unknown)}: this renderer handles {sorted(allowed)} only")
    labels = {}
    for entry in kustomization.get("labels", []):
        labels.update(entry.get("pairs", {}))
    docs = []
    for resource in kustomization["resources"]:
        for doc in yaml.safe_load_all((ROOT / resource).read_text()):
            if doc is None:
                continue
            doc.setdefault("metadata", {}).setdefault("labels", {}).update(labels)
            docs.append((resource, doc))
    return docs


def main():
    out = sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else None
    keda = json.loads((ROOT / "schemas" / "keda-v1alpha1.json").read_text())
    errors = 0
    docs = render()
    for resource, doc in docs:
        kind, name = doc.get("kind"), doc.get("metadata", {}).get("name")
        where = f"{resource}: {kind}/{name}"
        try:
            if kind in CORE_KINDS:
                kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
            elif doc.get("apiVersion", "").startswith("keda.sh/"):
                schema = dict(keda, **{"$ref": f"#/definitions/{kind}"})
                jsonschema.validate(doc, schema)
            else:
                raise ValueError(f"no schema for {doc.get('apiVersion')} {kind}")
            if "--quiet" not in sys.argv:
                print(f"ok      {where}")
        except Exception as e:  # every validator's error is reported, not raised
            errors += 1
            message = getattr(e, "message", str(e)).splitlines()[0]
            print(f"INVALID {where}: {message}")
    if out:
        pathlib.Path(out).write_text(yaml.safe_dump_all([d for _, d in docs], sort_keys=False))
    print(f"{len(docs)} documents, {errors} invalid (Kubernetes {K8S_VERSION} schemas, KEDA v1alpha1)")
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
