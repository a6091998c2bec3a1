"""``grokscope report`` on the Appendix D.3 sequence-task runs (grokscope.report.sequence): tiny runs, with and without
the authors' reference folder."""

import re

import numpy as np
import pytest
import torch
from helpers import need_reference
from helpers import held_out, tiny, train_examples

pytest.importorskip("plotly")

from grokscope.cli import main
from grokscope.model.transformer import Transformer, config_from_authors_state_dict, from_authors_state_dict
from grokscope.report.sequence import (attention_patterns, figure_names, milestones_rows, reference_curves, reference_per_token, scores_of_heads, seq_figure, seq_report_html)
from grokscope.config import preset
from grokscope.training import train

pytestmark = pytest.mark.usefixtures("one_thread")
ABSENT = "/nonexistent/reference"
EXPECTED = {"digit_addition": ["losses", "per_token"], "repeated_subsequence": ["losses", "attention", "head_scores"],
            "skip_trigram": ["losses", "attention", "head_scores"]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("seqreport")
    out = {}
    for task in EXPECTED:
        for n in (32, None):
            c = tiny(task, n_train=n, batch_size=16 if n is None else None, epochs=20)
            out[task, n] = train([c], tmp / f"{task}-{n}", progress=False)
    return out


def _plot_ids(text):
    return re.findall(r'id="plot-([^"]+)"', text)


@pytest.mark.parametrize("task", list(EXPECTED))
@pytest.mark.parametrize("n", [32, None])
def test_report_has_the_task_figures_without_reference(runs, tmp_path, task, n):
    run = runs[task, n]
    assert figure_names(run) == EXPECTED[task]
    p = seq_report_html(run, tmp_path / "r.html", reference=ABSENT)
    text = p.read_text()
    assert _plot_ids(text) == EXPECTED[task]
    assert text.count("Plotly.newPlot(") == len(EXPECTED[task])
    assert "is absent" in text and "authors (" not in text
    assert reference_curves(run, ABSENT) == {}
    fig = seq_figure(run, "losses", reference=ABSENT)
    assert not any((t.name or "").startswith("authors") for t in fig.data)
    assert {t.name for t in fig.data} >= {"grokscope train", "grokscope test"}


@pytest.mark.parametrize("task", list(EXPECTED))
def test_report_overlays_the_authors_curve(runs, tmp_path, task):
    need_reference("skip_trigram_finite.pth")
    for n in (32, None):
        run = runs[task, n]
        ref = reference_curves(run)
        assert "train" in ref and ref["train"]["epoch"].iloc[0] == 0
        fig = seq_figure(run, "losses")
        names = [t.name for t in fig.data]
        assert "authors train" in names
        assert ("authors test" in names) == (n is not None)  # the infinite files hold train losses only
        text = seq_report_html(run, tmp_path / f"r{n}.html").read_text()
        assert "authors (" in text and "is absent" not in text
        rows = milestones_rows(run)
        assert [r["curve"].split(" ")[0] for r in rows] == ["grokscope", "authors"]


def test_reference_curves_are_aligned_to_steps(runs):
    need_reference("induction_head_finite.pth")
    ref = reference_curves(runs["repeated_subsequence", 32])  # the authors' 285,820 steps, test every 4
    assert len(ref["train"]) == 285820 and int(ref["train"]["epoch"].iloc[-1]) == 285819
    assert len(ref["test"]) == 71455 and int(ref["test"]["epoch"].iloc[1]) == 4
    assert abs(ref["train"]["loss"].iloc[0] - ref["test"]["loss"].iloc[0]) < 0.05  # both the initial model
    da = reference_curves(runs["digit_addition", 32])
    assert len(da["train"]) == len(da["test"]) == 18053 and da["train"]["loss"].iloc[-1] < 1e-6
    rows = milestones_rows(runs["digit_addition", 32])
    assert rows[1]["last epoch"] == 18052 and rows[1]["max_test_over_train"] > 1e6  # their train/test divergence
    assert rows[0]["last epoch"] == 20 and rows[1]["train loss at our last epoch"] == da["train"]["loss"].iloc[20]
    assert rows[0]["train loss at our last epoch"] == rows[0]["final_train_loss"]


def test_per_token_figure_with_the_authors_per_token_losses(tmp_path):
    run = train([tiny("digit_addition", n_digits=5, n_train=None, batch_size=16, epochs=10)], tmp_path / "r",
                    progress=False)
    ours = lambda fig: [t for t in fig.data if t.name.startswith("grokscope")]  # noqa: E731
    fig = seq_figure(run, "per_token", reference=ABSENT)
    assert len(ours(fig)) == 6 and len(fig.data) == 6
    y = np.asarray(ours(fig)[0].y, dtype=float)
    assert len(y) == 3 and np.allclose(y, run.metrics["test_loss_tok0"].dropna().to_numpy())
    need_reference("5_digit_addition_infinite_per_token.pth")
    assert reference_per_token(run).shape == (3000, 6)
    fig = seq_figure(run, "per_token")
    assert len(fig.data) == 12 and sum(t.name.startswith("authors") for t in fig.data) == 6


def test_head_scores_on_exact_patterns():
    """A pure previous-token head scores 1 on prev_token, a head on the induction targets 1 on induction; the
    skip-trigram score is 1 for a head on the token >= 10 and ~1/T for a uniform one."""
    c = tiny("repeated_subsequence", n_train=16)
    ex = train_examples(c)
    n, T = ex.tokens.shape
    prev = torch.zeros(n, T, T)
    prev[:, 0, 0] = 1
    prev[:, torch.arange(1, T), torch.arange(T - 1)] = 1
    same = (ex.tokens[:, :, None] == ex.tokens[:, None, :]) & torch.ones(T, T, dtype=torch.bool).tril(-1)
    ind = torch.zeros(n, T, T)
    ind[:, :, 1:] = same[:, :, :-1].float()
    ind[:, :, 0] += ind.sum(-1) == 0  # no earlier occurrence: attend to 0
    ind = ind / ind.sum(-1, keepdim=True)
    rows = scores_of_heads("induction", ex, {0: torch.stack([prev, ind], 1)})
    assert rows[0]["prev_token"] == pytest.approx(1.0) and rows[1]["induction"] == pytest.approx(1.0)
    assert rows[0]["induction"] < 0.5 and rows[1]["prev_token"] < 0.5
    s = train_examples(tiny("skip_trigram", n_train=16))
    T = s.tokens.shape[1]
    on_big = torch.zeros(16, 1, T, T)
    on_big[:, 0, -1] = (s.tokens >= 10).float()
    uniform = torch.full((16, 1, T, T), 1 / T)
    r = scores_of_heads("skip-trigram", s, {0: torch.cat([on_big, uniform], 1)})
    assert r[0]["to_big_token"] == pytest.approx(1.0) and r[1]["to_big_token"] == pytest.approx(1 / T)


def test_head_scores_find_the_authors_induction_circuit():
    """On the authors' trained induction model: one layer-0 head is a previous-token head and layer-1 heads are
    induction heads, far above the other heads."""
    sd = torch.load(need_reference("induction_head_infinite.pth"), map_location="cpu", weights_only=False)["model"]
    sd = {k: v for k, v in sd.items() if not k.endswith("mask")}
    m = Transformer(config_from_authors_state_dict(sd), seed=None)
    m.load_state_dict(from_authors_state_dict(sd))
    ex = held_out(preset("induction-infinite"))[:32]
    rows = scores_of_heads("induction", ex, attention_patterns(m, ex.tokens))
    l0 = sorted(r["prev_token"] for r in rows if r["layer"] == 0)
    l1 = sorted(r["induction"] for r in rows if r["layer"] == 1)
    assert l0[-1] > 0.2 and l0[-1] > 3 * l0[-2]
    assert l1[-1] > 0.3 and l1[-1] > 3 * sorted(r["induction"] for r in rows if r["layer"] == 0)[-1]


def test_cli_report_on_a_sequence_run(runs, capsys, tmp_path):
    run = runs["skip_trigram", 32]
    assert main(["report", str(run.path)]) == 0
    assert (run.path / "report.html").is_file() and "wrote" in capsys.readouterr().out
    assert _plot_ids((run.path / "report.html").read_text()) == EXPECTED["skip_trigram"]
    assert main(["report", str(run.path), "--epoch", "10", "-o", str(tmp_path / "r10.html")]) == 0
    assert main(["report", str(run.path), "-o", str(run.path / "r10.html")]) == 2  # not a run file of report


@pytest.mark.parametrize("extra,msg", [(["--model", "1"], "model=1 is invalid"),
                                       (["--epoch", "7"], "epoch=7 is invalid")])
def test_cli_report_bad_input_is_one_line_exit_2(runs, capsys, extra, msg, tmp_path):
    run = runs["repeated_subsequence", None]
    out = tmp_path / "r.html"
    assert main(["report", str(run.path), "-o", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("grokscope: error: ") and err.count("\n") == 1 and msg in err
    assert not out.exists()

