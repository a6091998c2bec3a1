"""Bad inputs and damaged run files for every subcommand (issue #11), tried as a new user would.

Each case is ``(subcommand, argv, damage, expect)``: ``argv`` may name ``{run}`` (a copy of a tiny trained run,
damaged by ``damage`` first), ``{seq}`` (a tiny skip-trigram run), ``{exp}`` (a tiny finished experiment; a damage
made by :func:`_on` damages that one instead), ``{tmp}`` (a scratch folder) and ``{file}`` (an existing regular
file). :func:`task_cases` gives the cases of one registered task (the conformance test of the task registry runs
them, so a new task is fuzzed by being registered). A case is
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


# ---------------------------------------------------------------------- issue #35: the newer paths
SEQ = ["--task", "skip-trigram", "--n-train", "16", "--n-test", "16", "--seq-len", "6", "--d-model", "8",
       "--n-heads", "2", "--epochs", "10", "--checkpoint-every", "5", "--no-progress", "--device", "cpu"]
SEQ_CKPT = "checkpoints/epoch_000010.safetensors"
EXP = ["experiment", "seeds", "--tiny", "--epochs", "3", "--seeds", "0", "--no-progress", "--no-report"]


def _on(base: str, fn):
    """``fn`` damages the copy of the base ``base`` (``seq``, ``exp``) instead of the modular run."""
    fn.base = base
    return fn


def _nan_ckpt(rel: str):
    def f(run: Path) -> None:
        from safetensors.torch import load_file, save_file
        d = load_file(str(run / rel))
        save_file({k: torch.full_like(v, float("nan")) for k, v in d.items()}, str(run / rel))
    return f


def _ckpt_edit(rel: str, how: str):
    def f(run: Path) -> None:
        from safetensors.torch import load_file, save_file
        d = load_file(str(run / rel))
        k = sorted(d)[0]
        if how == "missing":
            del d[k]
        else:
            d[k] = torch.zeros(1, 3, 3)
        save_file(d, str(run / rel))
    return f


def _plan(fn):
    def f(exp: Path) -> None:
        import json
        meta = json.loads((exp / "experiment.json").read_text())
        fn(meta)
        (exp / "experiment.json").write_text(json.dumps(meta))
    return f


# train: --log, --forecast, the methods
for args, expect in [(["--log", "x"], "log="), (["--log-dir", "{tmp}/l"], "log_dir"),
                     (["--progress-every", "2"], "progress_every"),
                     (["--log", "tensorboard", "--log-dir", "{file}"], "log_dir="),
                     (["--log", "tensorboard", "--log-dir", "{tmp}/new"], "log_dir="),
                     (["--log", "tensorboard", "--log-dir", "{tmp}/new/logs"], "log_dir="),
                     (["--log", "tensorboard", "--progress-keys", "1"], "progress_keys"),
                     (["--log", "tensorboard", "--progress-every", "0"], "every="),
                     (["--log", "tensorboard", "--progress-every", "1", "--progress-keys", "0"], "keys="),
                     (["--log", "wandb", "--device", "tpu"], "device="),
                     (["--log", "wandb", "--epochs", str(10**13)], "memory"),
                     (["--forecast-every", "10"], "forecast_every"),
                     (["--forecast-calibration", "{file}"], "forecast_calibration"),
                     (["--forecast", "--forecast-every", "0"], "forecast_every="),
                     (["--forecast", "--forecast-every", "7"], "forecast_every="),
                     (["--forecast", "--forecast-calibration", "{tmp}/none.json"], "none.json"),
                     (["--forecast", "--forecast-calibration", "{file}"], "afile"),
                     (["--grokfast", "x"], "grokfast="), (["--grokfast", "ma", "--grokfast-window", "0"], "grokfast_window="),
                     (["--grokfast", "ma", "--grokfast-window", str(10**9)], "grokfast_window="),
                     (["--grokfast", "ema", "--grokfast-alpha", "nan"], "grokfast_alpha="),
                     (["--grokfast", "ema", "--grokfast-lambda", "-1"], "grokfast_lambda="),
                     (["--optimizer", "sgd2"], "optimizer="), (["--loss", "x"], "loss="),
                     (["--loss-dtype", "float8"], "loss_dtype="), (["--norm-constraint", "-1"], "norm_constraint="),
                     (["--stop-below", "nan"], "stop_below="), (["--stop-patience", "-1"], "stop_patience="),
                     (["--until", "5", "--epochs", "0"], "epochs=")]:
    _t(args, expect)
_t([], "control character", out="{tmp}/a\nb")
_t([], "control character", out="{tmp}/a\rb")

# train: the sequence tasks (their own fields; memory)
for args, expect in [(["--n-train", "0"], "n_train="), (["--n-train", "x"], "n_train="),
                     (["--n-test", "-1"], "n_test="), (["--seq-len", "0"], "seq_len="),
                     (["--batch-size", "0"], "batch_size="), (["--p", "7"], "p"),
                     (["--frac-train", "0.5"], "frac_train"), (["--epochs", str(10**13)], "memory"),
                     (["--n-train", str(10**12)], "memory"), (["--n-test", str(10**11)], "memory"),
                     (["--seq-len", str(10**9)], "invalid"), (["--d-model", str(10**6)], "memory"),
                     (["--n-train", str(2 * 10**8), "--batch-size", "1"], "invalid"),
                     (["--forecast"], "forecast is invalid"),
                     (["--log", "tensorboard", "--progress-every", "1"], "progress_every")]:
    CASES.append(("train", ["train", "--out", "{tmp}/new"] + SEQ + args, None, expect))
CASES.append(("train", ["train", "--preset", "induction-infinite", "--batch-size", str(10**9), "--out",
                        "{tmp}/new", "--no-progress", "--device", "cpu"], None, "invalid"))
for args, damage, expect in [([], _on("seq", _write("state.pt", b"junk")), "state.pt is damaged"),
                             ([], _on("seq", _write("config.json", "[]")), "config.json is damaged"),
                             (["--until", "0"], None, "until=")]:
    CASES.append(("train", ["train", "--resume", "{seq}", "--no-progress", "--device", "cpu"] + args, damage, expect))

# analyze / progress / forecast of a sequence run: not modular
for cmd in (["analyze"], ["progress"], ["forecast", "--until", "5"]):
    CASES.append((cmd[0], [cmd[0], "{seq}"] + cmd[1:], None, "not a modular task"))

# forecast
def _f(args: list[str], expect: str, damage=None) -> None:
    CASES.append(("forecast", ["forecast"] + args, damage, expect))


for v in ("0", "-1", "x", "1.5"):
    _f(["{run}", "--until", v], "until=")
_f(["{run}", "--until", "21"], "until=")
_f(["{run}"], "--until")
for v in ("nan", "0", "-1", "x", "inf"):
    _f(["{run}", "--until", "20", "--threshold", v], "threshold=")
for out, expect in (("/proc/x.json", "out="), ("{file}/x.json", "out="), ("{tmp}", "out="),
                    ("{run}/state.pt", "out="), ("{run}/config.json", "out="), ("{run}/report.html", "out="),
                    ("{tmp}/x\n.json", "control character")):
    _f(["{run}", "--until", "20", "--out", out], expect)
_f(["{run}", "--until", "20", "--calibration", "{file}"], "afile")
_f(["{run}", "--until", "20", "--calibration", "{tmp}/none.json"], "none.json")
_f(["{tmp}/nope", "--until", "20"], "not a grokscope run")
_f(["{run}", "--until", "20"], "epoch_000020.safetensors is damaged", _truncate(CKPT))
_f(["{run}", "--until", "20"], "config.json is damaged", _write("config.json", "{"))
_f(["{run}", "--until", "20"], "metrics.parquet is damaged", _write("metrics.parquet", b"junk"))
_f(["{run}", "--until", "20"], "no checkpoints", _no_checkpoints)


# export
def _x(args: list[str], expect: str, damage=None) -> None:
    CASES.append(("export", ["export"] + args, damage, expect))


_X = ["--to", "transformer-lens", "--out"]
_x(["{run}", "--to", "onnx", "--out", "{tmp}/m.pt"], "to=")
for opt, vals in {"--epoch": ["12345", "-1", "x"], "--model": ["5", "-1", "x"]}.items():
    for v in vals:
        _x(["{run}", opt, v] + _X + ["{tmp}/m.pt"], opt[2:] + "=")
for out, expect in (("/proc/m.pt", "out="), ("{file}/m.pt", "out="), ("{tmp}", "out="), ("{run}/state.pt", "out="),
                    ("{run}/config.json", "out="), ("{run}/" + CKPT, "out="), ("{tmp}/m\n.pt", "control character")):
    _x(["{run}"] + _X + [out], expect)
_x(["{tmp}/nope"] + _X + ["{tmp}/m.pt"], "not a grokscope run")
_x(["{run}"] + _X + ["{tmp}/m.pt"], "epoch_000020.safetensors is damaged", _truncate(CKPT))
_x(["{run}"] + _X + ["{tmp}/m.pt"], "epoch_000020.safetensors is damaged", _wrong_shape_ckpt)
_x(["{run}"] + _X + ["{tmp}/m.pt"], "config.json is damaged", _write("config.json", "[]"))
_x(["{seq}"] + _X + ["{tmp}/m.pt"], "is damaged", _on("seq", _write(SEQ_CKPT, b"")))

# report of a sequence run
_r(["{seq}", "--epoch", "12345"], "epoch=")
_r(["{seq}", "--model", "1"], "model=")
_r(["{seq}", "-o", "{seq}/state.pt"], "out=")
_r(["{seq}", "-o", "{tmp}/r\n.html"], "control character")
_r(["{seq}", "-o", "{tmp}/r.html"], "not finite", _on("seq", _nan_ckpt(SEQ_CKPT)))
_r(["{seq}", "-o", "{tmp}/r.html"], "is damaged", _on("seq", _truncate(SEQ_CKPT)))
_r(["{seq}", "-o", "{tmp}/r.html"], "is damaged", _on("seq", _ckpt_edit(SEQ_CKPT, "shape")))
_r(["{seq}", "-o", "{tmp}/r.html"], "is damaged", _on("seq", _ckpt_edit(SEQ_CKPT, "missing")))
_r(["{seq}", "-o", "{tmp}/r.html"], "metrics.parquet is damaged", _on("seq", _write("metrics.parquet", b"")))
_r(["{seq}", "-o", "{tmp}/r.html"], "config.json is damaged", _on("seq", _write("config.json", "{}")))


# experiment
def _e(args: list[str], expect: str, damage=None, out: str = "{tmp}/e") -> None:
    CASES.append(("experiment", EXP + ["--out", out] + args, damage, expect))


for args, expect in [(["--executor", "slurm"], "executor="), (["--address", "ray://h:1"], "address is invalid"),
                     (["--epochs", "0"], "epochs="), (["--jobs", "0"], "jobs="), (["--jobs", "x"], "--jobs"),
                     (["--seeds", "99"], "seeds="), (["--seeds", "a"], "seeds="), (["--device", "tpu"], "device="),
                     (["--epochs", str(10**13)], "memory"),
                     (["--jobs", "2", "--executor", "ray"], "jobs is invalid")] \
        + [(["--device", "cuda"], "device=")] * (not _CUDA):
    _e(args, expect)
_e([], "experiment=", out="{tmp}/e")
CASES[-1] = ("experiment", ["experiment", "nope", "--out", "{tmp}/e"], None, "experiment=")
for out in ("{file}", "{run}", "{tmp}", "{file}/e"):
    _e([], "out=", out=out)
_e([], "control character", out="{tmp}/e\nx")
_e([], "holds the experiment 'seeds'", out="{exp}")
CASES[-1] = ("experiment", ["experiment", "frac", "--tiny", "--out", "{exp}", "--no-progress", "--no-report"], None,
             "holds the experiment 'seeds'")
_e(["--epochs", "4"], "epochs=4 is invalid", out="{exp}")
try:
    import ray  # noqa: F401
    _RAY = True
except ImportError:
    _RAY = False
_e(["--executor", "ray", "--address", "127.0.0.1:1"], "address=" if _RAY else "needs Ray")
_e(["--executor", "ray", "--address", "not an address"], "address=" if _RAY else "needs Ray")
_PLAN = "experiment.json is damaged"
for damage in (_write("experiment.json", ""), _write("experiment.json", "[1]"), _write("experiment.json", '{"exp'),
               _plan(lambda m: m.pop("groups")), _plan(lambda m: m.update(groups=[])),
               _plan(lambda m: m["groups"][0].update(name="01")), _plan(lambda m: m["groups"][0].update(name="..")),
               _plan(lambda m: m["groups"][0]["models"][0].update(lr="abc")),
               _plan(lambda m: m["groups"][0]["models"][0].update(p=-3)),
               _plan(lambda m: m["groups"][0]["models"][0].update(zzz=1))):
    _e([], _PLAN, _on("exp", damage), out="{exp}")
_e([], "summary.parquet is damaged", _on("exp", _write("groups/00/summary.parquet", b"")), out="{exp}")
_e([], "summary.parquet is damaged", _on("exp", _write("groups/00/summary.parquet", b"PAR1junk")), out="{exp}")
_e([], "rerun the same command: group 00", _on("exp", lambda e: (e / "groups/00/summary.parquet").unlink()
                                                 or _write("groups/00/config.json", "{")(e)), out="{exp}")


# ---------------------------------------------------------------------- every registered task
def task_cases(name: str) -> list[tuple[str, list[str], object, str]]:
    """Bad values of every option of task ``name`` and of the shape and length of its model, on ``train``, from
    its ``tiny`` options (the conformance test runs them for every registered task): each is refused in one line
    before anything is written."""
    import dataclasses
    import typing

    from grokscope.tasks import TASKS
    cls = TASKS[name]
    base = ["train", "--out", "{tmp}/new", "--task", name, "--no-progress", "--device", "cpu", "--epochs", "5",
            "--d-model", "8", "--n-heads", "2"]
    for k, v in cls.tiny.items():
        base += ["--" + k.replace("_", "-"), str(v)]
    out = []

    def case(args: list[str], expect: str) -> None:
        flags = {a for a in args if a.startswith("--")}
        argv = list(base)
        for f in flags:  # the case's value replaces the tiny one
            if f in argv:
                i = argv.index(f)
                del argv[i:i + 2]
        out.append((f"task {name}", argv + args, None, expect))

    hints = typing.get_type_hints(cls.Options)
    for f in dataclasses.fields(cls.Options):
        flag, typ = "--" + f.name.replace("_", "-"), hints[f.name]
        args = typing.get_args(typ)
        base_typ = next((a for a in args if a is not type(None)), typ) if args else typ
        if base_typ is int:
            for v in ("x", "1.5", "-1", str(2**70)):
                case([flag, v], f.name + "=")
            case([flag, str(10**12)], "invalid")
        elif base_typ is float:
            for v in ("x", "nan", "inf", "-1"):
                case([flag, v], f.name + "=")
        elif base_typ is str:
            case([flag, "no-such-value"], f.name + "=")
    for flag, v, expect in (("--epochs", str(10**13), "invalid"), ("--d-model", str(10**6), "invalid"),
                            ("--d-model", "0", "d_model="), ("--n-heads", "3", "d_model="),
                            ("--n-layers", "0", "n_layers="), ("--lr", "nan", "lr="), ("--seed", "-1", "seed="),
                            ("--checkpoint-every", "0", "checkpoint_every="), ("--grokfast", "ma", None)):
        if expect is None:
            case([flag, v, "--grokfast-window", str(10**9)], "grokfast_window=")
        else:
            case([flag, v], expect)
    owners = {n for c in TASKS.values() if c is not cls for n in (x.name for x in dataclasses.fields(c.Options))}
    for other in sorted(owners - {x.name for x in dataclasses.fields(cls.Options)})[:3]:
        case(["--" + other.replace("_", "-"), "3"], other)  # another task's option
    return out


# ---------------------------------------------------------------------- running a case
def make_base_run(path: Path) -> Path:
    from grokscope.cli import main
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["train", "--out", str(path)] + TINY) == 0
    return path


def make_bases(root: Path, which=("run", "seq", "exp")) -> dict[str, Path]:
    """The trained things cases copy: ``run`` (modular, :data:`TINY`), ``seq`` (skip-trigram, 10 steps), ``exp``
    (the ``seeds`` experiment, tiny, one seed, 3 epochs)."""
    from grokscope.cli import main
    out = {}
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        if "run" in which:
            out["run"] = make_base_run(root / "run")
        if "seq" in which:
            assert main(["train", "--out", str(root / "seq")] + SEQ) == 0
            out["seq"] = root / "seq"
        if "exp" in which:
            assert main(EXP + ["--out", str(root / "exp")]) == 0
            out["exp"] = root / "exp"
    return out


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file's size and mtime and every directory (a directory's own mtime moves when a file is created and
    removed in it, e.g. a probe or a lock: that writes nothing)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else (-1, -1)
            for p in root.rglob("*")}


def run_case(case, base: "Path | dict[str, Path]", tmp: Path) -> tuple[bool, str]:
    """Run one case in ``tmp`` (a fresh folder) with copies of the bases it names (``base``: the bases of
    :func:`make_bases`, or the modular run alone); ``(clean, why)``."""
    from grokscope.cli import main
    _, argv, damage, expect = case
    bases = base if isinstance(base, dict) else {"run": base}
    on = getattr(damage, "base", "run")
    for name, path in bases.items():
        if any("{" + name + "}" in a for a in argv) or (damage is not None and on == name):
            shutil.copytree(path, tmp / name)
    (tmp / "afile").write_text("a file")
    if damage is not None:
        damage(tmp / on)
    argv = [a.format(run=tmp / "run", seq=tmp / "seq", exp=tmp / "exp", tmp=tmp, file=tmp / "afile") for a in argv]
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


def all_cases() -> list:
    """Every case: :data:`CASES` and every registered task's :func:`task_cases`."""
    from grokscope.tasks import TASKS
    return CASES + [c for name in sorted(TASKS) for c in task_cases(name)]


def main() -> int:
    import tempfile
    counts: dict[str, list[int]] = {}
    with tempfile.TemporaryDirectory() as d:
        base = make_bases(Path(d) / "base")
        for i, case in enumerate(all_cases()):
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
