"""Run a function on one item at a time in a child process, with a time (and memory) limit.

For work that can hang or blow up on one bad input (a pathological HTML page, a gzip bomb): the
item is sent to a long-lived child process; if no answer comes within ``limit_s`` the child is
killed and a fresh one starts for the next item, so one page costs at most ``limit_s`` and never
a worker. The child is a plain ``subprocess`` (Dask's worker processes are daemonic, and
``multiprocessing`` refuses to start children from them); items and results travel as
length-prefixed pickles over its stdin/stdout.
"""

from __future__ import annotations

import importlib
import os
import pickle
import select
import struct
import subprocess
import sys
from typing import Any, BinaryIO

_HEADER = struct.Struct("!Q")


class ItemFailed(Exception):
    """An item that timed out, crashed the child, or raised in it; ``kind`` says which."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _write(stream: BinaryIO, obj: Any) -> None:
    blob = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_HEADER.pack(len(blob)) + blob)
    stream.flush()


def _read_exact(fd: int, n: int) -> bytes:
    chunks = []
    while n:
        chunk = os.read(fd, min(n, 1 << 20))
        if not chunk:
            raise EOFError
        chunks.append(chunk)
        n -= len(chunk)
    return b"".join(chunks)


class TimeLimitedCalls:
    """Calls ``func(item)`` in a child process, one item at a time, where the child built ``func``
    once as ``module:factory(setup_arg)`` (load models there)."""

    def __init__(self, target: str, setup_arg: Any = None, limit_s: float = 10.0,
                 memory_limit_mb: int | None = None) -> None:
        self.target = target
        self.setup_arg = setup_arg
        self.limit_s = limit_s
        self.memory_limit_mb = memory_limit_mb
        self._proc: subprocess.Popen[bytes] | None = None

    def _start(self) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "curator.time_limit", self.target, str(self.memory_limit_mb or 0)]
        # The child imports what the parent can (pipeline imports, test helpers, user paths).
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env)
        assert proc.stdin is not None
        _write(proc.stdin, self.setup_arg)
        return proc

    def call(self, item: Any) -> Any:
        """The function's result for ``item``; :class:`ItemFailed` on timeout, crash or error."""
        if self._proc is None or self._proc.poll() is not None:
            self._proc = self._start()
        proc = self._proc
        assert proc.stdin is not None and proc.stdout is not None
        try:
            _write(proc.stdin, item)
        except BrokenPipeError:
            self.close()
            raise ItemFailed("crash", "the child process died before taking the item") from None
        fd = proc.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], self.limit_s)
        if not ready:
            self.close()
            raise ItemFailed("timeout", f"no result within {self.limit_s:g} s")
        try:
            size = _HEADER.unpack(_read_exact(fd, _HEADER.size))[0]
            ok, value = pickle.loads(_read_exact(fd, size))
        except (EOFError, pickle.UnpicklingError, struct.error):
            self.close()
            raise ItemFailed("crash", "the child process died while working on the item") from None
        if not ok:
            raise ItemFailed("error", value)
        return value

    def close(self) -> None:
        """Stop the child process (a new one starts on the next call)."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            for stream in (self._proc.stdin, self._proc.stdout):
                if stream is not None:
                    stream.close()
            self._proc = None

    def __del__(self) -> None:
        self.close()


def _child(target: str, memory_limit_mb: int) -> None:
    """The child's loop: read the setup argument, then answer items until stdin closes."""
    if memory_limit_mb:
        import resource

        limit = memory_limit_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    module_name, factory_name = target.split(":")
    factory = getattr(importlib.import_module(module_name), factory_name)
    stdin, stdout = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # stray prints must not corrupt the result stream

    def read() -> Any:
        header = stdin.read(_HEADER.size)
        if len(header) < _HEADER.size:
            raise EOFError
        return pickle.loads(stdin.read(_HEADER.unpack(header)[0]))

    func = factory(read())
    while True:
        try:
            item = read()
        except EOFError:
            return
        try:
            result = (True, func(item))
        except MemoryError:
            result = (False, "MemoryError: over the child's memory limit")
        except Exception as exc:  # noqa: BLE001 - reported to the parent as this item's error
            result = (False, f"{type(exc).__name__}: {exc}")
        _write(stdout, result)


if __name__ == "__main__":
    _child(sys.argv[1], int(sys.argv[2]))
