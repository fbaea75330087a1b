"""The real llama.cpp OpenAI-compatible server (``python -m llama_cpp.server``) on a free port of
127.0.0.1, for tests and benchmarks: started, waited for until ``GET /v1/models`` answers, stopped."""

from __future__ import annotations

import re
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from types import TracebackType


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LlamaServer:
    """``python -m llama_cpp.server --model MODEL ...extra_args``, its output in ``log_path``."""

    def __init__(self, model: Path, log_path: Path, extra_args: list[str] | None = None,
                 ready_timeout_s: float = 180.0) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
             "--port", str(port), *(extra_args or [])],
            stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + ready_timeout_s
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}/v1/models", timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"llama_cpp.server did not start (exit {self.proc.returncode}):\n{tail}")
            time.sleep(0.25)

    def completions_answered(self) -> int:
        """``POST /v1/completions`` answered with 200 so far (uvicorn's access log)."""
        self._log.flush()
        return len(re.findall(r'"POST /v1/completions HTTP/1.1" 200', self.log_path.read_text(errors="replace")))

    def close(self) -> None:
        """Stop the server (terminate, then kill after 30 s)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def __enter__(self) -> LlamaServer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
