"""A persistent response cache: one SQLite file (WAL mode) mapping request keys to results.

Answers are stored as they arrive and committed one by one, so a killed process loses at most the
requests in flight. Final failures are stored too, marked as failures, for inspection; they are
never returned as answers, so a rerun sends failed requests again.

One cache file should have exactly one writing process. SQLite would serialise several writers,
but they would contend for the file lock on every commit; the caller (the stage) gives each shard
task its own file. Within a process the cache is safe to share between threads and async callers.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from types import TracebackType

from curator.llm.requests import LLMResult

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    ok INTEGER NOT NULL,
    text TEXT,
    finish_reason TEXT,
    tokens_in INTEGER NOT NULL,
    tokens_out INTEGER NOT NULL,
    latency_s REAL NOT NULL,
    error_kind TEXT,
    error TEXT,
    attempts INTEGER NOT NULL,
    written_at REAL NOT NULL
)
"""
_COLUMNS = "key, text, finish_reason, tokens_in, tokens_out, latency_s, error_kind, error, attempts"
_INSERT = f"INSERT INTO responses ({_COLUMNS}, ok, written_at) VALUES ({','.join('?' * 11)})"
_UPDATE = "ON CONFLICT(key) DO UPDATE SET " + ", ".join(
    f"{c} = excluded.{c}" for c in [*_COLUMNS.split(", ")[1:], "ok", "written_at"]
)
_UPSERT_OK = f"{_INSERT} {_UPDATE}"
_UPSERT_FAILED = f"{_INSERT} {_UPDATE} WHERE responses.ok = 0"  # keep an answer; replace an older failure
_CHUNK = 500  # below SQLite's limit on host parameters per statement


class ResponseCache:
    """Results of finished requests by cache key, in a SQLite file at ``path``."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        parent = os.path.dirname(self.path)
        if parent:
            os.makedirs(parent, exist_ok=True)
        self._lock = threading.Lock()
        # isolation_level=None: autocommit; each put is its own transaction.
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        # NORMAL in WAL mode: a commit survives a process kill; only an OS crash can lose the last few.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.execute(_SCHEMA)

    def get_many(self, keys: Iterable[str]) -> dict[str, LLMResult]:
        """The cached answers among ``keys`` (failures are not answers), marked ``cached``."""
        found: dict[str, LLMResult] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            for start in range(0, len(unique), _CHUNK):
                chunk = unique[start:start + _CHUNK]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    f"SELECT {_COLUMNS} FROM responses WHERE ok = 1 AND key IN ({marks})", chunk
                ).fetchall()
                for row in rows:
                    found[row[0]] = _result(row, cached=True)
        return found

    def get(self, key: str) -> LLMResult | None:
        """The cached answer for one key, or None."""
        return self.get_many([key]).get(key)

    def put(self, key: str, result: LLMResult) -> None:
        """Store a result, committed before returning. A failure never replaces a stored answer."""
        values = (
            key, result.text, result.finish_reason, result.tokens_in, result.tokens_out,
            result.latency_s, result.error_kind, result.error, result.attempts, int(result.ok), time.time(),
        )
        with self._lock:
            self._db.execute(_UPSERT_OK if result.ok else _UPSERT_FAILED, values)

    def failures(self) -> list[tuple[str, str, str]]:
        """``(key, error_kind, error)`` of every stored request whose last outcome was a failure."""
        with self._lock:
            return self._db.execute("SELECT key, error_kind, error FROM responses WHERE ok = 0").fetchall()

    def counts(self) -> tuple[int, int]:
        """Number of stored answers and of stored failures."""
        with self._lock:
            ok, failed = self._db.execute(
                "SELECT COALESCE(SUM(ok), 0), COALESCE(SUM(1 - ok), 0) FROM responses"
            ).fetchone()
        return int(ok), int(failed)

    def close(self) -> None:
        """Close the database file."""
        with self._lock:
            self._db.close()

    def __enter__(self) -> ResponseCache:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ResponseCache({self.path!r})"


def _result(row: tuple[object, ...], *, cached: bool) -> LLMResult:
    _key, text, finish_reason, tokens_in, tokens_out, latency_s, error_kind, error, attempts = row
    return LLMResult(
        text=text,  # type: ignore[arg-type]
        finish_reason=finish_reason,  # type: ignore[arg-type]
        tokens_in=int(tokens_in),  # type: ignore[arg-type]
        tokens_out=int(tokens_out),  # type: ignore[arg-type]
        latency_s=float(latency_s),  # type: ignore[arg-type]
        error_kind=error_kind,  # type: ignore[arg-type]
        error=error,  # type: ignore[arg-type]
        attempts=int(attempts),  # type: ignore[arg-type]
        cached=cached,
    )
