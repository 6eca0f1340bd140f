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
    """True when a manifest exists and records exactly the current input files."""
    from rekko.pipeline import input_fingerprints

    try:
        manifest = read_manifest(paths.manifest)
    except ArtifactError:
        return False
    return manifest.inputs == input_fingerprints(paths)


def run_demo(user_id: int | None = None, n: int = 10, fmt: str = "table") -> int:
    from rekko.cli import format_recommendations
    from rekko.pipeline import run_with_enrichment
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
    recommender = Recommender(artifacts)
    if user_id is None:
        user_id = SAMPLE_USER if SAMPLE_USER in artifacts.user_ids else int(
            artifacts.user_ids[np.argmax(np.diff(artifacts.history.indptr))])
    hist = recommender.history_of(user_id)
    if hist is not None and fmt == "table":
        watched, ratios = hist
        order = np.argsort(-ratios)[:5]
        seen = ", ".join(f"{artifacts.titles[i]} ({r:.0%})" for i, r in zip(watched[order], ratios[order]))
        print(f"User {user_id} watched {len(watched)} movies, most fully: {seen}")
    recs = recommender.recommend(user_id, n)
    label = "cold start" if recs.cold_start else "personal"
    if fmt == "table":
        print(f"Top {len(recs.items)} movies for user {user_id} ({label})")
    sys.stdout.write(format_recommendations(recs.items, fmt))
    return 0
