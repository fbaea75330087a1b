"""The stages this package registers (entry point ``curator.stages``)."""

from curator.stage import Stage
from stages.blend import Blend
from stages.c4_filters import C4Quality
from stages.decontaminate import Decontaminate
from stages.exact_dedup import ExactDedup
from stages.extract import TextExtractor
from stages.fineweb_filters import FineWebQuality
from stages.fuzzy_dedup import FuzzyDedup
from stages.gopher_filters import GopherQuality, GopherRepetition
from stages.html_decode import HtmlDecoder
from stages.html_text import HtmlToText
from stages.identity import Identity
from stages.langid import LanguageId
from stages.math_cleanup import MathCleanup
from stages.math_detect import MathDetect
from stages.math_extract import MathExtractor
from stages.perplexity_filter import PerplexityFilter
from stages.rephrase import Rephrase
from stages.score_subset import ScoreAtLeast
from stages.token_count import TokenCount
from stages.unicode_fix import UnicodeFixer
from stages.url_lists import UrlListFilter
from stages.warc_reader import WarcReader

STAGES: tuple[type[Stage], ...] = (
    WarcReader, HtmlDecoder, TextExtractor, LanguageId, UnicodeFixer, HtmlToText, ExactDedup, FuzzyDedup, Identity,
    GopherQuality, GopherRepetition, C4Quality, FineWebQuality, Decontaminate, Rephrase,
    MathDetect, UrlListFilter, MathExtractor, MathCleanup, ScoreAtLeast, TokenCount, Blend,
    PerplexityFilter,
)
