"""A one-layer transformer built by hand to run the Fourier multiplication algorithm (paper §3.1).

Residual stream directions (``d_model = n_heads * d_head``, the rest unused):

* ``T``: the token embedding ``cos(w_k x), sin(w_k x)`` of every key frequency ``k`` (``W_E``; ``=`` embeds to 0);
* ``e0, e1, e2``: position markers (``W_pos``);
* ``A`` / ``B``: copies of ``T`` of token ``a`` / ``b``, written at ``=`` by head 0 / head 1, which attend from
  ``=`` to position 0 / 1 only (scores ``+M, 0, -M``: the query reads ``e2``, the key reads ``e0`` and ``e2``);
* ``O``: the MLP output ``cos(w_k(a+b))``, ``sin(w_k(a+b))`` per key.

Head 2 is a "periodic" head: its score from ``=`` to a token is ``amp * cos(w_f x)`` (its key reads ``T``), to
``=`` itself ``-M``, so its pattern to ``a`` is ``sigmoid(amp (cos w_f a - cos w_f b))``; its ``W_V`` is 0, so it
changes nothing downstream -- it only exercises the Table-2 attention fit.

The MLP computes the products with ReLUs (inputs only ever see ``x = a-part +- b-part`` in ``[-2, 2]``):
``cos(w(a+b)) = [(ca+cb)^2 - (ca-cb)^2 - (sa+sb)^2 + (sa-sb)^2] / 4`` and
``sin(w(a+b)) = [(sa+cb)^2 - (sa-cb)^2 + (ca+sb)^2 - (ca-sb)^2] / 4``, each square replaced by its piecewise-linear
interpolation on ``n_knots`` equal segments of ``[-2, 2]``: ``t^2 ~ 4 + (t_0 + t_1) relu(t + 2) + 2h sum_{j>=1}
relu(t - t_j)`` (the constant 4 cancels between the four squares). So there are ``8 * n_knots`` neurons per key
frequency, each a function of a single key frequency; ``W_U`` maps ``O`` to ``scale * cos/sin(w_k c)``, so the
logits are ``scale * sum_k cos(w_k (a + b - c))`` up to the interpolation error (at most ``h^2 / 4`` per
square, ``h = 4 / n_knots``). ``W_L``'s spectrum holds exactly the key frequencies; the skip connection around
the MLP carries nothing ``W_U`` reads.
"""

from __future__ import annotations

import math

import torch

from grokscope.config import Config, ModelConfig
from grokscope.model.transformer import Transformer
from grokscope.tasks.modular import Dataset, make_dataset


def fourier_model(p: int = 31, keys: tuple[int, ...] = (3, 7, 10), n_knots: int = 12, scale: float = 6.0,
                  amp: float = 0.4, M: float = 40.0, n_heads: int = 3, dtype: torch.dtype = torch.float32
                  ) -> Transformer:
    r = len(keys)
    need = 8 * r + 3
    d_head = max(2 * r, math.ceil(need / n_heads))
    d_model = n_heads * d_head
    d_mlp = 8 * n_knots * r
    cfg = ModelConfig(d_vocab=p + 1, n_ctx=3, d_model=d_model, n_heads=n_heads, d_mlp=d_mlp, n_layers=1, act="relu")
    model = Transformer(cfg, seed=None)
    sd = {k: torch.zeros_like(v, dtype=torch.float64) for k, v in model.state_dict().items()}
    T = lambda i, c: 2 * i + c  # noqa: E731  token dirs (c: 0 cos, 1 sin)
    e0, e1, e2 = 2 * r, 2 * r + 1, 2 * r + 2
    A = lambda i, c: 2 * r + 3 + 2 * i + c  # noqa: E731
    Bd = lambda i, c: 4 * r + 3 + 2 * i + c  # noqa: E731
    O = lambda i, c: 6 * r + 3 + 2 * i + c  # noqa: E731
    x = torch.arange(p, dtype=torch.float64)
    w = [2 * math.pi * k / p for k in keys]
    for i in range(r):
        sd["W_E"][:p, T(i, 0)] = torch.cos(w[i] * x)
        sd["W_E"][:p, T(i, 1)] = torch.sin(w[i] * x)
    sd["W_pos"][0, e0] = sd["W_pos"][1, e1] = sd["W_pos"][2, e2] = 1.0
    big = M * math.sqrt(d_head)
    b = "blocks.0."
    for h, (marker, dst) in enumerate([(e0, A), (e1, Bd)]):
        sd[b + "attn.W_Q"][h, e2, 0] = 1.0
        sd[b + "attn.W_K"][h, marker, 0] = big
        sd[b + "attn.W_K"][h, e2, 0] = -big
        for i in range(r):
            for c in range(2):
                sd[b + "attn.W_V"][h, T(i, c), 2 * i + c] = 1.0
                sd[b + "attn.W_O"][h, 2 * i + c, dst(i, c)] = 1.0
    if n_heads > 2:  # the periodic head
        sd[b + "attn.W_Q"][2, e2, 0] = 1.0
        sd[b + "attn.W_K"][2, e2, 0] = -big
        sd[b + "attn.W_Q"][2, e2, 1] = 1.0
        sd[b + "attn.W_K"][2, T(0, 0), 1] = amp * math.sqrt(d_head)
    # MLP: squares of (x +- y) by piecewise-linear interpolation on [-2, 2]
    h_ = 4.0 / n_knots
    knots = [-2.0 + j * h_ for j in range(n_knots)]
    coefs = [knots[0] + knots[0] + h_] + [2 * h_] * (n_knots - 1)
    n = 0
    for i in range(r):
        ca, sa, cb, sb = A(i, 0), A(i, 1), Bd(i, 0), Bd(i, 1)
        # (first dir, second dir, sign between them, sign of the square, output: 0 cos / 1 sin)
        terms = [(ca, cb, +1, +1, 0), (ca, cb, -1, -1, 0), (sa, sb, +1, -1, 0), (sa, sb, -1, +1, 0),
                 (sa, cb, +1, +1, 1), (sa, cb, -1, -1, 1), (ca, sb, +1, +1, 1), (ca, sb, -1, -1, 1)]
        for u, v, pm, sign, out in terms:
            for t, c in zip(knots, coefs):
                sd[b + "mlp.W_in"][u, n] = 1.0
                sd[b + "mlp.W_in"][v, n] = float(pm)
                sd[b + "mlp.b_in"][n] = -t
                sd[b + "mlp.W_out"][n, O(i, out)] = sign * c / 4
                n += 1
        sd["W_U"][O(i, 0), :p] = scale * torch.cos(w[i] * x)
        sd["W_U"][O(i, 1), :p] = scale * torch.sin(w[i] * x)
    assert n == d_mlp
    model.load_state_dict({k: v.to(dtype) for k, v in sd.items()})
    return model.to(dtype).eval()


def fourier_dataset(p: int = 31, frac_train: float = 0.3, seed: int = 0) -> Dataset:
    return make_dataset(Config(p=p, frac_train=frac_train, seed=seed, d_model=8, n_heads=1, d_mlp=8))
