"""The stages this package registers (entry point ``curator.stages``).

Stage modules import their heavy dependencies (torch, fastText, the LLM client) lazily or at
module level as they need; listing stages imports these modules, not the models.
"""

from classifiers.annotate import EduAnnotator
from classifiers.encoder_stage import EncoderClassifier
from classifiers.ensemble import QualityEnsemble
from classifiers.fasttext_stage import FastTextQualityScore
from classifiers.perplexity_stage import PerplexityScore
from curator.stage import Stage

STAGES: tuple[type[Stage], ...] = (EduAnnotator, EncoderClassifier, FastTextQualityScore, QualityEnsemble,
                                   PerplexityScore)
