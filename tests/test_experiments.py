"""The paper's experiments (issue #13): the registry against the paper, every experiment in tiny form, grouping,
resume / skip, the summary against the layers it reuses, the report, the command line, and a real local Ray."""

import json
import os

import numpy as np
import pandas as pd
import pytest
import torch
from helpers import need_reference

from grokscope.experiments import executors, registry, summary
from grokscope.interp.analysis import analyze
from grokscope.cli import main
from grokscope.config import Config, ConfigError
from grokscope.experiments import EXPERIMENTS, Experiment, Spec, group_configs, open_experiment, run_experiment
from grokscope.report.run import load_phases, load_progress
from grokscope.training.run import Run, train

RUNNABLE = [n for n, s in EXPERIMENTS.items() if not s.missing()]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors (conftest.py)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Each runnable experiment run once in tiny form (cached for the module)."""
    done = {}

    def get(name):
        if name not in done:
            done[name] = run_experiment(name, tmp_path_factory.mktemp(name) / "exp", tiny=True, progress=False)
        return done[name]
    return get


# ---------------------------------------------------------------------- the registry is the paper's
def _values(name, field):
    return [getattr(c, field) for c in EXPERIMENTS[name].configs()] if not EXPERIMENTS[name].missing() else None


def test_registry_has_the_papers_configs():
    assert list(EXPERIMENTS) == ["seeds", "frac", "wd", "primes", "two-layer", "dropout", "l1", "low-precision",
                                 "width-no-wd", "methods"]
    assert _values("seeds", "seed") == [0, 1, 2, 3, 4] and set(_values("seeds", "frac_train")) == {0.3}
    assert _values("frac", "frac_train") == [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    wd = EXPERIMENTS["wd"].configs()
    assert sorted({(c.weight_decay, c.seed) for c in wd}) == [(w, s) for w in (0.0, 0.3, 1.0, 3.0) for s in (0, 1, 2)]
    pr = EXPERIMENTS["primes"].configs()
    # C.2.2: p = 53 at weight decay 5 (Fig 24) and at the mainline's 1 ("never generalises"), p = 109; p = 401 on
    # 5%, 10%, 20% at weight decay 1, 3 models each, and on the mainline's 30% over the paper's six weight decays
    assert sorted((c.weight_decay, c.seed) for c in pr if c.p == 53) == [(w, s) for w in (1.0, 5.0) for s in range(5)]
    assert {c.seed for c in pr if c.p == 109} == {0, 1, 2, 3, 4} and {c.weight_decay for c in pr if c.p == 109} == {1.0}
    assert sorted((c.frac_train, c.weight_decay, c.seed) for c in pr if c.p == 401) == \
        [(f, 1.0, s) for f in (0.05, 0.1, 0.2) for s in range(3)] + [(0.3, w, 0) for w in (0.3, 0.5, 1.0, 3.0, 5.0, 8.0)]
    assert set(_values("two-layer", "n_layers")) == {2} and _values("two-layer", "seed") == [0, 1, 2, 3, 4]
    for name, field, vals in (("dropout", "dropout", (0.2, 0.5, 0.8)), ("l1", "l1", (1.0, 10.0, 100.0))):
        cs = EXPERIMENTS[name].configs()
        assert sorted({(getattr(c, field), c.seed) for c in cs}) == [(v, s) for v in vals for s in range(3)]
        assert {c.weight_decay for c in cs} == {0.0}
    wn = EXPERIMENTS["width-no-wd"].configs()
    assert [c.d_model for c in wn] == [8, 16, 32, 64, 128, 256, 512, 1024] and all(c.d_mlp == 4 * c.d_model for c in wn)
    assert {c.weight_decay for c in wn} == {0.0} and {c.epochs for c in wn} == {3000}
    for name in ("seeds", "frac", "wd", "primes", "two-layer", "dropout", "l1"):
        assert {c.epochs for c in EXPERIMENTS[name].configs()} == {40_000}, name
    assert EXPERIMENTS["low-precision"].needs == ("loss_dtype",)
    assert [m["loss_dtype"] for m in EXPERIMENTS["low-precision"].models] == ["float32", "bfloat16"]
    me = EXPERIMENTS["methods"].configs()  # issue #14: each method x 3 seeds, the mainline otherwise
    assert sorted({(c.grokfast, c.optimizer, c.loss, c.norm_constraint) for c in me}, key=str) == sorted(
        {("none", "adamw", "softmax", None), ("ema", "adamw", "softmax", None), ("ma", "adamw", "softmax", None),
         ("none", "orthoadamw", "softmax", None), ("none", "adamw", "stablemax", None),
         ("none", "adamw", "softmax", 0.7), ("none", "muon", "softmax", None)}, key=str)
    assert len(me) == 24 and {c.seed for c in me} == {0, 1, 2} and {c.epochs for c in me} == {40_000}
    # ⊥AdamW twice: with the mainline's weight decay and without (Prieto et al.'s setting)
    assert sorted(c.weight_decay for c in me if c.optimizer == "orthoadamw") == [0.0] * 3 + [1.0] * 3
    assert {c.weight_decay for c in me if c.norm_constraint} == {0.0} and {c.frac_train for c in me} == {0.3}
    assert {(c.weight_decay, c.muon_lr, c.muon_momentum) for c in me if c.optimizer == "muon"} == {(1.0, 0.02, 0.95)}


def test_grouping_by_shape():
    sizes = {n: s.size()[:2] for n, s in EXPERIMENTS.items()}
    assert sizes == {"seeds": (5, 1), "frac": (9, 9), "wd": (12, 4), "primes": (30, 12), "two-layer": (5, 1),
                     "dropout": (9, 3), "l1": (9, 1), "low-precision": (2, 2), "width-no-wd": (8, 8),
                     "methods": (24, 6)}
    for name in RUNNABLE:  # tiny keeps the models, their per-model values and the groups
        full, small = EXPERIMENTS[name].configs(), EXPERIMENTS[name].configs(tiny=True)
        assert [len(g) for g in group_configs(full)] == [len(g) for g in group_configs(small)], name
        for a, b in zip(full, small):
            assert (a.seed, a.frac_train, a.weight_decay, a.dropout, a.l1, a.n_layers) == \
                   (b.seed, b.frac_train, b.weight_decay, b.dropout, b.l1, b.n_layers)
    g = group_configs(EXPERIMENTS["primes"].configs())
    assert [{(c.p, c.frac_train, c.weight_decay) for c in x} for x in g] == \
        [{(53, 0.3, 5.0)}, {(109, 0.3, 1.0)}, {(401, 0.05, 1.0)}, {(401, 0.1, 1.0)}, {(401, 0.2, 1.0)},
         {(53, 0.3, 1.0)}] + [{(401, 0.3, w)} for w in (0.3, 0.5, 1.0, 3.0, 5.0, 8.0)]
    assert [len(x) for x in g] == [5, 5, 3, 3, 3, 5] + [1] * 6
    # the first five are the groups of directories started before the last seven were added: their names stay
    assert [n["name"] for n in registry.plan("primes")["groups"]][:7] == [
        "00_p53_fractrain0.3_weightdecay5.0", "01_p109_fractrain0.3_weightdecay1.0",
        "02_p401_fractrain0.05_weightdecay1.0", "03_p401_fractrain0.1_weightdecay1.0",
        "04_p401_fractrain0.2_weightdecay1.0", "05_p53_fractrain0.3_weightdecay1.0",
        "06_p401_fractrain0.3_weightdecay0.3"]
    assert [n["name"] for n in registry.plan("frac")["groups"]][:2] == ["00_fractrain0.1", "01_fractrain0.2"]
    assert [n["name"] for n in registry.plan("wd")["groups"]][0] == "00_weightdecay0.0"  # the stopping rule splits
    assert [n["name"] for n in registry.plan("l1")["groups"]] == ["00"]
    # train sets within 10% share a group (no padding beyond it), farther ones do not
    cs = [Config(frac_train=f, seed=s) for f, s in ((0.3, 0), (0.32, 1), (0.5, 2), (0.31, 3))]
    assert [[c.seed for c in x] for x in group_configs(cs)] == [[0, 1, 3], [2]]


def test_epochs_override():
    assert {c.epochs for c in EXPERIMENTS["frac"].configs(epochs=2000)} == {2000}
    with pytest.raises(registry.ConfigError, match="epochs=0 is invalid"):
        EXPERIMENTS["frac"].configs(epochs=0)


# ---------------------------------------------------------------------- every experiment, tiny
@pytest.mark.parametrize("name", RUNNABLE)
def test_every_experiment_runs_tiny(tiny, name):
    exp = tiny(name)
    spec = EXPERIMENTS[name]
    s = exp.summary
    configs = spec.configs(tiny=True)
    assert len(s) == len(configs) and set(exp.status().state) == {"done"}
    assert len(exp.groups) == len(group_configs(configs))
    got = [Run.load(g.path).configs for g in exp.groups]
    assert [c for cs in got for c in cs] == [c for g in group_configs(configs) for c in g]
    for col in ("final_train_loss", "final_test_loss", "epoch_train_loss_1e6", "epoch_test_loss_1e6",
                "epoch_test_acc_99", "keys", "gini_W_E", "gini_W_L", "logit_fve", "mlp_fve", "mlp_fve_std",
                "skip_mean_loss", "skip_zero_loss", "memorisation_end", "circuit_formation_end", "cleanup_end"):
        assert col in s.columns, col
    assert s.final_train_loss.notna().all() and np.isfinite(s.gini_W_E).all()
    # every model analysed, two-layer ones through their final block (Tables 5-6's two-layer rows)
    assert s["skip_mean_loss"].notna().all() and s["logit_fve"].notna().all()  # (mlp_fve: NaN without keys)
    assert (exp.path / "summary.parquet").is_file()
    pd.testing.assert_frame_equal(Experiment.load(exp.path).summary, s)


def test_summary_reuses_the_run_layers(tiny, monkeypatch, tmp_path):
    exp = tiny("wd")
    s = exp.summary
    s = s[s.group == exp.groups[0].name].reset_index(drop=True)  # the first group's models
    run = exp.run(exp.groups[0].name)
    ms = run.milestones()
    assert list(s.final_test_loss) == list(ms.final_test_loss) and list(s.epoch_test_acc_99.isna()) == \
        list(ms.test_acc_99.isna())
    prog = load_progress(run)  # the group's progress.parquet, written by the summary
    last = prog[(prog.epoch == prog.epoch.max()) & (prog.measure == "gini_W_L")].sort_values("model")
    np.testing.assert_allclose(s.gini_W_L, last.value, rtol=1e-6)
    ph = load_phases(run)["models"]
    assert [m["keys"] for m in ph] == list(map(list, s["keys"]))
    assert [m["ends"]["memorisation"] for m in ph] == [None if v != v else int(v) for v in s.memorisation_end]
    # the analysis columns: with keys given (the tiny models have none of their own) every column is a number,
    # and each is the analysis' own; with a threshold the tiny runs reach, the first epoch below it in the metrics
    monkeypatch.setattr(summary, "analyze", lambda m, d: analyze(m, d, keys=[1, 2]))
    monkeypatch.setattr(summary, "LOSS_THRESHOLD", float(ms.final_train_loss.median()))
    again = summary.summarise_run(run, "wd", exp.groups[0].name)
    res = analyze(run.model(None, 2), run.dataset(2), keys=[1, 2])
    r = again.iloc[2]
    fves = [d.fve for d in res.composition.directions]
    assert len(fves) == 4 and r.logit_fve == res.composition.logit_fve
    assert r.mlp_fve == pytest.approx(np.mean(fves), rel=1e-12) and r.mlp_fve_std == pytest.approx(np.std(fves), rel=1e-12)
    ab = res.ablations.results
    assert (r.skip_mean_loss, r.skip_zero_loss, r.skip_mean_acc) == (ab["skip_mlp_mean"].after.loss_all,
                                                                    ab["skip_mlp_zero"].after.loss_all,
                                                                    ab["skip_mlp_mean"].after.acc_all)
    assert r.excluded_loss == ab["logits_excluded"].after.loss_train
    assert r.excluded_test_loss == ab["logits_excluded"].after.loss_test
    assert again[list(summary.ANALYSIS_COLUMNS)].notna().all().all()
    m = run.metrics
    for k in range(run.K):
        e = m[(m.model == k) & (m.train_loss < summary.LOSS_THRESHOLD)].epoch
        want = float(e.min()) if len(e) else float("nan")
        got = again.epoch_train_loss_1e6[k]
        assert got == want or (np.isnan(want) and np.isnan(got)), (k, got, want)
    assert again.epoch_train_loss_1e6.notna().any()


# ---------------------------------------------------------------------- resume and skip
def _mtimes(path):
    return {f: f.stat().st_mtime_ns for f in path.rglob("*") if f.is_file()}


def test_resume_skip_and_interrupted_summary(tmp_path):
    straight = run_experiment("seeds", tmp_path / "a", tiny=True, progress=False)
    exp = open_experiment(tmp_path / "b", "seeds", None, True)  # the plan, then a group killed at epoch 30
    g = exp.groups[0]
    train(g.configs, g.path, device="cpu", progress=False, until=30)
    assert exp.status().state.tolist() == ["partial"] and exp.status().last_epoch.tolist() == [29]
    resumed = run_experiment("seeds", tmp_path / "b", tiny=True, progress=False)
    ra, rb = straight.run(g.name), resumed.run(g.name)
    assert ra.checkpoint_epochs == rb.checkpoint_epochs
    for k, v in ra.params().items():
        assert torch.equal(v, rb.params()[k]), k
    pd.testing.assert_frame_equal(ra.metrics, rb.metrics)
    before = _mtimes(tmp_path / "b" / "groups")
    run_experiment("seeds", tmp_path / "b", tiny=True, progress=False)  # finished: skipped, nothing rewritten
    assert _mtimes(tmp_path / "b" / "groups") == before
    (g.path / "summary.parquet").unlink()  # killed while summarising: only the summary is redone
    assert exp.status().state.tolist() == ["trained"]
    run_experiment("seeds", tmp_path / "b", tiny=True, progress=False)
    after = _mtimes(tmp_path / "b" / "groups")
    assert {f: t for f, t in after.items() if "checkpoints" in f.parts or f.name == "state.pt"} == \
           {f: t for f, t in before.items() if "checkpoints" in f.parts or f.name == "state.pt"}
    pd.testing.assert_frame_equal(Experiment.load(tmp_path / "b").summary.drop(columns=["experiment"]),
                                  straight.summary.drop(columns=["experiment"]))


# ---------------------------------------------------------------------- the command line
def test_cli_list_and_bad_input(tmp_path, capsys):
    assert main(["experiment", "list"]) == 0
    out = capsys.readouterr().out
    assert all(f"\n{n} " in "\n" + out for n in EXPERIMENTS)
    lp_missing = bool(EXPERIMENTS["low-precision"].missing())  # until training has --loss-dtype (issue #13)
    assert ("[needs --loss-dtype]" in out) == lp_missing
    cases = [(["experiment", "nope", "--out", str(tmp_path / "x")], "experiment='nope' is invalid"),
             (["experiment", "seeds", "--out", str(tmp_path / "x"), "--executor", "slurm"], "executor='slurm' is invalid"),
             (["experiment", "seeds", "--out", str(tmp_path / "x"), "--address", "ray://h:1"], "address is invalid"),
             (["experiment", "seeds", "--out", str(tmp_path / "x"), "--epochs", "0"], "epochs=0 is invalid"),
             (["experiment", "seeds", "--out", str(tmp_path / "x"), "--device", "tpu"], "device='tpu' is invalid"),
             (["experiment", "seeds", "--out", str(tmp_path / "x"), "--jobs", "0"], "jobs=0 is invalid"),
             (["experiment", "seeds", "--out", str(tmp_path / "x"), "--jobs", "two"], "--jobs"),
             ] + [(["experiment", "low-precision", "--out", str(tmp_path / "x")], "--loss-dtype")] * lp_missing
    for argv, msg in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert msg in err and err.count("\n") == 1, (argv, err)
        assert not (tmp_path / "x").exists()


def test_a_plan_saved_before_a_new_config_field_still_resumes(tmp_path):
    """An experiment started by an older grokscope has no entry for a Config field added since (here
    ``loss_dtype``): at its default the plan is the same plan and the experiment resumes; a saved value that is
    not the default is another plan and is refused."""
    open_experiment(tmp_path / "e", "seeds", None, True)
    meta = tmp_path / "e" / "experiment.json"
    old = json.loads(meta.read_text())
    for g in old["groups"]:
        for m in g["models"]:
            del m["loss_dtype"]
    meta.write_text(json.dumps(old))
    assert len(open_experiment(tmp_path / "e", "seeds", None, True).groups) == 1
    old["groups"][0]["models"][0]["loss_dtype"] = "float32"
    meta.write_text(json.dumps(old))
    with pytest.raises(ConfigError, match="experiment.json is damaged: its groups are not the plan of the options"):
        open_experiment(tmp_path / "e", "seeds", None, True)


def test_an_experiment_that_has_grown_adds_its_new_groups(tmp_path, capsys):
    """A directory started before groups were appended to its experiment resumes: its groups keep their names and
    runs, the new groups are appended to experiment.json (which records the grokscope that extended it) and
    trained; a change to a group it already has is still refused."""
    out = tmp_path / "e"
    argv = ["experiment", "dropout", "--out", str(out), "--tiny", "--seeds", "0", "--no-progress", "--no-report"]
    meta = out / "experiment.json"
    full = [g["name"] for g in registry.plan("dropout", None, True, [0])["groups"]]
    assert len(full) == 3
    old = registry.plan("dropout", None, True, [0])
    old["groups"] = old["groups"][:2]  # as if the 0.8 group had been added to the registry since
    out.mkdir()
    meta.write_text(json.dumps(old))
    opened = open_experiment(out, "dropout", None, True, [0], write=False)
    assert opened.added == [full[2]] and len(json.loads(meta.read_text())["groups"]) == 2  # write=False: as it was
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert f"has grown since this directory was started; adding {full[2]}" in text and "3 groups, 3 models" in text
    saved = json.loads(meta.read_text())
    assert [g["name"] for g in saved["groups"]] == full and "extended_by" in saved
    assert sorted(pd.read_parquet(out / "summary.parquet").dropout) == [0.2, 0.5, 0.8]
    assert Experiment.load(out).added == [] and main(argv) == 0  # now the plan itself: nothing added, nothing run
    assert "has grown" not in capsys.readouterr().out
    saved["groups"][0]["models"][0]["dropout"] = 0.3  # a group it has, changed: edited, refused
    meta.write_text(json.dumps(saved))
    with pytest.raises(ConfigError, match="its groups are not the plan of the options it records"):
        open_experiment(out, "dropout", None, True, [0])
    saved["groups"][0]["models"][0]["dropout"] = 0.2
    saved["groups"] = saved["groups"] + [{**saved["groups"][0], "name": "03_more"}]  # more than the plan: refused
    meta.write_text(json.dumps(saved))
    with pytest.raises(ConfigError, match="its groups are not the plan of the options it records"):
        open_experiment(out, "dropout", None, True, [0])


def test_cli_runs_and_refuses_another_plan(tmp_path, capsys):
    out = tmp_path / "e"
    assert main(["experiment", "two-layer", "--out", str(out), "--tiny", "--no-progress", "--no-report"]) == 0
    text = capsys.readouterr().out
    assert "5 models" in text and (out / "summary.parquet").is_file() and not (out / "report.html").exists()
    assert main(["experiment", "two-layer", "--out", str(out), "--epochs", "100", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert "epochs=100 is invalid" in err and "--tiny" in err and err.count("\n") == 1
    assert main(["experiment", "seeds", "--out", str(out), "--tiny", "--no-report"]) == 2
    assert "holds the experiment 'two-layer'" in capsys.readouterr().err


def test_seeds_keeps_only_those_models(tmp_path, capsys):
    spec = EXPERIMENTS["methods"]
    one = spec.configs(tiny=True, seeds=[0])
    assert len(one) == 8 and {c.seed for c in one} == {0}  # one model per method (⊥AdamW twice)
    assert [c.to_dict() for c in one] == [c.to_dict() for c in spec.configs(tiny=True) if c.seed == 0]
    with pytest.raises(ConfigError, match=r"seeds=7 is invalid for the experiment 'methods': each must be one of 0, 1, 2"):
        spec.configs(seeds=[7])
    out = tmp_path / "e"
    assert main(["experiment", "two-layer", "--out", str(out), "--tiny", "--seeds", "1,3", "--no-progress",
                 "--no-report"]) == 0
    assert "2 models" in capsys.readouterr().out
    assert sorted(pd.read_parquet(out / "summary.parquet").seed) == [1, 3]
    assert main(["experiment", "two-layer", "--out", str(out), "--tiny", "--no-report"]) == 2  # another plan
    err = capsys.readouterr().err
    assert "seeds=None is invalid" in err and "--seeds 1,3" in err and err.count("\n") == 1
    assert main(["experiment", "two-layer", "--out", str(tmp_path / "f"), "--seeds", "x"]) == 2
    assert "seeds='x' is invalid" in capsys.readouterr().err


def test_test_every_is_part_of_the_plan(tmp_path, capsys):
    """``--test-every N``: every model evaluates its test set every N epochs (the metrics say so), the plan records
    it, a rerun without it is refused in one line naming the recorded option, a rerun with it resumes; a plan
    saved before the option existed (no ``test_every`` entry) is a plan without it."""
    spec = EXPERIMENTS["primes"]
    assert {c.test_every for c in spec.configs(test_every=100)} == {100} and spec.configs()[0].test_every == 10
    with pytest.raises(ConfigError, match=r"test_every=0 is invalid: must be an integer >= 1"):
        spec.configs(test_every=0)
    out = tmp_path / "e"
    argv = ["experiment", "two-layer", "--out", str(out), "--tiny", "--seeds", "0", "--no-progress", "--no-report"]
    assert main(argv + ["--test-every", "20"]) == 0
    capsys.readouterr()
    assert json.loads((out / "experiment.json").read_text())["test_every"] == 20
    run = Run.load(next((out / "groups").iterdir()))
    assert run.config.test_every == 20
    tested = sorted(set(run.metrics.dropna(subset=["test_loss"]).epoch))
    assert tested[-2:] == [40, 60] and all(e % 20 == 0 for e in tested)
    assert main(argv) == 2  # another plan
    err = capsys.readouterr().err
    assert "test_every=None is invalid" in err and "--test-every 20" in err and err.count("\n") == 1
    assert main(argv + ["--test-every", "20"]) == 0  # the same plan: done, skipped
    old = tmp_path / "old"
    open_experiment(old, "seeds", None, True)
    meta = json.loads((old / "experiment.json").read_text())
    del meta["test_every"]
    (old / "experiment.json").write_text(json.dumps(meta))
    assert len(open_experiment(old, "seeds", None, True).groups) == 1
    with pytest.raises(ConfigError, match=r"test_every=7 is invalid for .*: it was started with --tiny;"):
        open_experiment(old, "seeds", None, True, test_every=7)


# ---------------------------------------------------------------------- the report
def test_report(tiny, tmp_path):
    pytest.importorskip("plotly")
    from grokscope.report.experiment import report_html, table5, table6

    exp = tiny("frac")
    path = report_html(exp, tmp_path / "r.html")
    doc = path.read_text()
    for fid in ("fig-frac-sweep", "fig-grokking-epochs"):  # the sweep overlaid in one plot (Fig 20)
        assert fid in doc, fid
    assert "fig-losses-" not in doc
    assert "Fig 21" in doc and "17, 43, 49, 55" in doc  # the paper's Table 5 row for 40%
    t5 = table5(exp.summary, "frac")
    assert [r["source"] for r in t5].count("paper") == 6 and len(t5) == 9 + 6
    t6 = table6(exp.summary, "frac")
    assert [r["source"] for r in t6] == ["grokscope", "paper"] and "(9 models)" in t6[0]["rows"]
    seeds = report_html(tiny("seeds"), tmp_path / "s.html").read_text()
    assert all(f"fig-{n}" in seeds for n in ("fourier_norms_models", "seed_losses", "gini_models"))


def test_report_overlays_the_authors_curves(tiny, tmp_path):
    pytest.importorskip("plotly")
    need_reference("mod_addition_frac_train_sweep.pth")
    from grokscope.report.experiment import REFERENCE, overlay, reference_curves

    ref = reference_curves("frac", REFERENCE)
    assert sorted(ref) == [0.25, 0.28, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95]
    tr, te, every = ref[0.3]
    assert len(tr) == len(te) == 8996 and every == 1 and tr[0] > 4
    exp = tiny("frac")
    fig = overlay(exp, ref, exp.summary)
    names = [t.name for t in fig.data if t.showlegend]
    assert sum(n.startswith("grokscope") for n in names) == 7  # 0.3 .. 0.9 have authors' curves; 0.1, 0.2 not
    from grokscope.report.experiment import report_html
    assert 'id="fig-reference-overlay"' in report_html(exp, tmp_path / "r.html").read_text()


# ---------------------------------------------------------------------- Ray
def _ray():
    try:
        import ray  # noqa: F401
    except ImportError:
        if os.environ.get("GROKSCOPE_REQUIRE_RAY") == "1":
            pytest.fail("GROKSCOPE_REQUIRE_RAY=1 but ray is not installed (pip install 'grokscope[ray]')")
        pytest.skip("ray not installed (pip install 'grokscope[ray]')")
    return ray


TWO_GROUPS = Spec("two-groups", "test", "two groups of one model", models=({"p": 53}, {"p": 109, "seed": 1}))


def test_ray_runs_a_two_group_experiment(tmp_path, monkeypatch):
    ray = _ray()
    monkeypatch.setitem(EXPERIMENTS, "two-groups", TWO_GROUPS)
    local = run_experiment("two-groups", tmp_path / "local", tiny=True, progress=False)
    assert not ray.is_initialized()
    exp = run_experiment("two-groups", tmp_path / "ray", tiny=True, executor="ray", device="cpu", progress=False)
    assert not ray.is_initialized()  # started and shut down by run_experiment
    assert exp.status().state.tolist() == ["done", "done"] and [g.name for g in exp.groups] == ["00_p7", "01_p11"]
    a, b = local.summary, exp.summary
    assert list(b.p) == [7, 11] and list(b.seed) == [0, 1]
    np.testing.assert_allclose(b.final_train_loss, a.final_train_loss, rtol=1e-4)
    np.testing.assert_allclose(b.final_test_loss, a.final_test_loss, rtol=1e-4)
    meta = json.loads((exp.groups[1].path / "config.json").read_text())
    assert meta["models"][0]["p"] == 11
    before = _mtimes(tmp_path / "ray")
    run_experiment("two-groups", tmp_path / "ray", tiny=True, executor="ray", device="cpu", progress=False)
    assert not ray.is_initialized()  # nothing left to do: no Ray started, nothing rewritten but the summary
    assert {f: t for f, t in _mtimes(tmp_path / "ray").items() if f.name != "summary.parquet" or "groups" in f.parts} \
        == {f: t for f, t in before.items() if f.name != "summary.parquet" or "groups" in f.parts}


def test_report_renders_in_chromium(tiny, tmp_path):
    pytest.importorskip("plotly")
    import re

    from test_report_browser import _browse, _chromium, _js_errors

    from grokscope.report.experiment import figures, report_html

    exe = _chromium()
    exp = tiny("frac")
    path = report_html(exp, tmp_path / "r.html")
    dom, log = _browse(exe, path, tmp_path)
    assert _js_errors(log) == []
    plotted = set(re.findall(r'<div[^>]*id="plot-([^"]+)"[^>]*class="[^"]*js-plotly-plot', dom)) | \
        set(re.findall(r'<div[^>]*class="[^"]*js-plotly-plot[^"]*"[^>]*id="plot-([^"]+)"', dom))
    assert plotted == {n for n, _ in figures(exp, exp.summary)} and len(plotted) >= 2


def test_reference_curves_of_the_width_scan_and_low_precision():
    need_reference("no_wd_width_scan.pth")
    need_reference("low_precision_mod_addition.pth")
    from grokscope.report.experiment import REFERENCE, reference_curves

    w = reference_curves("width-no-wd", REFERENCE)
    assert sorted(w) == [8, 16, 32, 64, 128, 256, 512, 1024]
    assert all(len(tr) == len(te) == 3000 and every == 1 for tr, te, every in w.values())
    assert w[128][0][-1] < 1e-8 < w[128][1][-1]  # train loss far below test loss, as saved
    (key, (tr, te, every)), = reference_curves("low-precision", REFERENCE).items()
    assert key is None and len(tr) == 50_000 and len(te) == 5_000 and every == 10
    assert reference_curves("seeds", REFERENCE) == {}


def test_a_local_pool_of_two_jobs_equals_groups_in_turn(tmp_path, monkeypatch):
    """``jobs=2``: the two groups train at once in two spawned processes (one thread each here, as the one-thread
    run in this process), with the same numbers as the groups trained in turn, and a rerun skips them."""
    monkeypatch.setitem(EXPERIMENTS, "two-groups", TWO_GROUPS)
    monkeypatch.setattr(executors.os, "cpu_count", lambda: 2)
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = run_experiment("two-groups", tmp_path / "local", tiny=True, progress=False)
    finally:
        torch.set_num_threads(prev)
    # spawned workers import the registry afresh: they must find the group in the plan, not the registry
    pooled = run_experiment("two-groups", tmp_path / "pool", tiny=True, progress=False, jobs=2)
    assert pooled.status().state.tolist() == ["done", "done"]
    for g in local.groups:
        a, b = local.run(g.name), pooled.run(g.name)
        for k, v in a.params().items():
            assert torch.equal(v, b.params()[k]), (g.name, k)
    pd.testing.assert_frame_equal(local.summary.drop(columns=["experiment"]), pooled.summary.drop(columns=["experiment"]))
    before = _mtimes(tmp_path / "pool" / "groups")
    run_experiment("two-groups", tmp_path / "pool", tiny=True, progress=False, jobs=2)
    assert _mtimes(tmp_path / "pool" / "groups") == before
    with pytest.raises(ConfigError, match="jobs=0 is invalid"):
        run_experiment("two-groups", tmp_path / "x", tiny=True, progress=False, jobs=0)
    with pytest.raises(ConfigError, match="jobs is invalid with executor 'ray'"):
        run_experiment("two-groups", tmp_path / "x", tiny=True, progress=False, jobs=2, executor="ray")


def test_frac_sweep_is_one_plot_with_a_test_loss_per_fraction(tiny):
    pytest.importorskip("plotly")
    from grokscope.report.experiment import sweep

    exp = tiny("frac")
    fig = sweep(exp, exp.summary)
    assert fig.layout.title.text.startswith("Fig 20:")
    legend = [t.name for t in fig.data if t.showlegend]
    assert legend == [f"{f}%" for f in range(10, 100, 10)]  # one entry per fraction, in order
    test = [t for t in fig.data if t.line.dash == "solid"]
    assert len(test) == 9 and len({t.line.color for t in test}) == 9  # a test-loss line and colour each
    assert fig.layout.xaxis.type == fig.layout.yaxis.type == "log"
