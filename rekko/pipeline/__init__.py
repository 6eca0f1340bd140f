"""The pipeline's stages, one module each, in the order they run.

``ingest`` (read and validate the inputs) -> ``ratings`` (join the movie API's
ratings and descriptions) -> ``features`` (sessions, watch ratio, per-user and
per-movie features) -> ``similarity`` (content top-k cosine) ->
``collaborative`` (co-watching top-k similarity, recency ranks); ``run``
computes them in memory and writes the artifacts.
"""

from rekko.config import PipelineConfig
from rekko.pipeline.run import (
    PipelineResult,
    compute,
    input_fingerprints,
    manifest_parameters,
    run_pipeline,
    run_with_enrichment,
    tuned_config,
    write_result,
)

__all__ = [
    "PipelineConfig",
    "PipelineResult",
    "compute",
    "input_fingerprints",
    "manifest_parameters",
    "run_pipeline",
    "run_with_enrichment",
    "tuned_config",
    "write_result",
]
