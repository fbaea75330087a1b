"""LLM calls: one client interface over several backends, with a persistent response cache."""

from curator.llm.backend import ERROR_KINDS, Backend
from curator.llm.cache import ResponseCache
from curator.llm.client import LLMClient, LLMStats
from curator.llm.openai_http import OpenAICompatibleBackend, parse_retry_after
from curator.llm.requests import ChatMessage, LLMResult, Prompt, SamplingParams, cache_key

__all__ = [
    "ERROR_KINDS",
    "Backend",
    "ChatMessage",
    "LLMClient",
    "LLMResult",
    "LLMStats",
    "OpenAICompatibleBackend",
    "Prompt",
    "ResponseCache",
    "SamplingParams",
    "cache_key",
    "parse_retry_after",
]
