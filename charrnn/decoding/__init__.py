"""One decoding engine: a step (``step.DecoderStep``), the logit controls in one ordered
function (``controls``), sampling and greedy decoding (``sample``) and beam search
(``beam``) over any step, and the text of what they generate (``text``)."""

from .beam import beam_search, beam_steps
from .controls import Controls, NgramBlocker, filter_logits, penalize_repeats
from .sample import iter_sample, make_generator, sample, sample_steps
from .protocol import DecoderStep
from .step import StepRunner
from .text import Generation, StopMatcher

__all__ = ["Controls", "DecoderStep", "Generation", "NgramBlocker", "StepRunner", "StopMatcher", "beam_search",
           "beam_steps", "filter_logits", "iter_sample", "make_generator", "penalize_repeats", "sample",
           "sample_steps"]
