#!/usr/bin/env python3
"""check_k8s.py DIR [CONF_OUT] - structural checks of the Kubernetes manifests in DIR.

Every file parses as YAML; every document has apiVersion, kind and metadata.name; the
kustomization lists files that exist; every Deployment runs one emine service from the image,
has a liveness probe on /healthz and a readiness probe on /readyz at a declared port, reads the
ConfigMap and Secret keys that exist; every Service selects a Deployment's pods and targets
declared ports; validate and notify have an HPA on their Deployment.  CONF_OUT: the ConfigMap's
emine.conf is written there (the caller checks it with the services' --dump-config).
Exit 0 when all hold; the problems on stderr otherwise."""
import os
import sys

import yaml

SERVICES = {"ingest", "validate", "archive", "notify"}


def main():
    root = sys.argv[1]
    errs = []
    docs = []
    for name in sorted(os.listdir(root)):
        if not name.endswith((".yaml", ".yml")):
            continue
        with open(os.path.join(root, name)) as f:
            try:
                for d in yaml.safe_load_all(f):
                    if d is not None:
                        docs.append((name, d))
            except yaml.YAMLError as e:
                errs.append(f"{name}: {e}")
    by_kind = {}
    for name, d in docs:
        if not isinstance(d, dict) or "apiVersion" not in d or "kind" not in d:
            errs.append(f"{name}: a document without apiVersion or kind")
            continue
        if d["kind"] == "Kustomization":
            for r in d.get("resources", []):
                if not os.path.exists(os.path.join(root, r)):
                    errs.append(f"{name}: resource {r} does not exist")
            continue
        if not d.get("metadata", {}).get("name"):
            errs.append(f"{name}: {d['kind']} without metadata.name")
            continue
        by_kind.setdefault(d["kind"], {})[d["metadata"]["name"]] = (name, d)

    cms = by_kind.get("ConfigMap", {})
    secrets = by_kind.get("Secret", {})
    deps = by_kind.get("Deployment", {})
    seen = set()
    for dname, (f, d) in deps.items():
        spec = d["spec"]
        labels = spec["template"]["metadata"]["labels"]
        for k, v in spec["selector"]["matchLabels"].items():
            if labels.get(k) != v:
                errs.append(f"{f}: {dname}: the selector does not match the pod labels")
        pod = spec["template"]["spec"]
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        for c in pod["containers"]:
            args = c.get("args") or c.get("command") or []
            svc = args[0].replace("emine-", "") if args else ""
            if svc not in SERVICES:
                errs.append(f"{f}: {dname}: the command {args} is not an emine service")
            seen.add(svc)
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
                g = c.get(probe, {}).get("httpGet", {})
                if g.get("path") != path:
                    errs.append(f"{f}: {dname}: {probe} is not httpGet {path}")
                if g.get("port") not in ports and g.get("port") not in ports.values():
                    errs.append(f"{f}: {dname}: {probe} port {g.get('port')} is not declared")
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    s = secrets.get(ref["name"])
                    keys = set((s[1].get("stringData") or {}).keys()) | set((s[1].get("data") or {}).keys()) if s else set()
                    if ref["key"] not in keys:
                        errs.append(f"{f}: {dname}: secret {ref['name']}/{ref['key']} does not exist")
            for m in c.get("volumeMounts", []):
                v = vols.get(m["name"])
                if v is None:
                    errs.append(f"{f}: {dname}: volume {m['name']} is not declared")
                elif "configMap" in v and v["configMap"]["name"] not in cms:
                    errs.append(f"{f}: {dname}: ConfigMap {v['configMap']['name']} does not exist")
            if c.get("securityContext", {}).get("allowPrivilegeEscalation") is not False:
                errs.append(f"{f}: {dname}: allowPrivilegeEscalation is not false")
        if not pod.get("securityContext", {}).get("runAsNonRoot"):
            errs.append(f"{f}: {dname}: runAsNonRoot is not set")
    for svc in SERVICES - seen:
        errs.append(f"no Deployment runs emine-{svc}")

    for sname, (f, s) in by_kind.get("Service", {}).items():
        sel = s["spec"]["selector"]
        match = [d for d in deps.values()
                 if all(d[1]["spec"]["template"]["metadata"]["labels"].get(k) == v for k, v in sel.items())]
        if not match:
            errs.append(f"{f}: Service {sname} selects no Deployment")
            continue
        c = match[0][1]["spec"]["template"]["spec"]["containers"][0]
        names = {p.get("name") for p in c.get("ports", [])} | {p["containerPort"] for p in c.get("ports", [])}
        for p in s["spec"]["ports"]:
            if p.get("targetPort", p["port"]) not in names:
                errs.append(f"{f}: Service {sname}: targetPort {p.get('targetPort')} is not a container port")

    hpa_targets = {h[1]["spec"]["scaleTargetRef"]["name"] for h in by_kind.get("HorizontalPodAutoscaler", {}).values()}
    for want in ("emine-validate", "emine-notify"):
        if want not in hpa_targets:
            errs.append(f"no HorizontalPodAutoscaler for {want}")
    for t in hpa_targets:
        if t not in deps:
            errs.append(f"an HPA targets {t}, which is not a Deployment")

    conf = [c[1].get("data", {}).get("emine.conf") for c in cms.values()]
    conf = [c for c in conf if c]
    if not conf:
        errs.append("no ConfigMap carries emine.conf")
    elif len(sys.argv) > 2:
        with open(sys.argv[2], "w") as f:
            f.write(conf[0])

    for e in errs:
        print("check_k8s: " + e, file=sys.stderr)
    n = sum(len(v) for v in by_kind.values())
    print(f"check_k8s: {n} objects in {root}: {len(errs)} problems")
    return 1 if errs else 0


if __name__ == "__main__":
    sys.exit(main())
