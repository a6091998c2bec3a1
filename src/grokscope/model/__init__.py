"""The model: the paper's transformer (:mod:`.transformer`: MLP or attention-only blocks, any depth and context),
its named hook points (:mod:`.hooks`), the authors' checkpoints read into it (:mod:`.authors`) and the
TransformerLens export (:mod:`.export`). May import the shared ground (config, checks, files) and tasks."""

from .transformer import Transformer, config_from_authors_state_dict, from_authors_state_dict, init_params, param_shapes

__all__ = ["Transformer", "init_params", "param_shapes", "from_authors_state_dict", "config_from_authors_state_dict"]
