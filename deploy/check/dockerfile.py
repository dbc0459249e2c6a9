"""deploy/Dockerfile against the repository, without building it (no container runtime or
base image can be had here): every COPY source exists and reaches the build context, the
stages it copies from exist, the torch pins are scripts/setup.sh's, the binaries are the
Cargo targets, the runtime stage runs as the chart's non-root user on the chart's port, and
every SWORN_* variable is a real setting."""

from __future__ import annotations

import fnmatch
import re
import shlex
import subprocess
from pathlib import Path

from facts import Pins, Settings


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, buf = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        word, _, rest = buf.partition(" ")
        out.append((word.upper(), rest.strip()))
        buf = ""
    return out


def ignored(path: str, patterns: list[str]) -> bool:
    """Whether a .dockerignore pattern list keeps `path` out of the context."""
    parts = path.split("/")
    for pat in patterns:
        pat = pat.strip("/")
        if pat.startswith("**/"):
            tail = pat[3:]
            if any(fnmatch.fnmatch("/".join(parts[i:i + len(tail.split('/'))]), tail) for i in range(len(parts))):
                return True
        # A pattern matches the path or any of its parent directories.
        elif any(fnmatch.fnmatch("/".join(parts[:i]), pat) for i in range(1, len(parts) + 1)):
            return True
    return False


def check(root: Path, pins: Pins, settings: Settings, values: dict) -> list[str]:
    p: list[str] = []
    dockerfile = root / "deploy/Dockerfile"
    ins = instructions(dockerfile.read_text())
    ignore_file = root / "deploy/Dockerfile.dockerignore"
    patterns = [l.strip() for l in ignore_file.read_text().splitlines() if l.strip() and not l.startswith("#")]
    if any(pt.startswith("!") for pt in patterns):
        p.append("Dockerfile.dockerignore: exceptions (!) are not understood by this check")

    args = {}
    for word, rest in ins:
        if word == "ARG" and "=" in rest:
            k, v = rest.split("=", 1)
            args[k] = v.strip('"')
    if args.get("TORCH_VERSION") != pins.torch_version:
        p.append(f"Dockerfile: TORCH_VERSION {args.get('TORCH_VERSION')!r}, scripts/setup.sh pins {pins.torch_version!r}")
    if args.get("CUDA_RUNTIME_WHEELS", "").split() != pins.cuda_runtime_wheels:
        p.append(f"Dockerfile: CUDA_RUNTIME_WHEELS {args.get('CUDA_RUNTIME_WHEELS')!r}, scripts/setup.sh pins {pins.cuda_runtime_wheels}")

    stages: list[str] = []
    final: list[tuple[str, str]] = []
    for word, rest in ins:
        if word == "FROM":
            image, _, name = rest.partition(" AS ")
            image = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), image.split()[-1])
            if ":" not in image or image.endswith(":latest"):
                p.append(f"Dockerfile: base image {image!r} is not pinned to a tag")
            stages.append(name.strip())
            final = []
        final.append((word, rest))
        if word in ("COPY", "ADD"):
            words = shlex.split(rest)
            opts = [w for w in words if w.startswith("--")]
            srcs = [w for w in words if not w.startswith("--")][:-1]
            source_stage = next((o.split("=", 1)[1] for o in opts if o.startswith("--from=")), None)
            if source_stage is not None:
                if source_stage not in stages[:-1]:
                    p.append(f"Dockerfile: COPY --from={source_stage}: no earlier stage of that name")
                continue
            for src in srcs:
                if src == ".":
                    continue
                if not (root / src).exists():
                    p.append(f"Dockerfile: COPY source {src!r} does not exist in the repository")
                elif ignored(src, patterns):
                    p.append(f"Dockerfile: COPY source {src!r} is excluded by Dockerfile.dockerignore")

    # Everything tracked that the build reads must reach the context.
    tracked = subprocess.run(["git", "ls-files"], cwd=root, capture_output=True, text=True, check=True).stdout.split()
    lost = [f for f in tracked if ignored(f, patterns) and not f.startswith("models/")]
    if lost:
        p.append(f"Dockerfile.dockerignore excludes tracked sources: {lost[:5]}")
    for needed in (".cargo/config.toml", "Cargo.lock", "scripts/torch_rpath.rs"):
        if ignored(needed, patterns):
            p.append(f"Dockerfile.dockerignore excludes {needed}, which the build needs")

    text = dockerfile.read_text()
    for binary in sorted(pins.binaries):
        if f"target/release/{binary}" not in text:
            p.append(f"Dockerfile: does not copy the {binary} binary (target/release/{binary})")
    entry = [r for w, r in final if w == "ENTRYPOINT"]
    if not entry or shlex.split(entry[-1].strip("[]").replace(",", " "))[0].strip('"') not in pins.binaries:
        p.append(f"Dockerfile: ENTRYPOINT {entry} is not one of {sorted(pins.binaries)}")
    users = [r for w, r in final if w == "USER"]
    uid = values["podSecurityContext"]["runAsUser"]
    if not users or users[-1].split(":")[0] in ("0", "root"):
        p.append("Dockerfile: the runtime stage does not switch to a non-root USER")
    elif users[-1].split(":")[0] != str(uid):
        p.append(f"Dockerfile: USER {users[-1]} but the chart runs as {uid}")
    exposed = [r for w, r in final if w == "EXPOSE"]
    if exposed != [str(values["service"]["port"])]:
        p.append(f"Dockerfile: EXPOSE {exposed}, the chart's port is {values['service']['port']}")
    for name in re.findall(r"\b(SWORN_[A-Z_]+)=", " ".join(r for w, r in ins if w == "ENV")):
        if name not in settings.env:
            p.append(f"Dockerfile: ENV {name} is not a setting of `sworn serve` (docs/CONFIG.md)")
    if "models" not in patterns:
        p.append("Dockerfile.dockerignore: models/ must stay out of the image")
    return p
