"""The pipeline's stages, one module each, in the order they run.

``ingest`` (read and validate the inputs) -> ``ratings`` (join the movie API's
ratings and descriptions) -> ``features`` (sessions, watch ratio, per-user and
per-movie features) -> ``similarity`` (content top-k cosine) ->
``collaborative`` (co-watching top-k similarity, recency ranks); ``run``
computes them in memory and writes the artifacts.

The names below are loaded on first use, so importing one stage (the
enrichment client needs ``ratings``) does not import scikit-learn and the rest.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "PipelineConfig": "rekko.config",
    "PipelineResult": "rekko.pipeline.run",
    "compute": "rekko.pipeline.run",
    "input_fingerprints": "rekko.pipeline.run",
    "manifest_parameters": "rekko.pipeline.run",
    "run_pipeline": "rekko.pipeline.run",
    "run_with_enrichment": "rekko.pipeline.run",
    "tuned_config": "rekko.pipeline.run",
    "write_result": "rekko.pipeline.run",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'rekko.pipeline' has no attribute {name!r}")
