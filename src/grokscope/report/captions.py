"""What each figure of the reports shows and what to look for: a heading for the table of contents and a caption
under the figure, modelled on the paper's own captions (``shared/paper``), by figure name (run report:
:data:`grokscope.report.run.FIGURES`; sequence-task report: :func:`grokscope.report.sequence.figure_names`;
experiment report: :func:`grokscope.report.experiment.figures`).
"""

from __future__ import annotations

__all__ = ["RUN", "SEQUENCE", "EXPERIMENT", "caption"]

_PHASES = ("Shading: <b>memorisation</b> (violet), <b>circuit formation</b> (orange), <b>cleanup</b> (green) of the "
           "model the report is about (§5.2).")

#: run report: name -> (heading, caption HTML)
RUN: dict[str, tuple[str, str]] = {
    "losses": ("Fig 2: train and test loss and accuracy",
               "The train loss falls at once while the test loss stays high: the model memorises. Much later the "
               "test loss drops and the test accuracy jumps to 100%: <b>grokking</b>. Look for a long plateau of "
               "high test loss between the two. Triangles mark slingshots (loss spikes). " + _PHASES),
    "fourier_norms": ("Fig 3: Fourier norms of W_E and W_L",
                      "The norm of each frequency's Fourier component of the embedding W_E (left) and of the "
                      "neuron-logit map W_L (right). A grokked model is <b>sparse in the Fourier basis</b>: a few "
                      "key frequencies (red) carry nearly all the norm; the others are close to zero."),
    "attention": ("Fig 4: attention over (a, b)",
                  "Head 0's attention from '=' to 'a' for every input pair. Look for <b>periodic stripes</b>: the "
                  "pattern depends on a and b through cos/sin of a key frequency."),
    "neuron": ("Fig 4: a neuron's activation over (a, b)",
               "MLP neuron 0's activation at '=' for every pair. Periodic in both inputs: the neuron computes "
               "products of cos/sin of one key frequency."),
    "logit_fourier": ("Fig 4: 2-D Fourier components of the logits",
                      "Norm (over c) of the logits' 2-D Fourier components over (a, b). A grokked model has a few "
                      "bright cells only: the terms cos/sin of the <b>key frequencies</b> in a, b and a+b "
                      "(20 for the paper's 5 keys); everything else near zero."),
    "neuron_clusters": ("Fig 5: neurons are functions of one frequency",
                        "Left: how much of each neuron's activation one frequency explains (sorted; dashed: the "
                        "0.85 threshold). Most neurons lie above it, coloured by their frequency. Right: the W_L "
                        "rows of one cluster in the Fourier basis over c: only the <b>cos w_k and sin w_k</b> "
                        "columns are non-trivial."),
    "ablate_freqs": ("Fig 6: loss when ablating each frequency",
                     "Loss after removing one frequency's cos/sin(w_k(a+b)) terms from the logits (bars; key "
                     "frequencies red), beside the original loss (dashed) and the <b>restricted loss</b> (only the "
                     "key frequencies kept, dotted). Ablating a key frequency hurts; ablating any other does not, "
                     "and the restricted loss stays low."),
    "progress": ("Fig 7: progress measures",
                 "The paper's progress measures over training. Top left: the <b>excluded loss</b> (key frequencies "
                 "removed) rises during circuit formation while train and test loss stay flat. Top right: the "
                 "<b>restricted loss</b> falls before the test loss does. Bottom left: the Gini coefficients of the "
                 "W_E / W_L Fourier norms rise sharply in cleanup. Bottom right: the sum of squared weights falls "
                 "smoothly in circuit formation and faster in cleanup. " + _PHASES),
    "interference": ("Fig 8: constructive interference",
                     "Each key frequency's cos(w_k x) (thin) has its maximum at x = 0 but also near-maxima "
                     "elsewhere; their <b>sum</b> (black) peaks clearly only at x = 0, i.e. at c = a + b."),
    "all_heads": ("Fig 9: attention of every head",
                  "Attention from '=' to 'a' over (a, b) for every head. All heads are periodic, each in (mostly) "
                  "one frequency."),
    "attention_fourier": ("Fig 10: attention weights in the Fourier basis",
                          "Each head's attention score weights C_h in the Fourier basis over a (constant dropped). "
                          "Look for sparsity: almost all of each head's weight sits on one key frequency (red)."),
    "ov_fourier": ("Fig 11: OV circuit in the Fourier basis",
                   "The norm of each Fourier component of each head's OV output W_O W_V x(a). Only key-frequency "
                   "components (red) are large."),
    "more_neurons": ("Fig 12: more neurons",
                     "Activations of neurons 1-4 over (a, b): periodic in both inputs, like neuron 0."),
    "restricted_acc": ("Fig 13: restricted accuracy",
                       "Accuracy with the logits restricted to the key frequencies (solid: test pairs; dotted: all "
                       "pairs) beside the test accuracy (dashed). The restricted accuracy reaches 100% <b>before</b> "
                       "the test accuracy: the model can generalise, modulo noise, before it removes the noise. "
                       + _PHASES),
    "logit_coefficients": ("Fig 14: cos(w_k(a+b-c)) coefficients in the logits",
                           "The coefficient of each key frequency's cos(w_k(a+b-c)) term in the logits: each grows "
                           "smoothly over training, not in a sudden jump. " + _PHASES),
    "excluded_per_key": ("Fig 15: excluded loss per key frequency",
                         "Train loss with one key frequency removed (one line each) and with all removed (dashed), "
                         "beside the train loss (dotted). They rise as the model comes to rely on the Fourier "
                         "circuit while its train loss stays flat: memorising gives way to generalising. "
                         + _PHASES),
    "fourier_norms_models": ("Figs 16, 17: Fourier norms of every model",
                             "W_E (left) and W_L (right) norms per frequency of every model of the run, key "
                             "frequencies red. Every model that grokked is sparse in the Fourier basis, each with "
                             "its own key frequencies."),
    "seed_losses": ("Fig 18: train, test and restricted loss of every model",
                    "One panel per model (dashed lines: its own phase ends). In each, the restricted loss declines "
                    "before the test loss; when grokking happens differs from model to model."),
    "gini_models": ("Fig 19: Gini coefficients of every model",
                    "The sparsity (Gini) of the W_E and W_L Fourier norms of every model: it rises slowly during "
                    "memorisation and circuit formation, then quickly during cleanup."),
    "llc": ("LLC: local learning coefficient over training",
            "The LLC (bottom; error bars: spread over the SGLD chains) beside the restricted and excluded losses "
            "(top). Look for its change of slope at the phase boundaries. " + _PHASES),
    "llc_calibration": ("LLC calibration sweep",
                        "The LLC estimate against the SGLD step size, one line per n_beta (hollow: not all chains "
                        "converged; star: the setting used), and each setting's loss trace: a good setting is flat "
                        "after burn-in."),
}

#: sequence-task report (Appendix D.3)
SEQUENCE: dict[str, tuple[str, str]] = {
    "losses": ("Loss and accuracy (Figs 29-34, top)",
               "Train (solid) and test (dashed) loss and accuracy; the authors' saved curves of the same setup in "
               "black, dotted. With fresh data every step train and test coincide; with a fixed training set look "
               "for a <b>sharp phase change</b> and a clear gap between train and test loss."),
    "per_token": ("Fig 29 (bottom): loss per sum digit",
                  "Test loss of each digit of the sum (token 0: the most significant). Each digit has its own "
                  "phase change; some of them are hidden in the average loss because they overlap."),
    "attention": ("Attention patterns",
                  "Attention patterns on a few test examples (rows: query position, columns: key position). "
                  "Induction: a <b>previous-token head</b> attends one position back (the off-diagonal); an "
                  "<b>induction head</b> attends to the token right after the earlier copy of the current token. "
                  "Skip trigram: the answer position attends to the token >= 10 (x)."),
    "head_scores": ("Attention scores per head",
                    "Each head's previous-token and induction scores (or its attention to the token >= 10): the "
                    "heads of the circuit stand out far above chance."),
    "llc": RUN["llc"],
    "llc_calibration": RUN["llc_calibration"],
}

#: experiment report, by figure name or its prefix
EXPERIMENT: dict[str, tuple[str, str]] = {
    "frac-sweep": ("Fig 20: test loss per training fraction",
                   "Test loss (solid; train loss dotted) of every training fraction, overlaid, one colour each. "
                   "Smaller fractions grok later; with >= 60% of the pairs the model generalises at once; with "
                   "10-20% it does not grok in the paper's 40k epochs."),
    "losses": ("Loss and accuracy of group {group}",
               "Train (solid) and test (dashed) loss and accuracy of every model of the group, the phase bands of "
               "its first model. " + _PHASES),
    "grokking-epochs": ("Grokking epochs (Fig 21 for the frac sweep)",
                        "First epoch each model reached train loss < 1e-6, test loss < 1e-6 and test accuracy "
                        "> 99% against the varied setting (markers: models; missing: never reached). The train "
                        "loss converges almost at once; generalisation takes longer where there is less data."),
    "reference-overlay": ("Ours over the authors' saved curves",
                          "Our train and test losses (solid) over the authors' (dotted) for the same settings: "
                          "the curves should have the same shape and turn at about the same epochs."),
    "fourier_norms_models": RUN["fourier_norms_models"], "seed_losses": RUN["seed_losses"],
    "gini_models": RUN["gini_models"], "progress": RUN["progress"],
}


def caption(table: dict[str, tuple[str, str]], name: str, fallback: str = "", **fmt: str) -> tuple[str, str]:
    """(heading, caption) of figure ``name`` in ``table`` (a name ``prefix-rest`` falls back to ``prefix``),
    formatted with ``fmt``; ``(fallback or name, "")`` when it has none."""
    entry = table.get(name) or table.get(name.split("-")[0])
    if entry is None:
        return fallback or name, ""
    return entry[0].format(**fmt), entry[1]
