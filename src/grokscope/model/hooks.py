"""Named hook points (as TransformerLens), exposed only through scoped context managers.

Every :class:`HookPoint` is an identity module; :func:`name_hook_points` names each after its module
path (``blocks.0.attn.hook_pattern``). Hooks are global state on the module, so grokscope only offers
scoped ones: :func:`hooks` and :func:`run_with_cache` remove what they added when they finish.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

import torch
from torch import nn

HookFn = Callable[[torch.Tensor, "HookPoint"], "torch.Tensor | None"]


class HookPoint(nn.Module):
    """Identity module; a forward hook on it may read or replace the activation."""

    name: str = ""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def name_hook_points(root: nn.Module) -> dict[str, HookPoint]:
    points = {}
    for name, mod in root.named_modules():
        if isinstance(mod, HookPoint):
            mod.name = name
            points[name] = mod
    return points


@contextmanager
def hooks(model: nn.Module, fwd_hooks: list[tuple[str | Callable[[str], bool], HookFn]]) -> Iterator[nn.Module]:
    """Attach ``fn(activation, hook) -> new activation or None`` to the named hook points for the block.

    A name may be a string or a predicate on names. Unknown names raise ``KeyError`` naming the valid ones.
    """
    points = name_hook_points(model)
    handles = []
    try:
        for name, fn in fwd_hooks:
            targets = [n for n in points if name(n)] if callable(name) else [name]
            for t in targets:
                if t not in points:
                    raise KeyError(f"no hook point named {t!r}; valid: {', '.join(points)}")

                def _hook(mod, inp, out, fn=fn):
                    r = fn(out, mod)
                    return out if r is None else r

                handles.append(points[t].register_forward_hook(_hook))
        yield model
    finally:
        for h in handles:
            h.remove()


def run_with_cache(model: nn.Module, tokens: torch.Tensor, names: list[str] | Callable[[str], bool] | None = None,
                   fwd_hooks: list | None = None) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Run the model and return ``(logits, {hook name: activation})`` (all hooks, or only ``names``)."""
    points = name_hook_points(model)
    if names is None:
        wanted = list(points)
    elif callable(names):
        wanted = [n for n in points if names(n)]
    else:
        wanted = list(names)
    cache: dict[str, torch.Tensor] = {}

    def save(x, hook):
        cache[hook.name] = x.detach()

    with hooks(model, list(fwd_hooks or []) + [(n, save) for n in wanted]):
        logits = model(tokens)
    return logits, cache
