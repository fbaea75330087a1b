"""Remote filesystems made dependable: bounded retries with backoff on transient errors.

Object stores (S3, GCS) and HTTP servers fail now and then with errors that go away on a second
try: a reset connection, a timeout, a 503 "slow down". :class:`RetryingFileSystem` wraps any fsspec
filesystem so that each of its calls is retried on such errors (a bounded number of times, with
exponential backoff, each retry logged), while errors that a retry cannot fix (a missing file, a
denied request, a bad argument) are raised at once.

Rename is not atomic on object stores (it is a copy then a delete), so the writers in
:mod:`curator.storage` upload each object whole and in one request instead (an object appears only
when its upload completes), and a shard counts as done only when its commit marker exists.
"""

from __future__ import annotations

import errno
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import fsspec
from fsspec.implementations.local import LocalFileSystem

log = logging.getLogger("curator.storage")
T = TypeVar("T")

TRANSIENT_ERRNOS = frozenset({
    errno.ECONNRESET, errno.ECONNABORTED, errno.ECONNREFUSED, errno.ETIMEDOUT, errno.EPIPE, errno.EAGAIN,
    errno.EBUSY,  # s3fs: 503 SlowDown / ServiceUnavailable
    getattr(errno, "EREMOTEIO", errno.EIO),  # s3fs: 500 InternalError
})
TRANSIENT_HTTP_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# Matched by class name, so that neither aiohttp nor botocore must be importable here.
TRANSIENT_ERROR_NAMES = frozenset({
    "ClientConnectionError", "ClientOSError", "ServerDisconnectedError", "ServerTimeoutError",
    "ClientPayloadError", "EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError",
    "ConnectionClosedError", "IncompleteReadError", "ResponseStreamingError", "IncompleteRead",
    "FSTimeoutError",
})
PERMANENT_ERRORS = (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError, PermissionError)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a transient storage error is retried.

    ``attempts`` counts the first try; the n-th retry waits ``base_delay * 2**(n-1)`` seconds, at
    most ``max_delay``.
    """

    attempts: int = 6
    base_delay: float = 0.25
    max_delay: float = 8.0

    def delay(self, retry: int) -> float:
        """Seconds to wait before the ``retry``-th retry (1-based)."""
        return min(self.max_delay, self.base_delay * 2 ** (retry - 1))


DEFAULT_POLICY = RetryPolicy()


def is_transient(exc: BaseException) -> bool:
    """Whether an error from a filesystem call may go away when the call is repeated."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, PERMANENT_ERRORS):
            # fsspec's HTTP filesystem reports any failed request as FileNotFoundError raised from
            # the real error (a 503 as much as a 404): that one decides.
            return current.__cause__ is not None and is_transient(current.__cause__)
        if isinstance(current, (ConnectionError, TimeoutError)):
            return True
        if isinstance(current, OSError) and current.errno in TRANSIENT_ERRNOS:
            return True
        if any(cls.__name__ in TRANSIENT_ERROR_NAMES for cls in type(current).__mro__):
            return True
        status = getattr(current, "status", None)
        if isinstance(status, int) and status in TRANSIENT_HTTP_STATUS:
            return True
        current = current.__cause__ or current.__context__
    return False


def retry_call(fn: Callable[..., T], *args: Any, what: str, policy: RetryPolicy = DEFAULT_POLICY,
               **kwargs: Any) -> T:
    """Call ``fn(*args, **kwargs)``, retrying transient errors under ``policy``.

    ``what`` names the operation and its path in the log lines and in the final error.
    """
    for attempt in range(1, policy.attempts + 1):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not is_transient(exc):
                raise
            if attempt == policy.attempts:
                log.error("%s: still failing after %d attempts: %s: %s", what, attempt, type(exc).__name__, exc)
                raise
            wait = policy.delay(attempt)
            log.warning("%s: transient error (attempt %d/%d), retrying in %.2fs: %s: %s",
                        what, attempt, policy.attempts, wait, type(exc).__name__, exc)
            time.sleep(wait)
    raise AssertionError("unreachable")


RETRIED_METHODS = frozenset({
    "info", "ls", "glob", "find", "du", "size", "modified", "checksum", "ukey",
    "cat_file", "cat", "pipe_file", "pipe", "put_file", "put", "get_file", "get",
    "rm", "rm_file", "makedirs", "mkdir", "touch", "copy", "cp_file", "mv", "open",
})


class RetryingFileSystem:
    """An fsspec filesystem whose calls are retried on transient errors (see :func:`retry_call`).

    Other attributes pass through unchanged. ``open`` is retried as a call (on S3 it sends a HEAD
    request); reading an open file is left to the backend's own retries and to
    :func:`curator.storage.read_batches`, which resumes a broken read where it stopped.
    """

    def __init__(self, fs: fsspec.AbstractFileSystem, policy: RetryPolicy = DEFAULT_POLICY) -> None:
        self.fs = fs
        self.policy = policy

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.fs, name)
        if name not in RETRIED_METHODS or not callable(attr):
            return attr

        def retried(*args: Any, **kwargs: Any) -> Any:
            target = args[0] if args else kwargs.get("path", "")
            self._forget_listings()
            return retry_call(attr, *args, what=f"{self.protocol_name} {name} {target}", policy=self.policy,
                              **kwargs)

        return retried

    @property
    def protocol_name(self) -> str:
        """The filesystem's main protocol, e.g. ``s3``."""
        protocol = self.fs.protocol
        return protocol if isinstance(protocol, str) else protocol[0]

    def _forget_listings(self) -> None:
        # Other processes write to the same store: a listing cached here (s3fs, gcsfs) would hide
        # their objects, and fsspec answers info() from a cached parent listing ("not found").
        self.fs.invalidate_cache()

    def _info_or_none(self, path: str, call: str) -> dict[str, Any] | None:
        self._forget_listings()
        try:
            return retry_call(self.fs.info, path, what=f"{self.protocol_name} {call} {path}", policy=self.policy)
        except FileNotFoundError:
            return None

    # fsspec's exists/isdir/isfile turn every error into False; a transient one must be retried instead.
    def exists(self, path: str) -> bool:
        """Whether ``path`` exists (a transient error is retried, not read as "no")."""
        return self._info_or_none(path, "exists") is not None

    def isdir(self, path: str) -> bool:
        """Whether ``path`` is a directory (or, on object stores, a prefix with objects under it)."""
        info = self._info_or_none(path, "isdir")
        return info is not None and info.get("type") == "directory"

    def isfile(self, path: str) -> bool:
        """Whether ``path`` is a file (an object)."""
        info = self._info_or_none(path, "isfile")
        return info is not None and info.get("type") == "file"

    def __reduce__(self) -> tuple[Any, ...]:
        return (RetryingFileSystem, (self.fs, self.policy))


def renames_atomically(fs: Any) -> bool:
    """Whether ``fs`` renames atomically (local disk); object stores copy then delete."""
    return isinstance(unwrap(fs), LocalFileSystem)


def with_retries(fs: fsspec.AbstractFileSystem, policy: RetryPolicy = DEFAULT_POLICY) -> Any:
    """``fs`` wrapped in retries, unless it is the local disk (its errors are not transient)."""
    if isinstance(fs, (LocalFileSystem, RetryingFileSystem)):
        return fs
    return RetryingFileSystem(fs, policy)


def unwrap(fs: Any) -> Any:
    """The fsspec filesystem inside a :class:`RetryingFileSystem` (or ``fs`` itself)."""
    return fs.fs if isinstance(fs, RetryingFileSystem) else fs
