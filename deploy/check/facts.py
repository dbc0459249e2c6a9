"""What the repository itself says, read from the source of truth each time, so that the
deployment files are checked against the server as it is and not against a copy:

* the metrics `GET /metrics` exposes (service/src/api/metrics.rs) and the values of their
  labels (service/src/api/errors.rs, service/src/swear/);
* the settings of `sworn serve` (docs/CONFIG.md, generated from the flags and kept equal
  to them by a test of its own);
* the pins of scripts/setup.sh and the binaries' names (Cargo manifests).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


@dataclass
class Metrics:
    """Series names `/metrics` can expose, and the known values of its labels."""

    names: set[str] = field(default_factory=set)
    histograms: set[str] = field(default_factory=set)
    # Label name -> the values the server gives it.
    labels: dict[str, set[str]] = field(default_factory=dict)
    # Series name -> the labels the server puts on it (targets add theirs when scraped).
    series_labels: dict[str, set[str]] = field(default_factory=dict)

    def series(self) -> set[str]:
        """Every series name a query may select (histograms by their suffixed series)."""
        out = self.names - self.histograms
        for h in self.histograms:
            out |= {h + s for s in HISTOGRAM_SUFFIXES}
        return out


def read_metrics(root: Path) -> Metrics:
    src = (root / "service/src/api/metrics.rs").read_text()
    # Only what the server renders, not what its unit tests mention.
    src = src.split("#[cfg(test)]", 1)[0]
    m = Metrics()
    m.names = set(re.findall(r'"(sworn:[a-z0-9_:]+)"', src))
    block = re.search(r"let histograms = \[(.*?)\];", src, re.S)
    if not block:
        raise SystemExit("facts: no `let histograms = [...]` in service/src/api/metrics.rs")
    m.histograms = set(re.findall(r'"(sworn:[a-z0-9_:]+)"', block.group(1)))
    labelled = re.search(r"let labelled = \[(.*?)\];", src, re.S)
    if not labelled:
        raise SystemExit("facts: no `let labelled = [...]` in service/src/api/metrics.rs")
    for name, label in re.findall(r'\("(sworn:[a-z0-9_:]+)", "[^"]*", "([a-z_]+)"', labelled.group(1)):
        m.series_labels[name] = {label}
    for h in m.histograms:
        m.series_labels[h + "_bucket"] = {"le"}
    if not m.names or not m.histograms:
        raise SystemExit("facts: found no metric names in service/src/api/metrics.rs")
    # error_type: ApiError::metric_label() and the swearing task's failed("...") calls.
    errors = (root / "service/src/api/errors.rs").read_text()
    body = re.search(r"fn metric_label\(&self\).*?\n    }\n", errors, re.S)
    if not body:
        raise SystemExit("facts: no fn metric_label in service/src/api/errors.rs")
    values = set(re.findall(r'=> "([a-z_]+)"', body.group(0)))
    for path in sorted((root / "service/src").rglob("*.rs")):
        values |= set(re.findall(r'\bfailed\("([a-z_]+)"\)', path.read_text()))
    m.labels["error_type"] = values
    # finished_reason: FinishReason's names.
    seq = (root / "service/src/engine/runner/sequence.rs").read_text()
    m.labels["finished_reason"] = set(re.findall(r'FinishReason::\w+ => "([a-z_]+)"', seq))
    return m


@dataclass
class Settings:
    """`sworn serve` settings: environment variables and TOML keys (docs/CONFIG.md)."""

    env: set[str]
    toml: set[str]


def read_settings(root: Path) -> Settings:
    env: set[str] = set()
    toml: set[str] = set()
    for line in (root / "docs/CONFIG.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 3 or not cells[1].startswith("`SWORN_"):
            continue
        env.add(cells[1].strip("`"))
        if cells[2].startswith("`"):
            toml.add(cells[2].strip("`"))
    if len(env) < 10:
        raise SystemExit(f"facts: docs/CONFIG.md lists only {len(env)} settings; has its table changed?")
    return Settings(env=env, toml=toml)


@dataclass
class Pins:
    torch_version: str
    cuda_runtime_wheels: list[str]
    binaries: set[str]


def read_pins(root: Path) -> Pins:
    setup = (root / "scripts/setup.sh").read_text()
    torch = re.search(r'^TORCH_VERSION="([^"]+)"', setup, re.M)
    wheels = re.search(r"^CUDA_RUNTIME_WHEELS=\(([^)]*)\)", setup, re.M)
    if not torch or not wheels:
        raise SystemExit("facts: TORCH_VERSION or CUDA_RUNTIME_WHEELS not found in scripts/setup.sh")
    binaries = set()
    for manifest in ("service/Cargo.toml", "verifier/Cargo.toml"):
        binaries |= set(re.findall(r'\[\[bin\]\]\s*\nname = "([^"]+)"', (root / manifest).read_text()))
    return Pins(torch.group(1), wheels.group(1).split(), binaries)
