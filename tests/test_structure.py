"""The package's structure: packages in data-flow order, each importing only those before it; imports point one way,
counting those inside functions; imports inside functions only for optional heavy extras; no module imports another
module's private names; no module over 500 lines; at most 10 modules at the top level."""

import ast
import json

import pandas as pd
import pytest
import torch
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "src" / "grokscope"
MAX_LINES = 500
MAX_TOP_LEVEL = 10
#: the layers, bottom to top: a module may import its own layer and those below it, never one above
LAYERS = (
    ("grokscope.version", "grokscope.checks", "grokscope.files", "grokscope.numerics", "grokscope.jsonutil"),
    ("grokscope.tasks",),
    ("grokscope.config",),
    ("grokscope.model",),
    ("grokscope.fast",),
    ("grokscope.training",),
    ("grokscope.fourier",),
    ("grokscope.interp",),
    ("grokscope.measures",),
    ("grokscope.experiments",),
    ("grokscope.report",),
    ("grokscope.cli", "grokscope.__main__"),
)
MAX_FUNCTION_LEVEL_INTERNAL = 3


def _modules() -> dict[str, Path]:
    out = {}
    for f in PKG.rglob("*.py"):
        rel = f.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = f
    return out


def _resolve(mod: str, is_pkg: bool, node: ast.ImportFrom, mods) -> list[str]:
    """Absolute grokscope modules a ``from ... import ...`` needs: each imported name that is a submodule, and the
    module itself for every other name (``from . import __version__`` needs the package's ``__init__``)."""
    if node.level:
        base = mod.split(".") if is_pkg else mod.split(".")[:-1]
        base = base[: len(base) - (node.level - 1)]
        target = ".".join(base + ([node.module] if node.module else []))
    else:
        target = node.module or ""
    subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in mods]
    return subs + ([target] if len(subs) < len(node.names) else [])


def imports(mods: dict[str, Path] | None = None, sources: dict[str, str] | None = None):
    """``(module, imported module, inside a function?, line)`` for every internal import (TYPE_CHECKING blocks
    excluded: they never run). ``mods``/``sources``: a planted package instead of grokscope (the checker's test)."""
    mods = _modules() if mods is None else mods
    out = []
    for mod, f in mods.items():
        tree = ast.parse(f.read_text() if sources is None else sources[mod])
        is_pkg = f.name == "__init__.py"

        def visit(node, in_func, type_only):
            for child in ast.iter_child_nodes(node):
                func = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
                tc = type_only or (isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test))
                if isinstance(child, ast.ImportFrom) and not tc:
                    for t in _resolve(mod, is_pkg, child, mods):
                        if t in mods and t != mod:
                            out.append((mod, t, in_func, child.lineno))
                elif isinstance(child, ast.Import) and not tc:
                    for a in child.names:
                        if a.name in mods:
                            out.append((mod, a.name, in_func, child.lineno))
                visit(child, func, tc)

        visit(tree, False, False)
    return mods, out


def _cycles(mods, edges) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    graph = {m: sorted({t for s, t, _, _ in edges if s == m}) for m in mods}
    index, low, stack, on, comps, n = {}, {}, [], set(), [], [0]

    def strong(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                comps.append(sorted(comp))

    for v in graph:
        if v not in index:
            strong(v)
    return comps


def test_no_import_cycles_counting_function_level_imports():
    mods, edges = imports()
    assert _cycles(mods, edges) == []


def test_few_function_level_internal_imports():
    _, edges = imports()
    inside = sorted({(s, t, line) for s, t, func, line in edges if func})
    assert len(inside) <= MAX_FUNCTION_LEVEL_INTERNAL, inside


def test_no_module_over_500_lines():
    long = {m: n for m, f in _modules().items() if (n := len(f.read_text().splitlines())) > MAX_LINES}
    assert long == {}


def test_few_modules_at_the_top_level():
    top = sorted(f.name for f in PKG.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL, top


def layer_of(mod: str) -> int | None:
    """The layer of a module (None: the package's own face, grokscope/__init__.py, which may import anything)."""
    for i, layer in enumerate(LAYERS):
        if any(mod == p or mod.startswith(p + ".") for p in layer):
            return i
    return None


def upward_imports(edges) -> list[tuple[str, str, int]]:
    return sorted((s, t, line) for s, t, _, line in edges
                  if layer_of(s) is not None and layer_of(t) is not None and layer_of(t) > layer_of(s))


def test_every_module_has_a_layer():
    assert [m for m in _modules() if m != "grokscope" and layer_of(m) is None] == []


def test_packages_import_only_the_layers_below_them():
    _, edges = imports()
    assert upward_imports(edges) == []


def private_imports(mods: dict[str, Path] | None = None, sources: dict[str, str] | None = None):
    """``(module, imported module, name, line)`` for every ``from X import _name`` of another grokscope module."""
    mods = _modules() if mods is None else mods
    out = []
    for mod, f in mods.items():
        tree = ast.parse(f.read_text() if sources is None else sources[mod])
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                targets = _resolve(mod, f.name == "__init__.py", node, mods)
                for a in node.names:
                    mine = (targets[-1] if targets else node.module or "").startswith("grokscope")
                    if mine and a.name.startswith("_") and not a.name.startswith("__"):
                        out.append((mod, targets[-1] if targets else node.module, a.name, node.lineno))
    return out


def test_no_module_imports_another_modules_private_names():
    assert private_imports() == []


def test_the_layer_and_private_checkers_can_fail():
    planted = {"grokscope.tasks.a": Path("grokscope/tasks/a.py"), "grokscope.cli.b": Path("grokscope/cli/b.py")}
    src = {"grokscope.tasks.a": "from ..cli.b import _hidden\n", "grokscope.cli.b": "x = 1\n"}
    _, edges = imports(planted, src)
    assert upward_imports(edges) == [("grokscope.tasks.a", "grokscope.cli.b", 1)]
    assert private_imports(planted, src) == [("grokscope.tasks.a", "grokscope.cli.b", "_hidden", 1)]


def test_storage_knows_nothing_of_analysis():
    _, edges = imports()
    upward = {"grokscope.interp.analysis", "grokscope.interp", "grokscope.measures.progress", "grokscope.measures.phases",
              "grokscope.report.plot_curves", "grokscope.report.plot_fourier", "grokscope.report.run", "grokscope.cli"}
    assert [e for e in edges if e[0] == "grokscope.training.run" and (e[1] in upward or e[1].startswith("grokscope.interp"))] == []


def test_the_checker_sees_cycles_and_function_level_imports():
    """The checks above could fail: a planted cycle through a function-level import is found."""
    mods = {"a": None, "b": None, "c": None}
    assert _cycles(mods, [("a", "b", False, 1), ("b", "c", True, 1), ("c", "a", True, 1)]) == [["a", "b", "c"]]
    planted = {"grokscope.a": Path("grokscope/a.py"), "grokscope.b": Path("grokscope/b.py")}
    src = {"grokscope.a": "from . import b\n", "grokscope.b": "def f():\n    from .a import g\n"}
    _, edges = imports(planted, src)
    assert sorted(edges) == [("grokscope.a", "grokscope.b", False, 1), ("grokscope.b", "grokscope.a", True, 2)]
    assert _cycles(planted, edges) == [["grokscope.a", "grokscope.b"]]


EXTRAS = ("transformer_lens", "tensorboard", "torch.utils.tensorboard", "wandb", "nbclient", "nbformat", "plotly",
          "kaleido", "devinterp")


def _extras_outside_functions(source: str) -> list[tuple[str, int]]:
    """``(extra, line)`` for every import of an optional extra outside a function in ``source``."""
    out = []

    def visit(node, in_func):
        for child in ast.iter_child_nodes(node):
            func = in_func or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            names = ([a.name for a in child.names] if isinstance(child, ast.Import) else
                     [child.module or ""] if isinstance(child, ast.ImportFrom) and not child.level else [])
            out.extend((n, child.lineno) for n in names
                       if not in_func and any(n == e or n.startswith(e + ".") for e in EXTRAS))
            visit(child, func)

    visit(ast.parse(source), False)
    return out


def _module_level_extras() -> list[tuple[str, str, int]]:
    return [(mod, n, line) for mod, f in _modules().items() for n, line in _extras_outside_functions(f.read_text())]


def test_the_extras_checker_can_fail():
    src = "import wandb\nfrom torch.utils.tensorboard import SummaryWriter\ndef f():\n    import transformer_lens\n"
    assert _extras_outside_functions(src) == [("wandb", 1), ("torch.utils.tensorboard", 2)]


def test_optional_extras_are_imported_only_inside_functions():
    """TransformerLens, TensorBoard, W&B, the notebook runner and plotly are extras (issue #16): `import grokscope`
    and every subcommand's module work without them. (Imports of other packages are not counted by the limit on
    function-level imports above, which counts grokscope's own modules.)"""
    assert _module_level_extras() == []
    import subprocess
    import sys
    code = ("import sys, grokscope, grokscope.cli, grokscope.model.export, grokscope.report.tracking; "
            f"print([m for m in sys.modules if any(m == e or m.startswith(e + '.') for e in {EXTRAS!r})])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_no_tracked_file_over_1_mb():
    """Published results are compact (benchmarks/compact_result.py); run state enters the repository only as a
    temporary carry of an unfinished run between sessions (benchmarks/carry/, deleted when the run is done)."""
    import subprocess
    root = PKG.parents[1]
    r = subprocess.run(["git", "-C", str(root), "ls-files", "-z"], capture_output=True)
    if r.returncode != 0:
        pytest.skip("not a git checkout")
    files = [root / f for f in r.stdout.decode().split("\0") if f and not f.startswith("benchmarks/carry/")]
    big = [(str(f.relative_to(root)), f.stat().st_size) for f in files if f.is_file() and f.stat().st_size > 1_000_000]
    assert big == []


def test_compact_results_load_as_runs(tmp_path):
    import sys as _sys
    _sys.path.insert(0, str(PKG.parents[1] / "benchmarks"))
    from compact_result import main as compact

    from grokscope.training import Run, train
    from helpers import tiny_config
    run = train([tiny_config(seed=s, epochs=60) for s in (0, 1)], tmp_path / "r", progress=False)
    assert compact([str(run.path), str(tmp_path / "c"), "--max-mb", "0.004"]) == 0
    for k in (0, 1):
        one = Run.load(tmp_path / "c" / f"model{k}")
        assert one.K == 1 and one.configs[0] == run.configs[k] and one.checkpoint_epochs == [60]
        assert all(torch.equal(one.params(60)[n], run.params(60, k)[n]) for n in run.params(60, k))
        every = json.loads((tmp_path / "c" / f"model{k}" / "compact.json").read_text())["metrics_every"]
        m = run.metrics[run.metrics.model == k]
        want = m[(m.epoch % every == 0) | (m.epoch == 60)].assign(model=0).reset_index(drop=True)
        pd.testing.assert_frame_equal(one.metrics.reset_index(drop=True), want, check_dtype=False)
        assert not (tmp_path / "c" / f"model{k}" / "state.pt").exists()


def test_a_compact_result_keeps_each_models_phases_and_llc_as_model_0(tmp_path):
    """Each compact model is a run of one model: its phases.json entry and its llc.json checkpoints say model 0
    (they are looked up by model), the calibration is kept, and --no-checkpoint writes no checkpoint."""
    import sys as _sys
    _sys.path.insert(0, str(PKG.parents[1] / "benchmarks"))
    from compact_result import main as compact

    from grokscope.measures.cache import load_phases
    from grokscope.training import Run, train
    from helpers import tiny_config
    run = train([tiny_config(seed=s, epochs=40) for s in (0, 1)], tmp_path / "r", progress=False)
    (run.path / "phases.json").write_text(json.dumps(
        {"models": [{"model": k, "ends": {"memorisation": 10 + k}} for k in (0, 1)]}))
    (run.path / "llc.json").write_text(json.dumps(
        {"settings": {"lr": 1e-5}, "checkpoints": [{"model": k, "epoch": 40, "llc": 5.0 + k} for k in (0, 1)]}))
    (run.path / "llc_calibration.json").write_text(json.dumps({"chosen": {"lr": 1e-5}}))
    assert compact([str(run.path), str(tmp_path / "c"), "--no-checkpoint"]) == 0
    d = tmp_path / "c" / "model1"
    one = Run.load(d)
    assert one.K == 1 and one.configs[0] == run.configs[1]
    assert load_phases(one)["models"] == [{"model": 0, "ends": {"memorisation": 11}}]
    assert json.loads((d / "llc.json").read_text())["checkpoints"] == [{"model": 0, "epoch": 40, "llc": 6.0}]
    assert json.loads((d / "llc_calibration.json").read_text()) == {"chosen": {"lr": 1e-5}}
    assert not list((d / "checkpoints").glob("*"))
