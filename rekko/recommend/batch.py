"""Batch recommend with the local engine: every user, in this process, to one file or a dataset folder.

The Dask engine (:mod:`rekko.distributed.batch`) writes the same rows; see
:mod:`rekko.recommend.batch_output` for the two output forms.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from rekko import progress
from rekko.collisions import check_artifact_reader_outputs
from rekko.paths import ArtifactPaths
from rekko.recommend.batch_output import DatasetStage, output_kind, write_part
from rekko.recommend.present import write_batch
from rekko.recommend.recommender import BATCH_BLOCK, BATCH_BLOCK_BYTES, Recommender, load_artifacts, validate_n


def recommend_all_local(paths: ArtifactPaths, n: int, output: str | os.PathLike[str]) -> tuple[int, int, str]:
    """Top-``n`` for every user to ``output``; returns (rows, users, "file" or "dataset").

    A dataset gets one part per ranking block (at most 65,536 users, or
    256 MB of results), each written as soon as it is ranked.
    """
    n = validate_n(n)
    kind = output_kind(output)
    target = Path(output)
    check_artifact_reader_outputs(paths, {"--output": target}, folders=["--output"] if kind == "dataset" else [])
    stage = DatasetStage(target) if kind == "dataset" else None  # check the target before loading anything
    recommender = Recommender(load_artifacts(paths))
    users = len(recommender.artifacts.user_ids)
    block = int(min(BATCH_BLOCK, max(1, BATCH_BLOCK_BYTES // (40 * min(n, len(recommender.artifacts.movie_ids) or 1)))))
    total = -(-users // block)
    blocks = progress.track(recommender.iter_recommend_all(n, block_size=block), total=total,
                            desc="batch recommend", unit="block")
    with progress.stage("batch recommend (local)", of=progress.count(users, "users")) as report:
        if stage is None:
            rows, got = write_batch(blocks, target)
        else:
            with stage:
                infos = [write_part([frame], stage.part_path(i)) for i, frame in enumerate(blocks)]
                published = stage.publish(infos, {
                    "engine": "local", "n": n, "partitions": len(infos),
                    "artifacts_manifest": os.path.abspath(paths.manifest),
                    "artifacts_manifest_sha256": hashlib.sha256(paths.manifest.read_bytes()).hexdigest()})
            rows, got = published["rows"], published["users"]
        report.rows = rows
        report.facts = {"users": got}
    return rows, got, kind
