"""Score the candidate generators of ``generators.py`` with the authors' saved models as the oracle.

    OMP_NUM_THREADS=1 python score.py                 # every candidate, 4096 examples, seed 0
    OMP_NUM_THREADS=1 python score.py --n 2048 --seed 1 --only best

Induction: the authors' ``induction_head_{infinite,finite}.pth`` are loaded into grokscope's ``Transformer`` with
grokscope's own converters (``config_from_authors_state_dict`` / ``from_authors_state_dict``, as
``tests/test_seqtasks.py`` does; the file is read with grokscope's weights-only ``load_authors_file``), and their
mean cross-entropy on the generator's scored tokens is printed (column ``scored``), with the split into the tokens an
induction head can predict (``30 ind.``) and the first token of copies 2-3 (``first``) where a generator scores it.
The authors' recorded losses: infinite train 0.30 (final), finite test 1.23 (final).

Skip trigram: the authors' ``skip_trigram_*.pth`` hold loss curves only (no model), so nothing can be scored; the
script prints what the curves give (initial loss, steps to reach 2 / 1 / 1e-2).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import torch

from grokscope.model import Transformer, config_from_authors_state_dict, from_authors_state_dict
from grokscope.model.authors import load_authors_file

import generators as G

REF = Path(__file__).resolve().parents[3] / "shared" / "reference"  # ../shared beside the checkout
RECORDED = {"infinite": "train 0.30", "finite": "test 1.23"}


def authors_model(name: str) -> Transformer:
    sd = load_authors_file(REF / f"{name}.pth")["model"]
    sd = {k: v for k, v in sd.items() if not k.endswith("mask")}  # the causal-mask buffers
    model = Transformer(config_from_authors_state_dict(sd), seed=None)
    model.load_state_dict(from_authors_state_dict(sd))
    return model.eval()


@torch.no_grad()
def token_losses(model: Transformer, ex: G.Examples, chunk: int = 1024) -> torch.Tensor:
    """Cross-entropy at every scored position, ``(n, n_scored)`` in position order."""
    out = []
    for i in range(0, len(ex), chunk):
        part = ex[i: i + chunk]
        logp = model(part.tokens).log_softmax(-1)
        nll = -logp.gather(-1, part.targets[..., None]).squeeze(-1)
        out.append(nll[part.mask].reshape(len(part), -1))
    return torch.cat(out)


def first_token_columns(ex: G.Examples) -> torch.Tensor:
    """Scored columns that predict the first token of copy 2 or 3: columns 0 and 16 when a generator scores all 32
    tokens of the two copies (``induction(score_first=True)``), none when it scores the 30 induction tokens."""
    k = int(ex.mask[0].sum())
    cols = torch.zeros(k, dtype=torch.bool)
    if k == 2 * G.SUBSEQ_LEN:
        cols[[0, G.SUBSEQ_LEN]] = True
    return cols


def score_induction(n: int, seed: int, only: str | None) -> None:
    models = {k: authors_model(f"induction_head_{k}") for k in ("infinite", "finite")}
    print(f"induction: mean loss of the authors' models on {n} examples per generator (seed {seed})")
    print(f"{'generator':40s} {'model':9s} {'scored':>7s} {'30 ind.':>8s} {'first':>7s}   recorded")
    for name, make in G.INDUCTION.items():
        if only and only not in name:
            continue
        ex = make(n, torch.Generator().manual_seed(seed))
        first = first_token_columns(ex)
        for k, m in models.items():
            nll = token_losses(m, ex)
            ind = nll[:, ~first].mean().item()
            fst = f"{nll[:, first].mean().item():7.2f}" if bool(first.any()) else "      -"
            print(f"{name:40s} {k:9s} {nll.mean().item():7.3f} {ind:8.3f} {fst}   {RECORDED[k]}")


def score_skip_trigram() -> None:
    print("\nskip trigram: the authors' files hold no model (no oracle for the data); what their curves give:")
    for name in ("skip_trigram_finite", "skip_trigram_infinite"):
        obj = torch.load(REF / f"{name}.pth", map_location="cpu", weights_only=True)
        curves = {"train": obj} if isinstance(obj, list) else {k: v for k, v in obj.items() if k.endswith("losses")}
        for k, c in curves.items():
            c = torch.tensor([float(v) for v in c])
            first = lambda th: int((c < th).nonzero()[0]) if bool((c < th).any()) else None  # noqa: E731
            print(f"  {name:22s} {k:13s} {len(c):5d} steps, initial {c[:10].mean():.3f} (ln 10 = {math.log(10):.3f}),"
                  f" < 2 at {first(2)}, < 1 at {first(1)}, < 1e-2 at {first(1e-2)}, final {c[-1]:.3g}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=4096)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", default=None, help="score only the induction generators whose name contains this")
    ap.add_argument("--task", choices=("induction", "skip_trigram", "all"), default="all")
    a = ap.parse_args()
    if a.task in ("induction", "all"):
        score_induction(a.n, a.seed, a.only)
    if a.task in ("skip_trigram", "all"):
        score_skip_trigram()


if __name__ == "__main__":
    main()
