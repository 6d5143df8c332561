"""The Mathematical Framework for Transformer Circuits, executable and exact.

Pure functions of ``(model, params)`` and a trace: per-head circuits as factored
matrices, the path expansion of the logits and of the attention scores,
composition scores, head detectors, weight processing that leaves the function
unchanged, direct logit attribution, the logit lens, activation patching, the edits a
splice inserts (steering, ablations, an SAE's reconstruction), gradient attribution
(attribution patching, EAP-IG) and plots.
"""

from ..layers import Normalise
from .anatomy import Anatomy, points_of, untied
from .attribution import direct_logit_attribution, logit_lens, writes
from .composition import composition_score, composition_scores, null_composition_scores
from .edits import ablate, ablate_head, reconstruct, steer
from .factored import FactoredMatrix
from .gradients import attribution_patching, integrated_gradients
from .heads import (
    copying_scores,
    induction_scores,
    induction_scores_from_weights,
    matching_scores,
    previous_token_scores,
    previous_token_scores_from_weights,
    repeated_tokens,
)
from .patching import Patched, logit_difference, patch_sweep, patched, with_patch
from .paths import group, logit_terms, order, score_terms, source, stream_terms
from .processing import (
    center_unembed,
    center_writing_weights,
    fold_ln,
    fold_value_biases,
    process_weights,
)
from .weights import W_OV, W_QK, position_QK, token_OV, token_QK

__all__ = [
    "ablate",
    "ablate_head",
    "attribution_patching",
    "integrated_gradients",
    "reconstruct",
    "steer",
    "Anatomy",
    "FactoredMatrix",
    "Normalise",
    "Patched",
    "W_OV",
    "W_QK",
    "center_unembed",
    "center_writing_weights",
    "composition_score",
    "composition_scores",
    "copying_scores",
    "direct_logit_attribution",
    "fold_ln",
    "fold_value_biases",
    "group",
    "induction_scores",
    "induction_scores_from_weights",
    "logit_difference",
    "logit_lens",
    "logit_terms",
    "matching_scores",
    "null_composition_scores",
    "order",
    "patch_sweep",
    "patched",
    "points_of",
    "position_QK",
    "previous_token_scores",
    "previous_token_scores_from_weights",
    "process_weights",
    "repeated_tokens",
    "score_terms",
    "source",
    "stream_terms",
    "token_OV",
    "token_QK",
    "untied",
    "with_patch",
    "writes",
]
