"""In-process LLM engines shared by the tasks of one worker process.

A llama.cpp model or a vLLM engine takes seconds to minutes to load and holds its weights in
memory (vLLM: most of the GPU). Every shard task builds its own backend, so without sharing, a
worker running two shard tasks would load the model twice, and on a GPU the second load would not
fit. This is the one piece of process-wide state in the LLM package, on purpose: one engine per
(kind, settings) per process, created on first use and kept until the process ends or
:func:`release_engines` is called.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

T = TypeVar("T")

_lock = threading.Lock()
_engines: dict[Hashable, Any] = {}
_loading: dict[Hashable, threading.Lock] = {}


def shared_engine(key: Hashable, load: Callable[[], T]) -> T:
    """The engine for ``key`` in this process, loading it with ``load()`` on first use.

    Loads of different keys run in parallel; callers asking for a key that is being loaded wait
    for that load instead of starting another. A load that raises is not kept: the next caller
    tries again.
    """
    with _lock:
        if key in _engines:
            return _engines[key]
        key_lock = _loading.setdefault(key, threading.Lock())
    with key_lock:
        with _lock:
            if key in _engines:
                return _engines[key]
        engine = load()
        with _lock:
            _engines[key] = engine
            _loading.pop(key, None)
        return engine


def release_engines() -> int:
    """Forget every shared engine of this process (their memory goes when nothing else holds them).

    Returns how many there were.
    """
    with _lock:
        count = len(_engines)
        _engines.clear()
        return count
