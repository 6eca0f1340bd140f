"""The Dask engine: the pipeline's long-log stages and batch recommend on a Dask cluster.

``--engine dask`` selects it; ``--scheduler ADDRESS`` (or ``REKKO_DASK_SCHEDULER``)
connects to a running cluster, and without one a ``LocalCluster`` sized to the
machine is started (:mod:`rekko.distributed.cluster`). Dask is an optional
dependency (``pip install 'rekko[dask]'``); nothing here is imported by the
local engine.
"""

#: At most this many interaction rows per partition of users in distributed batch recommend, by default
#: (``--partition-rows``); fewer so that every worker thread gets about four partitions, but not under
#: MIN_PARTITION_ROWS. Here, not in :mod:`rekko.distributed.batch`, so the CLI's parser reads them
#: without importing pandas.
PARTITION_ROWS = 1_000_000
MIN_PARTITION_ROWS = 50_000
