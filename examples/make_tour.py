"""Writes examples/tour.ipynb (cells without outputs)."""
from pathlib import Path

import nbformat as nbf

md, code = nbf.v4.new_markdown_cell, nbf.v4.new_code_cell
cells = [
md("""# A tour of grokscope

*Progress measures for grokking via mechanistic interpretability* (Nanda et al., ICLR 2023), in one notebook:
train a run, read its metrics, analyse a checkpoint, draw three of the paper's figures, ablate by hook name and
export the model to TransformerLens.

This notebook trains the `tiny` preset (p = 23, 300 epochs: about 20 s on a laptop CPU) so that it runs
top to bottom anywhere, including in CI. The tiny model memorises but does not grok in 300 epochs; for the
paper's run, train `grokscope train --preset mainline --out runs/mainline` (or `--preset quick`, which groks in
a few minutes) and point `RUN` below at it. Needs `pip install -e ".[plots,tl]"`."""),
code("""import os
from pathlib import Path

import torch

import grokscope
from grokscope import Run, preset

RUN = Path(os.environ.get("GROKSCOPE_TOUR_RUN", "runs/tour"))
if not (RUN / "config.json").is_file():
    grokscope.train([preset("tiny")], RUN, progress=False)
run = Run.load(RUN)
run"""),
md("## Metrics\n\nOne row per model and epoch; test metrics every `test_every` epochs (NaN between)."),
code("""run.metrics.dropna().tail()"""),
code("""run.milestones()"""),
md("## Analyse a checkpoint (§4)\n\nKey frequencies, attention and neuron periodicity, the composition of "
   "`W_L`, and the ablations, on the last checkpoint."),
code("""from grokscope.interp.analysis import analyze

model, ds = run.model(), run.dataset()
res = analyze(model, ds)
print(res.summary())"""),
md("## Three of the paper's figures\n\nThe loss curves (Figure 1 with the phases), the Fourier norms of the "
   "embedding (Figure 3) and a neuron's activation over the inputs (Figure 5)."),
code("""from grokscope.report import figure

figure(run, "losses")"""),
code("""figure(run, "fourier_norms", analysis=res)"""),
code("""figure(run, "neuron", analysis=res)"""),
md("## An ablation by hook name\n\nEvery activation has a TransformerLens-style hook name. Zero-ablate the "
   "MLP neurons (`blocks.0.mlp.hook_post`) and compare the loss on all p² pairs."),
code("""import torch.nn.functional as F
from grokscope.model.hooks import hooks

print([n for n in model.hook_names][:6], "...")
tokens, labels = ds.tokens, ds.labels

def loss(m):
    with torch.no_grad():
        return float(F.cross_entropy(m.answer_logits(tokens).double(), labels))

with hooks(model, [("blocks.0.mlp.hook_post", lambda act, hook: torch.zeros_like(act))]):
    ablated = loss(model)
print(f"loss on all pairs: {loss(model):.3f}; with the MLP neurons zero-ablated: {ablated:.3f}")"""),
md("## Export to TransformerLens\n\nThe same model as a TransformerLens model (a `HookedTransformer` on "
   "TransformerLens 3.x, a `TransformerBridge` on 4.x): equal logits, the same hook names."),
code("""tl_model = run.to_transformer_lens()
with torch.no_grad():
    logits, cache = tl_model.run_with_cache(tokens)
    ours, our_cache = model.run_with_cache(tokens)
print(type(tl_model).__name__)
print("max |logit difference|:", float((logits - ours).abs().max()))
print("blocks.0.attn.hook_pattern:", tuple(cache["blocks.0.attn.hook_pattern"].shape),
      float((cache["blocks.0.attn.hook_pattern"] - our_cache["blocks.0.attn.hook_pattern"]).abs().max()))
assert torch.allclose(logits, ours, rtol=0, atol=1e-5 * max(1.0, float(ours.abs().max())))"""),
md("The same export from the command line, and the way back into grokscope:\n\n"
   "```bash\ngrokscope export runs/tour --to transformer-lens --out tour_tl.pt\n```"),
code("""from grokscope.model import export

f = export.save(model, RUN.parent / "tour_tl.pt")
back = export.from_transformer_lens(export.load_transformer_lens(f))
with torch.no_grad():
    print("round trip equal:", torch.allclose(back(tokens), ours, rtol=0, atol=1e-5 * max(1.0, float(ours.abs().max()))))"""),
]
nb = nbf.v4.new_notebook(cells=cells, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                                  "language": "python"}})
nbf.write(nb, str(Path(__file__).with_name("tour.ipynb")))
