"""Connecting to Dask: a LocalCluster sized to the machine, or an existing scheduler."""

from __future__ import annotations

import logging
import os
from contextlib import contextmanager
from collections.abc import Iterator

from distributed import Client, LocalCluster

log = logging.getLogger("curator.cluster")


def default_workers() -> int:
    """One single-threaded worker process per CPU core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


@contextmanager
def dask_client(
    scheduler: str | None = None,
    scheduler_file: str | None = None,
    workers: int | None = None,
    dashboard_address: str | None = ":8787",
) -> Iterator[Client]:
    """A Dask client: on ``scheduler``/``scheduler_file`` if given, else on a new LocalCluster.

    The LocalCluster has ``workers`` single-threaded worker processes (default: one per core), each
    with an equal share of the machine's memory.
    """
    if scheduler or scheduler_file:
        client = Client(address=scheduler, scheduler_file=scheduler_file)
        try:
            yield client
        finally:
            client.close()
        return
    n = workers or default_workers()
    cluster = LocalCluster(
        n_workers=n,
        threads_per_worker=1,
        processes=True,
        memory_limit="auto",
        dashboard_address=dashboard_address,
        silence_logs=logging.ERROR,
    )
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()
