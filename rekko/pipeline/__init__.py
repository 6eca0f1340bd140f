"""The pipeline's stages, one module each, in the order they run.

``ingest`` (read and validate the inputs; ``sources`` resolves partitioned
inputs) -> ``ratings`` (join the movie API's ratings and descriptions) ->
``features`` (sessions, watch ratio, recency, per-user and per-movie
features) -> ``similarity`` (content top-k cosine) -> ``collaborative``
(co-watching families: top-k item-item similarity); ``run`` chains them in
memory and writes the artifacts; ``outputs`` checks the output paths.

Nothing here picks an engine or tunes: :mod:`rekko.build` does, and calls
these stages (the Dask engine, :mod:`rekko.distributed`, calls them too).
"""
