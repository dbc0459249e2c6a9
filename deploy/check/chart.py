"""The Helm chart: rendered with Helm's own engine, every manifest validated against the
Kubernetes schemas, and the manifests checked against each other and against the server
(settings that exist, probes on the right routes, selectors that select)."""

from __future__ import annotations

import contextlib
import copy
import json
import os
import re
import sys
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import helm_python
import kubernetes_validate
import yaml

import promql
from facts import Metrics, Settings

# Oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest schemas
# kubernetes-validate ships.
KUBE_VERSIONS = ("1.28.0", "1.37.0")
CRD_GROUPS = ("monitoring.coreos.com/",)


@dataclass
class Case:
    """One render: value files (deploy/helm-relative) merged in order, plus overrides."""

    name: str
    files: list[str]
    overrides: dict[str, Any] = field(default_factory=dict)
    # For a render that must fail: a piece of the error it must fail with.
    error: str | None = None


@contextlib.contextmanager
def helm_notes_filtered():
    """Helm's loader logs an INFO line on stderr for each symbolic link it follows (the
    chart's files/ link to deploy/monitoring/); pass on everything else it writes."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            for line in capture.read().decode(errors="replace").splitlines():
                if "found symbolic link in path" not in line:
                    print(line, file=sys.stderr)


def load(path: Path) -> helm_python.Chart:
    with helm_notes_filtered():
        return helm_python.Chart.load(str(path))


def lint(path: Path, values: dict) -> list[str]:
    """`helm lint --strict` at the oldest supported Kubernetes: warnings and errors."""
    with helm_notes_filtered():
        report = helm_python.lint(str(path), values, strict=True, kube_version=f"v{KUBE_VERSIONS[0]}")
    return [m["error"] for m in report["messages"] if m["severity"] >= 2] + report.get("errors", [])


def merge(base: dict, extra: dict) -> dict:
    """Helm's merge of value files: maps merge key by key, anything else replaces."""
    out = copy.deepcopy(base)
    for k, v in extra.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def values_of(helm_dir: Path, case: Case) -> dict:
    values: dict = {}
    for f in case.files:
        values = merge(values, yaml.safe_load((helm_dir / f).read_text()) or {})
    return merge(values, case.overrides)


def render(chart: helm_python.Chart, values: dict) -> list[tuple[str, dict]]:
    """`helm template sworn --namespace llm`: (template, manifest) pairs, NOTES left out."""
    out = chart.render(values, name="sworn", namespace="llm", is_install=True)
    docs = []
    for template, text in sorted(out.items()):
        if template.endswith("NOTES.txt"):
            continue
        try:
            parsed = list(yaml.safe_load_all(text))
        except yaml.YAMLError as e:
            raise helm_python.HelmRenderError(f"{template} renders to invalid YAML: {e}") from e
        docs += [(template, doc) for doc in parsed if doc]
    return docs


def ident(doc: dict) -> str:
    return f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"


def validate_core(docs: list[tuple[str, dict]]) -> tuple[list[str], list[dict]]:
    """Strict schema validation of built-in kinds at every supported version; returns the
    problems and the custom resources left for their own schemas."""
    problems, crds = [], []
    for template, doc in docs:
        if doc.get("apiVersion", "").startswith(CRD_GROUPS):
            crds.append({"name": f"{template}: {ident(doc)}", "doc": doc})
            continue
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = "/".join(str(p) for p in e.path)
                problems.append(f"{template}: {ident(doc)} invalid for Kubernetes {version} at {path or '(root)'}: {e.message}")
            except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as e:
                problems.append(f"{template}: {ident(doc)}: no schema at Kubernetes {version}: {e}")
    return problems, crds


def by_kind(docs: list[tuple[str, dict]], kind: str) -> list[dict]:
    return [d for _, d in docs if d.get("kind") == kind]


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_statefulset(sts: dict, docs, settings: Settings) -> list[str]:
    p: list[str] = []
    name = ident(sts)
    spec = sts["spec"]
    pod = spec["template"]["spec"]
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    claims = {c["metadata"]["name"] for c in spec.get("volumeClaimTemplates", [])}
    if not claims:
        p.append(f"{name}: no volumeClaimTemplates: each pod's log needs its own volume")
    configmaps = {d["metadata"]["name"]: d for d in by_kind(docs, "ConfigMap")}
    headless = [s for s in by_kind(docs, "Service") if s["metadata"]["name"] == spec.get("serviceName")]
    if not headless or headless[0]["spec"].get("clusterIP") != "None":
        p.append(f"{name}: serviceName {spec.get('serviceName')!r} is not a headless Service of the chart")
    for c in pod.get("initContainers", []) + pod["containers"]:
        where = f"{name} container {c['name']}"
        defined: list[str] = []
        for e in c.get("env", []):
            for ref in _refs(e.get("value", "")):
                if ref not in defined:
                    p.append(f"{where}: {e['name']} uses $({ref}) before it is defined")
            if e["name"].startswith("SWORN_") and e["name"] not in settings.env:
                p.append(f"{where}: {e['name']} is not a setting of `sworn serve` (docs/CONFIG.md)")
            defined.append(e["name"])
        for m in c.get("volumeMounts", []):
            if m["name"] not in volumes and m["name"] not in claims:
                p.append(f"{where}: mounts {m['name']!r}, which is neither a volume nor a claim")
        if c.get("command", [None])[0] == "/bin/sh":
            script = Path(c["command"][1]).name
            cm = _configmap_of_mount(c, c["command"][1], volumes, configmaps)
            if cm is None or script not in cm.get("data", {}):
                p.append(f"{where}: runs {c['command'][1]}, which no mounted ConfigMap provides")
    server = next(c for c in pod["containers"] if c["name"] == "sworn")
    env = {e["name"]: e for e in server.get("env", [])}
    pod_name = env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath")
    if pod_name != "metadata.name":
        p.append(f"{name}: POD_NAME does not come from metadata.name (downward API)")
    if "$(POD_NAME)" not in env.get("SWORN_ORIGIN", {}).get("value", ""):
        p.append(f"{name}: SWORN_ORIGIN is not derived from the pod name")
    for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/health"), ("startupProbe", "/health")):
        got = server.get(probe, {}).get("httpGet", {}).get("path")
        if got != path:
            p.append(f"{name}: {probe} on {got!r}, expected {path}")
    config_path = env.get("SWORN_CONFIG", {}).get("value")
    cm = _configmap_of_mount(server, config_path, volumes, configmaps) if config_path else None
    if cm is None:
        p.append(f"{name}: SWORN_CONFIG {config_path!r} is not in a mounted ConfigMap")
    else:
        p += check_toml(cm["data"][Path(config_path).name], settings, f"{ident(cm)} {Path(config_path).name}")
    if any(d.get("kind") == "HorizontalPodAutoscaler" for _, d in docs) and "replicas" in spec:
        p.append(f"{name}: sets spec.replicas although an HPA owns the count")
    return p


def _refs(value: str) -> list[str]:
    return re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", value)


def _configmap_of_mount(container: dict, path: str, volumes: dict, configmaps: dict) -> dict | None:
    for m in container.get("volumeMounts", []):
        if str(Path(path).parent) == m["mountPath"].rstrip("/"):
            cm = volumes.get(m["name"], {}).get("configMap", {}).get("name")
            return configmaps.get(cm)
    return None


def check_toml(text: str, settings: Settings, where: str) -> list[str]:
    """The shared `--config` file: TOML that sworn's own reader takes (every key a setting;
    integers, not Helm's floats)."""
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        return [f"{where}: not TOML: {e}"]
    p = []
    for key, value in table.items():
        if key not in settings.toml:
            p.append(f"{where}: {key!r} is not a setting of `sworn serve` (docs/CONFIG.md)")
        if isinstance(value, float):
            p.append(f"{where}: {key} = {value!r} is a float; sworn's settings are integers")
    return p


def check_wiring(docs, metrics: Metrics, adapter: dict, alerts: dict, dashboard: dict) -> list[str]:
    """Services, PDB, HPA, ServiceMonitor, PrometheusRule and dashboard against the pods
    and the monitoring files."""
    p: list[str] = []
    seen: set[str] = set()
    for _, d in docs:
        if ident(d) in seen:
            p.append(f"{ident(d)} rendered twice")
        seen.add(ident(d))
    sts = by_kind(docs, "StatefulSet")
    if len(sts) != 1:
        return p + [f"expected one StatefulSet, got {len(sts)}"]
    pod_labels = sts[0]["spec"]["template"]["metadata"]["labels"]
    ports = {pt["name"] for c in sts[0]["spec"]["template"]["spec"]["containers"] for pt in c.get("ports", [])}
    services = by_kind(docs, "Service")
    for svc in services:
        if not selects(svc["spec"].get("selector", {}), pod_labels):
            p.append(f"{ident(svc)}: selector does not select the pods")
        for port in svc["spec"]["ports"]:
            if isinstance(port.get("targetPort"), str) and port["targetPort"] not in ports:
                p.append(f"{ident(svc)}: targetPort {port['targetPort']!r} is no container port")
    if not any(s["spec"].get("clusterIP") != "None" for s in services):
        p.append("no client Service")
    for pdb in by_kind(docs, "PodDisruptionBudget"):
        if not selects(pdb["spec"]["selector"]["matchLabels"], pod_labels):
            p.append(f"{ident(pdb)}: selector does not select the pods")
    adapter_names = {r["name"]["as"]: r for r in adapter["rules"]["custom"]}
    for hpa in by_kind(docs, "HorizontalPodAutoscaler"):
        ref = hpa["spec"]["scaleTargetRef"]
        if (ref["kind"], ref["name"]) != ("StatefulSet", sts[0]["metadata"]["name"]):
            p.append(f"{ident(hpa)}: scales {ref['kind']}/{ref['name']}, not the StatefulSet")
        for m in hpa["spec"]["metrics"]:
            if m["type"] == "Pods" and m["pods"]["metric"]["name"] not in adapter_names:
                p.append(f"{ident(hpa)}: Pods metric {m['pods']['metric']['name']!r} is not served by "
                         f"deploy/monitoring/prometheus-adapter-rules.yaml (it serves {sorted(adapter_names)})")
    for sm in by_kind(docs, "ServiceMonitor"):
        chosen = [s for s in services if selects(sm["spec"]["selector"]["matchLabels"], s["metadata"]["labels"])]
        if len(chosen) != 1 or chosen[0]["spec"].get("clusterIP") != "None":
            p.append(f"{ident(sm)}: should select exactly the headless Service (every pod, ready or not), selects {[ident(s) for s in chosen]}")
        elif not chosen[0]["spec"].get("publishNotReadyAddresses"):
            p.append(f"{ident(sm)}: its Service hides not-ready pods from scraping")
        for ep in sm["spec"]["endpoints"]:
            if chosen and ep["port"] not in {pt["name"] for pt in chosen[0]["spec"]["ports"]}:
                p.append(f"{ident(sm)}: endpoint port {ep['port']!r} is not a port of its Service")
            if ep.get("path") != "/metrics":
                p.append(f"{ident(sm)}: scrapes {ep.get('path')!r}, not /metrics")
    for rule in by_kind(docs, "PrometheusRule"):
        if rule["spec"] != alerts:
            p.append(f"{ident(rule)}: differs from deploy/monitoring/alerts.yaml")
    for cm in by_kind(docs, "ConfigMap"):
        if "sworn.json" in cm.get("data", {}):
            if json.loads(cm["data"]["sworn.json"]) != dashboard:
                p.append(f"{ident(cm)}: differs from deploy/monitoring/grafana-dashboard.json")
    return p


def expr_problems(expr: str, metrics: Metrics, where: str) -> list[str]:
    """Every series an expression reads exists in `/metrics`, with labels the server sets
    (or a scrape adds) and label values it can take."""
    try:
        sels = promql.selectors(expr)
    except promql.PromQLError as e:
        return [f"{where}: {e}"]
    p = []
    if not sels:
        p.append(f"{where}: reads no metric: {expr!r}")
    series = metrics.series()
    for s in sels:
        if s.metric not in series:
            p.append(f"{where}: {s.metric} is not exposed by `sworn serve` (service/src/api/metrics.rs)")
            continue
        for label, (op, value) in s.matchers.items():
            known = metrics.labels.get(label)
            own = metrics.series_labels.get(s.metric, set())
            if label in metrics.labels and label not in own:
                p.append(f"{where}: {s.metric} has no label {label!r}")
            elif known is not None and op == "=" and value not in known:
                p.append(f"{where}: {s.metric}{{{label}={value!r}}} never occurs: {label} is one of {sorted(known)}")
    return p
