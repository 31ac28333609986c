"""What the result sweeps share (:mod:`experiments.results`, :mod:`experiments.gates_report`):
atomic JSON files, the wall time of a run's sittings, the machine a run was measured on, the
version of the code a run measured, and the marked blocks of a Markdown file they rewrite."""

from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Iterable, Optional

REPO = Path(__file__).resolve().parents[1]


def write_json(path: Path, obj) -> None:
    """Writes ``obj`` to ``path`` atomically (a reader sees the old file or the new one)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=False) + "\n")
    os.replace(tmp, path)


def add_sitting(workdir: Path, seconds: float, steps: tuple) -> None:
    """Appends one sitting (wall seconds, first and last step) to ``workdir/sittings.json``."""
    path = Path(workdir) / "sittings.json"
    sittings = json.loads(path.read_text()) if path.is_file() else []
    sittings.append({"seconds": seconds, "from_step": steps[0], "to_step": steps[1],
                     "ended": time.strftime("%Y-%m-%dT%H:%M:%S")})
    write_json(path, sittings)


def sittings_seconds(workdir: Path) -> tuple[float, int]:
    """The summed wall time of a run's sittings and their number."""
    path = Path(workdir) / "sittings.json"
    sittings = json.loads(path.read_text()) if path.is_file() else []
    return float(sum(s["seconds"] for s in sittings)), len(sittings)


def latest_step(workdir: Path) -> int:
    """The newest full checkpoint's step in ``workdir`` (0 when there is none)."""
    from jaxrnn.train.checkpoint import step_folders
    return next(iter(step_folders(Path(workdir) / "checkpoints")), 0)


def child_env(platform_name: Optional[str], jobs: int) -> dict:
    """The environment of a sweep's training processes: ``JAX_PLATFORMS``, and one thread per
    run on a CPU with ``jobs > 1`` (no intra-op pool fighting the other runs)."""
    env = dict(os.environ)
    if platform_name:
        env["JAX_PLATFORMS"] = platform_name
    if platform_name in (None, "cpu") and jobs > 1:
        env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false "
                            "intra_op_parallelism_threads=1").strip()
    if platform_name in ("cuda", "gpu"):
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    return env


def stop_children(children, say) -> None:
    """The time limit: SIGTERM to every ``(name, process, log)`` (a child records its sitting
    and exits; it resumes from its newest checkpoint next time), a kill after 60 s."""
    for _, proc, _ in children:
        proc.terminate()
    for name, proc, log in children:
        try:
            proc.wait(60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        say(f"{name}: stopped at the time limit (resumes next time)")


def replace_block(doc: str, name: str, text: str) -> str:
    """Replaces the text between ``<!-- results:NAME:begin -->`` and ``...:end -->`` (the
    document is returned unchanged when it has no such markers)."""
    a, b = f"<!-- results:{name}:begin -->", f"<!-- results:{name}:end -->"
    if a not in doc or b not in doc:
        return doc
    pre, rest = doc.split(a, 1)
    _, post = rest.split(b, 1)
    return pre + a + "\n" + text + "\n" + b + post


def cpu_info() -> dict:
    """The CPU model, its wider SIMD extensions and the core count (from /proc/cpuinfo)."""
    info = {"cpu": platform.processor() or platform.machine(), "simd": [],
            "cores": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu"] = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    info["simd"] = [s for s in ("avx2", "avx512f", "avx512_bf16", "amx_tile")
                                    if s in flags]
                    break
    except OSError:
        pass
    return info


def machine() -> dict:
    """Where a run was measured: the CPU, the cores, the accelerator JAX sees and the versions."""
    import jax
    return {**cpu_info(), "backend": jax.default_backend(),
            "devices": sorted({d.device_kind for d in jax.devices()}),
            "jax": jax.__version__, "python": platform.python_version()}


def machine_label(m: dict) -> str:
    """A short label of :func:`machine`'s record, e.g. ``AMD EPYC (avx2), 2 cores``."""
    if m.get("backend") not in (None, "cpu"):
        return f"{len(m.get('devices', []))}x {', '.join(m.get('devices', []))}"
    simd = f" ({', '.join(m['simd'])})" if m.get("simd") else ""
    return f"{m.get('cpu', '?')}{simd}, {m.get('cores', '?')} cores"


# --------------------------------------------------------------------------- code version

def _normalized_source(path: Path) -> str:
    return _normalized(str(path), path.stat().st_mtime_ns)


@functools.lru_cache(maxsize=None)
def _normalized(path: str, mtime_ns: int) -> str:
    """A Python file's syntax tree without its docstrings (comments are not in the tree):
    editing documentation does not change the code version, editing code does."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False)


def _module_file(name: str) -> Optional[Path]:
    base = REPO.joinpath(*name.split("."))
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.is_file():
            return p
    return None


def _experiment_closure(module: str) -> list[Path]:
    """The files of ``module`` and of every ``experiments.*`` module it imports, transitively."""
    seen, todo = {}, [module]
    while todo:
        name = todo.pop()
        path = _module_file(name)
        if path is None or name in seen:
            continue
        seen[name] = path
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module
                     and node.level == 0 else [])
            todo += [n for n in names if n.split(".")[0] == "experiments"]
    return [seen[k] for k in sorted(seen)]


def code_version(experiment: str, config: Optional[dict] = None,
                 extra: Iterable[str] = ()) -> str:
    """A 12-digit digest of the code a run of ``experiment`` executes: every file of the
    ``jaxrnn`` package and the experiment's own modules (syntax trees without docstrings), the
    resolved ``config`` and any ``extra`` strings. A change to any of them is a new version
    whose results are measured again; data files are not part of it."""
    h = hashlib.sha256()
    files = sorted((REPO / "jaxrnn").rglob("*.py")) + _experiment_closure(experiment)
    for path in files:
        h.update(str(path.relative_to(REPO)).encode() + b"\0")
        h.update(_normalized_source(path).encode() + b"\0")
    if config is not None:
        h.update(json.dumps(config, sort_keys=True, default=str).encode() + b"\0")
    for e in extra:
        h.update(str(e).encode() + b"\0")
    return h.hexdigest()[:12]
