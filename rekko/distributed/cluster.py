"""Connecting to a Dask cluster, or starting a local one sized to the machine."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rekko.exceptions import ConfigError

log = logging.getLogger("rekko.progress.dask")

#: Environment variable naming a running scheduler (``tcp://host:8786``), like ``--scheduler``.
SCHEDULER_ENV = "REKKO_DASK_SCHEDULER"


def require_dask() -> None:
    """Raise a :class:`ConfigError` (exit 2) naming the extra to install when Dask is missing."""
    try:
        import dask.dataframe  # noqa: F401
        import distributed  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"--engine dask needs Dask: pip install 'rekko[dask]' ({exc})") from None


@contextmanager
def connect(scheduler: str | None = None, *, n_workers: int | None = None,
            memory_limit: str | int | None = None, threads_per_worker: int = 1) -> Iterator[Any]:
    """A ``distributed.Client``: to ``scheduler`` (or ``$REKKO_DASK_SCHEDULER``), else a new ``LocalCluster``.

    A local cluster gets one single-threaded worker process per core (the
    stages are numpy/pandas code that holds the GIL) and binds to 127.0.0.1
    only, its dashboard included: nothing is opened to the network unless
    the operator runs a scheduler themselves. The dashboard address is
    reported on the progress log. The cluster is closed on exit; a remote
    cluster is only disconnected from.
    """
    require_dask()
    from distributed import Client, LocalCluster

    # distributed sets its loggers to INFO on import; the CLI shows its lifecycle chatter only with -v
    logging.getLogger("distributed").setLevel(max(logging.WARNING, logging.getLogger().getEffectiveLevel()))

    address = scheduler or os.environ.get(SCHEDULER_ENV) or None
    if address:
        try:
            client = Client(address, timeout="30s")
        except OSError as exc:
            raise ConfigError(f"cannot reach the Dask scheduler at {address}: {exc}") from None
        log.info("dask: connected to %s (dashboard: %s)", address, client.dashboard_link)
        try:
            yield client
        finally:
            client.close()
        return
    workers = n_workers or max(1, min(os.cpu_count() or 1, 8))
    cluster = LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
                           host="127.0.0.1", dashboard_address="127.0.0.1:0",
                           memory_limit=memory_limit if memory_limit is not None else "auto")
    client = Client(cluster)
    log.info("dask: local cluster of %d workers (dashboard: %s)", workers, client.dashboard_link)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def tree_reduce(client: Any, futures: list[Any], add: Any) -> Any:
    """``add`` over ``futures`` in a fan-in-2 tree on the cluster; the total on the client.

    Every level's futures stay referenced until the total is in: a future
    released while the scheduler still needs it for the next level fails the
    run with "lost dependencies".
    """
    level = list(futures)
    held = [level]
    while len(level) > 1:
        nxt = [client.submit(add, level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
        held.append(level)
    return level[0].result()
