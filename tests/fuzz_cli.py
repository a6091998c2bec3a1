"""Bad inputs and damaged run files for every subcommand (issue #11), tried as a new user would.

Each case is ``(subcommand, argv, damage, expect)``: ``argv`` may name ``{run}`` (a copy of a tiny trained run,
damaged by ``damage`` first), ``{tmp}`` (a scratch folder) and ``{file}`` (an existing regular file). A case is
*clean* when ``grokscope`` exits with code 2, prints exactly one line ``grokscope: error: ...`` containing
``expect`` (the field or file it names), no traceback, and writes nothing (every file under ``{tmp}`` unchanged).

    python tests/fuzz_cli.py          # tries every case, prints the count per subcommand and each unclean case
    tests/test_bad_input.py           # the same cases as tests
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import sys
from pathlib import Path

import torch

TINY = ["--p", "7", "--d-model", "8", "--n-heads", "2", "--d-mlp", "16", "--epochs", "20", "--frac-train", "0.5",
        "--checkpoint-every", "10", "--no-progress", "--device", "cpu"]
CKPT = "checkpoints/epoch_000020.safetensors"


# ---------------------------------------------------------------------- damage done to a copy of the run
def _write(rel: str, data: bytes | str):
    def f(run: Path) -> None:
        p = run / rel
        p.write_bytes(data) if isinstance(data, bytes) else p.write_text(data)
    return f


def _truncate(rel: str):
    def f(run: Path) -> None:
        p = run / rel
        p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    return f


def _wrong_shape_ckpt(run: Path) -> None:
    from safetensors.torch import load_file, save_file
    d = load_file(str(run / CKPT))
    d["W_E"] = torch.zeros(1, 3, 3)
    save_file(d, str(run / CKPT))


def _state_wrong_shape(run: Path) -> None:
    st = torch.load(run / "state.pt", weights_only=True)
    st["params"] = torch.zeros(2, 5)
    torch.save(st, run / "state.pt")


def _config_field(field: str, value) -> callable:
    def f(run: Path) -> None:
        import json
        meta = json.loads((run / "config.json").read_text())
        meta["models"][0][field] = value
        (run / "config.json").write_text(json.dumps(meta))
    return f


def _no_checkpoints(run: Path) -> None:
    shutil.rmtree(run / "checkpoints")
    (run / "state.pt").unlink()


def _lock_live(run: Path) -> None:
    (run / ".lock").write_text(str(os.getppid()))


def _foreign(run: Path) -> None:
    (run / "notes.txt").write_text("mine")


def _pth(data: bytes | None = None, obj=None):
    def f(run: Path) -> None:
        p = run.parent / "x.pth"
        if data is not None:
            p.write_bytes(data)
        else:
            torch.save(obj, p)
    return f


def _stray(run: Path) -> None:
    (run / "checkpoints" / "epoch_abc.safetensors").write_bytes(b"junk")


_PARTIAL = {"model": {"embed.W_E": torch.zeros(8, 8)}}
_CUDA = torch.cuda.is_available()

# ---------------------------------------------------------------------- the cases
CASES: list[tuple[str, list[str], object, str]] = []


def _t(args: list[str], expect: str, damage=None, out: str = "{tmp}/new") -> None:
    CASES.append(("train", ["train", "--out", out] + TINY + args, damage, expect))


for flag, vals in {"--lr": ["nan", "inf", "-inf", "0", "-1", "abc", "", "0.001,nan", "1e999"],
                   "--weight-decay": ["nan", "inf", "-1", "1,nan", "x"], "--l1": ["nan", "inf", "-0.1"],
                   "--eps": ["nan", "inf", "0", "-1"], "--beta1": ["nan", "1", "-0.1", "1.5"],
                   "--beta2": ["nan", "1", "2"], "--dropout": ["nan", "1", "-0.1", "0.1,inf"],
                   "--frac-train": ["nan", "0", "1.5", "-1", "0.001", "inf"]}.items():
    for v in vals:  # argparse reads "-inf" as an option: "argument --lr: expected one argument"
        _t([flag, v], flag if v.startswith("-") and not v[1:2].isdigit() else flag[2:].replace("-", "_") + "=")
for flag, vals in {"--p": ["2", "0", "-5", "1.5", "abc", "100003", str(10**30)],
                   "--epochs": ["0", "-1", "10000000000000", "1.5", str(10**20)],
                   "--d-model": ["0", "-8", "1000000000"], "--d-mlp": ["0", "1000000000000"], "--n-heads": ["0", "3"],
                   "--n-layers": ["0", "-1"], "--test-every": ["0", "-1"], "--checkpoint-every": ["0", "x"],
                   "--warmup": ["-1", "1.5"], "--seed": ["-1", str(2**64), "abc", "1e3"],
                   "--data-seed": ["-1", str(2**64), "x"], "--task": ["divide", ""], "--split": ["x"],
                   "--act": ["tanh"], "--preset": ["x"], "--device": ["tpu", "cuda:x"] + ([] if _CUDA else ["cuda"])}.items():
    for v in vals:
        field = {"--p": "p=", "--epochs": "epochs=", "--d-model": "d_model=", "--d-mlp": "d_mlp=",
                 "--n-heads": "n_heads=" if v == "0" else "d_model=", "--device": "device="}.get(flag)
        _t([flag, v], field or flag[2:].replace("-", "_") + "=")
_t(["--data-seed", "-1", "--split", "random"], "data_seed=")
_t(["--seeds", "0,-1"], "seeds=")
_t(["--seeds", f"0,{2**64}"], "seeds=")
_t(["--seeds", "0,1", "--lr", "1,2,3"], "values but other lists")
_t(["--seeds", "0,1", "--seed", "2"], "seed is given twice")
_t(["--p", "7,11"], "p=")
_t(["--until", "-5"], "until=")
_t(["--until", "0"], "until=")
_t(["--until", "x"], "until=")
_t([], "out=", out="{file}/run")
_t([], "out=", out="{file}")
_t([], "out=", out="/proc/grokscope-run")
_t([], "out=", out="/proc/self/grokscope-run")
_t([], "out=", out="{run}")  # exists, no --overwrite
_t(["--overwrite"], "out=", out="{file}")
_t(["--overwrite"], "out=", out="{run}/checkpoints")  # not a run
_t(["--overwrite"], "out=", out="{tmp}")  # a folder holding other things, no config.json
_t(["--overwrite"], "being trained by process", _lock_live, out="{run}")
_t(["--overwrite"], "notes.txt", _foreign, out="{run}")
for extra in (["--lr", "0.1"], ["--out", "{tmp}/x"], ["--seeds", "0,1"]):
    CASES.append(("train", ["train", "--resume", "{run}"] + extra, None, "resume is invalid"))
for args, damage, expect in [(["{tmp}/nope"], None, "not a grokscope run"), (["{tmp}"], None, "not a grokscope run"),
                             (["{run}"], _write("state.pt", b"garbage"), "state.pt is damaged"),
                             (["{run}"], _write("state.pt", b""), "state.pt is damaged"),
                             (["{run}"], _truncate("state.pt"), "state.pt is damaged"),
                             (["{run}"], _state_wrong_shape, "state.pt is damaged"),
                             (["{run}"], _write("config.json", "{not json"), "config.json is damaged"),
                             (["{run}"], _write("config.json", "{}"), "config.json is damaged"),
                             (["{run}"], _config_field("lr", "abc"), "config.json is damaged"),
                             (["{run}"], _config_field("lr", float("nan")), "config.json is damaged"),
                             (["{run}"], _lock_live, "being trained by process"),
                             (["{run}", "--until", "-1"], None, "until="),
                             (["{run}", "--device", "tpu"], None, "device=")]:
    CASES.append(("train", ["train", "--resume"] + args + ["--no-progress", "--device", "cpu"]
                  if "--device" not in args else ["train", "--resume"] + args + ["--no-progress"], damage, expect))


def _a(args: list[str], expect: str, damage=None) -> None:
    CASES.append(("analyze", ["analyze"] + args, damage, expect))


for opt, vals in {"--epoch": ["-1", "abc", "12345", "7", "1.5"], "--model": ["-1", "5", "abc"],
                  "--threshold": ["nan", "5", "0", "-1", "inf", "x"], "--keys": ["0", "99", "a,b", "1,,2", "-1", ""]}.items():
    for v in vals:
        _a(["{run}", opt, v], opt[2:] + "=")
_a(["{tmp}/nope"], "path=")
_a(["{run}/checkpoints/epoch_abc.safetensors"], "path=", _stray)
_a(["{run}/checkpoints/epoch_000010.safetensors", "--epoch", "20"], "epoch=")
_a(["{file}"], "path=")
for out in ("/proc/x.json", "{file}/x.json", "{tmp}"):
    _a(["{run}", "--out", out], "out=")
for damage in (_truncate(CKPT), _write(CKPT, b""), _write(CKPT, b"\x00" * 100), _wrong_shape_ckpt):
    _a(["{run}"], "epoch_000020.safetensors is damaged", damage)
for damage in (_write("config.json", "{"), _write("config.json", "{}"), _write("config.json", "[1, 2]"),
               _write("config.json", '{"models": "x"}'), _config_field("p", "seven"), _config_field("zzz", 1),
               _config_field("seed", -1)):
    _a(["{run}"], "config.json is damaged", damage)
_a(["{run}"], "no checkpoints", _no_checkpoints)
_pth_args = ["{tmp}/x.pth", "--seed", "1", "--frac-train", "0.3"]
_a(_pth_args, "x.pth is damaged", _pth(data=os.urandom(64)))
_a(_pth_args, "x.pth is damaged", _pth(data=b""))
_a(_pth_args, "x.pth is damaged", _pth(obj=_PARTIAL))
_a(_pth_args, "x.pth is damaged", _pth(obj=[1, 2, 3]))
_a(_pth_args, "x.pth is damaged", _pth(obj={"model": {"embed.W_E": "x"}}))
_a(["{tmp}/x.pth"], "seed and frac_train", _pth(obj=_PARTIAL))
_a(["{tmp}/x.pth", "--seed", "-1", "--frac-train", "0.3"], "seed=", _pth(obj=_PARTIAL))
_a(["{tmp}/x.pth", "--seed", "1", "--frac-train", "nan"], "frac_train=", _pth(obj=_PARTIAL))
_a(_pth_args + ["--split", "random"], "split=", _pth(obj=_PARTIAL))
_a(_pth_args + ["--op", "divide"], "op=", _pth(obj=_PARTIAL))
_a(_pth_args + ["--out", "/proc/x.json"], "out=", _pth(obj=_PARTIAL))


def _p(args: list[str], expect: str, damage=None) -> None:
    CASES.append(("progress", ["progress"] + args, damage, expect))


for v in ("0", "-1", "abc", "1.5"):
    _p(["{run}", "--every", v], "every=")
for v in ("0", "99", "x", "1,,2"):
    _p(["{run}", "--keys", v], "keys=")
_p(["{tmp}/nope"], "not a grokscope run")
_p(["{file}"], "not a grokscope run")
_p(["{run}"], "no checkpoints", _no_checkpoints)
_p(["{run}"], "epoch_000020.safetensors is damaged", _truncate(CKPT))
_p(["{run}"], "config.json is damaged", _write("config.json", "{"))
_p(["{run}"], "metrics.parquet is damaged", _write("metrics.parquet", b"PAR1junk"))
_p(["{run}"], "metrics.parquet is damaged", _write("metrics.parquet", b""))
_p(["{run}"], "progress.parquet is damaged", _write("progress.parquet", b"junk"))


def _r(args: list[str], expect: str, damage=None) -> None:
    CASES.append(("report", ["report"] + args, damage, expect))


for opt, vals in {"--epoch": ["12345", "-1", "x"], "--model": ["5", "-1", "x"]}.items():
    for v in vals:
        _r(["{run}", opt, v], opt[2:] + "=")
for out in ("{tmp}", "/proc/x.html", "{file}/x.html", "{run}"):
    _r(["{run}", "-o", out], "out=")
_r(["{run}", "--png", "{file}"], "png=")
_r(["{tmp}/nope"], "not a grokscope run")
_r(["{run}"], "progress.parquet is damaged", _write("progress.parquet", b"junk"))
_r(["{run}"], "progress.parquet is damaged", _write("progress.parquet", b""))
_r(["{run}"], "config.json is damaged", _write("config.json", "{}"))
_r(["{run}"], "epoch_000020.safetensors is damaged", _write(CKPT, b""))
_r(["{run}"], "metrics.parquet is damaged", _write("metrics.parquet", b"junk"))


# ---------------------------------------------------------------------- running a case
def make_base_run(path: Path) -> Path:
    from grokscope.cli import main
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["train", "--out", str(path)] + TINY) == 0
    return path


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file's size and mtime and every directory (a directory's own mtime moves when a file is created and
    removed in it, e.g. a probe or a lock: that writes nothing)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else (-1, -1)
            for p in root.rglob("*")}


def run_case(case, base: Path, tmp: Path) -> tuple[bool, str]:
    """Run one case in ``tmp`` (a fresh folder) with a copy of ``base``; ``(clean, why)``."""
    from grokscope.cli import main
    _, argv, damage, expect = case
    run = tmp / "run"
    shutil.copytree(base, run)
    (tmp / "afile").write_text("a file")
    if damage is not None:
        damage(run)
    argv = [a.format(run=run, tmp=tmp, file=tmp / "afile") for a in argv]
    before = snapshot(tmp)
    err, out = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            rc = main(argv)
    except BaseException as e:  # noqa: BLE001 - a traceback is what this looks for
        return False, f"raised {type(e).__name__}: {e}"
    text = err.getvalue()
    lines = [x for x in text.splitlines() if x.strip()]
    if rc != 2:
        return False, f"exit {rc}: {text.strip()[:300]}"
    if len(lines) != 1 or not lines[0].startswith("grokscope: error:") or "Traceback" in text:
        return False, f"not one error line: {text.strip()[:300]}"
    if expect not in lines[0]:
        return False, f"does not name {expect!r}: {lines[0]}"
    if snapshot(tmp) != before:
        changed = set(snapshot(tmp).items()) ^ set(before.items())
        return False, f"wrote something: {sorted({c[0] for c in changed})}"
    return True, lines[0]


def main() -> int:
    import tempfile
    counts: dict[str, list[int]] = {}
    with tempfile.TemporaryDirectory() as d:
        base = make_base_run(Path(d) / "base")
        for i, case in enumerate(CASES):
            tmp = Path(d) / f"c{i}"
            tmp.mkdir()
            ok, why = run_case(case, base, tmp)
            c = counts.setdefault(case[0], [0, 0])
            c[0] += 1
            c[1] += ok
            if not ok or "-v" in sys.argv:
                print(("clean  " if ok else "UNCLEAN") + f" {' '.join(case[1])}: {why}")
            shutil.rmtree(tmp)
    total = [sum(c[0] for c in counts.values()), sum(c[1] for c in counts.values())]
    print(", ".join(f"{k} {c[1]}/{c[0]}" for k, c in counts.items()) + f"; all {total[1]}/{total[0]} clean")
    return 0 if total[0] == total[1] else 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    sys.exit(main())
