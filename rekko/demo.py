"""``rekko demo``: build artifacts from the embedded sample when needed, then recommend.

Artifacts are rebuilt when the manifest is missing, was written from other
input files (sha256 of the inputs), or no longer verifies.
"""

from __future__ import annotations

import logging
import sys

import numpy as np

from rekko.artifacts import read_manifest
from rekko.exceptions import ArtifactError, InputFileError
from rekko.paths import PipelinePaths

log = logging.getLogger(__name__)

#: The sample user whose tastes are documented in data/README.md.
SAMPLE_USER = 1


def artifacts_fresh(paths: PipelinePaths) -> bool:
    """True when the manifest was written by this rekko, from exactly the current inputs, with the parameters
    a pipeline run would use now (the built-in ones, or those `rekko tune` stored)."""
    from rekko import __version__
    from rekko.build import tuned_config
    from rekko.config import PipelineConfig
    from rekko.pipeline.run import input_fingerprints

    try:
        manifest = read_manifest(paths.manifest)
    except ArtifactError:
        return False
    config = tuned_config(paths.manifest, PipelineConfig()) or PipelineConfig()
    expected, found = config.to_manifest(), dict(manifest.parameters)
    tuned = found.get("tuned") or {}
    if tuned.get("source") == "pipeline":
        found.pop("tuned")  # the pipeline's own summary: it says how the parameters below were chosen
        if tuned.get("status") == "tuned":
            # tuned on these very inputs (deterministic): what it chose is what a run would choose now
            for name in ("blend", "collaborative"):
                expected.pop(name, None)
                found.pop(name, None)
    return (
        manifest.rekko_version == __version__
        and manifest.inputs == input_fingerprints(paths)
        and found == expected
    )


def describe_history(paths: PipelinePaths, artifacts, user_id: int, shown: int = 5) -> str:
    """One line on what the user watched, most recent first, with the share of each film they saw."""
    import pandas as pd

    from rekko.columns import Columns as C

    rows = pd.read_parquet(paths.interactions_upd, filters=[(C.USER, "==", int(user_id))])
    if rows.empty:
        return f"User {user_id} has no watch history"
    if C.RECENCY_RANK in rows.columns:
        rows = rows.sort_values(C.RECENCY_RANK)
    seen = ", ".join(f"{artifacts.titles[i]} ({r:.0%})"
                     for i, r in zip(rows["movie_idx"][:shown], rows[C.WATCH_RATIO][:shown]))
    return f"User {user_id} watched {len(rows)} movies, most recently: {seen}"


def run_demo(user_id: int | None = None, n: int = 10, fmt: str = "table") -> int:
    from rekko.recommend.present import format_recommendations
    from rekko.build import run_with_enrichment
    from rekko.recommend import Recommender, load_artifacts

    paths = PipelinePaths()
    for p in (paths.interactions, paths.movies, paths.ratings):
        if not p.exists():
            raise InputFileError(f"{p}: sample input not found; run the demo from the rekko directory "
                                 "(it reads data/ and writes matrix/)")
    if not artifacts_fresh(paths):
        print("demo: building artifacts from the sample in data/ ...", file=sys.stderr)
        result, _ = run_with_enrichment(paths)
        print(f"demo: pipeline done in {sum(result.timings.values()):.2f} s", file=sys.stderr)
    try:
        artifacts = load_artifacts(paths.artifacts())
    except ArtifactError:
        # written by another version or tampered with: rebuild once
        run_with_enrichment(paths)
        artifacts = load_artifacts(paths.artifacts())
    recommender = Recommender(artifacts, engine="auto")  # one answer per process: no compiler start-up
    if user_id is None:
        user_id = SAMPLE_USER if SAMPLE_USER in artifacts.user_ids else int(
            artifacts.user_ids[np.argmax(np.diff(artifacts.history.indptr))])
    if fmt == "table":
        print(describe_history(paths, artifacts, user_id))
    recs = recommender.recommend(user_id, n)
    label = "cold start" if recs.cold_start else "personal"
    if fmt == "table":
        print(f"Top {len(recs.items)} movies for user {user_id} ({label})")
    sys.stdout.write(format_recommendations(recs.items, fmt))
    return 0
