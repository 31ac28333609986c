"""The import rules of the README's architecture section, checked on the source: which part
of the library may import which (so a model never imports the trainer, the trainer never a
task, the core nothing above it), no ``experiments`` import from the library, no private JAX."""

import ast
import pathlib

import pytest

from tests._paths import REPO

LIB = REPO / "jaxrnn"
# group -> the groups it may import (its own included)
CORE = {"cells", "engine", "scan", "layers", "jaxrnn"}
ALLOWED = {
    "core": {"core"},
    "data": {"data"},
    "heads": {"core", "heads"},
    "models": {"core", "heads", "data", "models"},
    "frameworks": {"core", "frameworks"},            # nnx, linen, interop
    "analysis": {"core", "analysis"},
    "train": {"core", "train"},                      # cells' registry for config validation
}


def group(module: str) -> str:
    """The group of a ``jaxrnn...`` module path."""
    parts = module.split(".")
    top = parts[1] if len(parts) > 1 else "jaxrnn"
    if top in CORE:
        return "core"
    return {"text": "data", "audio": "data", "heads": "heads", "models": "models",
            "nnx": "frameworks", "linen": "frameworks", "interop": "frameworks",
            "analysis": "analysis", "train": "train", "cli": "train"}[top]


def imports(path: pathlib.Path) -> set:
    """Modules a file imports (``from jaxrnn import scan`` -> ``jaxrnn.scan``)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            if node.module == "jaxrnn" or node.module.startswith("jaxrnn."):
                base = LIB.joinpath(*node.module.split(".")[1:])
                for a in node.names:
                    if (base / a.name).is_dir() or (base / f"{a.name}.py").is_file():
                        out.add(f"{node.module}.{a.name}")
    return out


def module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = [p for p in rel.parts if p != "__init__"]
    return ".".join(parts)


FILES = sorted(LIB.rglob("*.py"))


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_library_imports_follow_the_layers(path):
    me = group(module_name(path))
    for mod in imports(path):
        if mod == "jaxrnn" and me == "core":
            continue                    # `import jaxrnn as jr` inside the core's own files
        if mod.startswith("experiments") or mod.startswith("tests"):
            pytest.fail(f"{path.name} imports {mod}: the library never imports the repository")
        if mod == "jaxrnn" or mod.startswith("jaxrnn."):
            other = group(mod) if mod != "jaxrnn" else "core"
            assert other in ALLOWED[me], f"{module_name(path)} ({me}) imports {mod} ({other})"


@pytest.mark.parametrize("root", ["jaxrnn", "experiments", "tests"])
def test_no_private_jax(root):
    for path in sorted((REPO / root).rglob("*.py")):
        for mod in imports(path):
            assert not mod.startswith("jax._src"), f"{path}: imports {mod}"
        text = path.read_text(encoding="utf-8")
        if path.name != "test_layout.py":
            assert "jax._src" not in text, f"{path} reads jax._src"


def test_the_rules_can_fail(tmp_path):
    """The checker itself: a model importing the trainer is caught."""
    f = tmp_path / "bad.py"
    f.write_text("from jaxrnn.train import Task\nfrom jaxrnn import layers\n")
    got = imports(f)
    assert "jaxrnn.train" in got and "jaxrnn.layers" in got
    assert group("jaxrnn.train") not in ALLOWED[group("jaxrnn.models.tagger")]
