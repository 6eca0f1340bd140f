"""The Dask engine: the pipeline's long-log stages and batch recommend on a Dask cluster.

``--engine dask`` selects it; ``--scheduler ADDRESS`` (or ``REKKO_DASK_SCHEDULER``)
connects to a running cluster, and without one a ``LocalCluster`` sized to the
machine is started (:mod:`rekko.distributed.cluster`). Dask is an optional
dependency (``pip install 'rekko[dask]'``); nothing here is imported by the
local engine.
"""

#: Interaction rows per partition of users in distributed batch recommend (``--partition-rows``): a
#: worker holds about 30 bytes per row of history plus one ranking block while it scores one.
#: Here, not in :mod:`rekko.distributed.batch`, so the CLI's parser reads it without importing pandas.
PARTITION_ROWS = 1_000_000
