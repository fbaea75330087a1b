"""Route llama.cpp's log messages into Python logging instead of the process's stderr.

llama-cpp-python's own callback maps ggml's log levels by an old numbering, so with
``verbose=False`` llama.cpp's warnings still reach stderr, where Dask workers share it with the
progress lines of ``curator run``. Here every message goes to the ``curator.llm.llama_cpp``
logger: warnings at INFO (they are notes such as "using full-size SWA cache"), errors at WARNING
(a failed load or decode also raises in Python), the rest at DEBUG.

llama-cpp-python also silences loads with ``verbose=False`` by pointing the *process's* file
descriptors 1 and 2 at /dev/null for the duration (``suppress_stdout_stderr``). In a process with
other threads (the ``curator run`` client printing progress while a global stage loads a
vocabulary; a Dask worker) that swallows whatever they write meanwhile: a lost progress line was
how this showed. With the log routed here there is nothing left to silence, so that redirection is
replaced by one that does nothing.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib
import logging
from typing import Any

LOGGER = logging.getLogger("curator.llm.llama_cpp")

# ggml_log_level in the ggml that llama-cpp-python 0.3.x builds: NONE, DEBUG, INFO, WARN, ERROR, CONT.
GGML_LEVEL_TO_LOGGING = {0: logging.DEBUG, 1: logging.DEBUG, 2: logging.DEBUG, 3: logging.INFO,
                         4: logging.WARNING}
GGML_LOG_LEVEL_CONT = 5


class LlamaCppLogRoute:
    """A llama.cpp log callback that assembles messages into lines and hands them to ``LOGGER``."""

    def __init__(self, llama_cpp: Any) -> None:
        self._pending = ""
        self._level = logging.DEBUG
        self.callback = llama_cpp.llama_log_callback(self._receive)  # kept here so ctypes does not free it
        llama_cpp.llama_log_set(self.callback, ctypes.c_void_p(0))

    def _receive(self, level: int, text: bytes, user_data: ctypes.c_void_p) -> None:
        if level != GGML_LOG_LEVEL_CONT:
            self._level = GGML_LEVEL_TO_LOGGING.get(level, logging.DEBUG)
        self._pending += text.decode("utf-8", errors="replace")
        while "\n" in self._pending:
            line, self._pending = self._pending.split("\n", 1)
            if line.strip():
                LOGGER.log(self._level, "%s", line)


def _no_redirect(disable: bool = False) -> contextlib.AbstractContextManager[None]:
    """Stands in for llama-cpp-python's ``suppress_stdout_stderr``: leaves the file descriptors alone."""
    return contextlib.nullcontext()


LLAMA_CPP_MODULES_REDIRECTING = ("llama_cpp.llama", "llama_cpp._internals", "llama_cpp.llama_chat_format")


@functools.cache
def route_llama_cpp_log() -> LlamaCppLogRoute:
    """Install the route (once: llama.cpp has one log callback per process, and the cache keeps it alive),
    and stop llama-cpp-python from redirecting the process's stdout and stderr."""
    import llama_cpp

    for name in LLAMA_CPP_MODULES_REDIRECTING:
        module = importlib.import_module(name)
        if hasattr(module, "suppress_stdout_stderr"):
            module.suppress_stdout_stderr = _no_redirect
    return LlamaCppLogRoute(llama_cpp)
