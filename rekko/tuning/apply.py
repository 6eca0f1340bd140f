"""``rekko tune`` applies what it chose: the artifact set is rebuilt with the tuned parameters.

The blend only changes how the kernel combines the artifacts, so it is a
manifest update. A different co-watching family or ``k`` needs a new
``cos_sim_cf.pkl``, a different recency mode new ranks in
``interactions_upd``: those are rebuilt from the set's own verified
artifacts (no input is read again) with the pipeline's stage functions, and
the whole set is published through the pipeline's staged, locked write
(:func:`rekko.pipeline.run.write_result`), so ``recommend``, the batch and
``serve`` use the tuned model with no further step, and the set equals what
``rekko pipeline`` builds with those parameters. If another run replaces the
set meanwhile, nothing is written.
"""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from rekko import progress
from rekko.artifacts import Manifest, read_manifest, read_verified, topk_from_bytes, write_manifest
from rekko.columns import LIST_COLUMNS
from rekko.columns import Columns as C
from rekko.config import PipelineConfig, RekkoParams
from rekko.exceptions import ArtifactError
from rekko.locking import DEFAULT_LOCK_TIMEOUT, exclusive_lock
from rekko.paths import PipelinePaths
from rekko.pipeline.features import recency_rank
from rekko.pipeline.run import PipelineResult, add_cowatch, write_result
from rekko.tuning.data import similarity_settings

ROLES = ("movies_rd", "int_coef", "movies_upd", "interactions_upd", "sim_md", "sim_desc")


def paths_of(manifest: Manifest) -> PipelinePaths:
    """The set's paths as its manifest records them (inputs and artifacts)."""
    try:
        inputs = {role: Path(manifest.inputs[role]["path"]) for role in ("interactions", "movies", "ratings")}
        outputs = {role: Path(manifest.artifacts[role]["path"]) for role in ROLES}
    except (KeyError, TypeError) as exc:
        raise ArtifactError(f"the manifest does not list the path of {exc}: rebuild with `rekko pipeline`") from None
    return PipelinePaths(inputs["interactions"], inputs["movies"], inputs["ratings"], outputs["movies_rd"],
                         outputs["int_coef"], outputs["movies_upd"], outputs["interactions_upd"], outputs["sim_md"],
                         outputs["sim_desc"])


def apply_tuned(manifest_path: Path, params: RekkoParams, summary: dict[str, Any], *,
                lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> str:
    """Make ``params`` the set's model (see the module doc); a line for the user saying what was done."""
    before = manifest_path.read_bytes()
    manifest = read_manifest(manifest_path)
    stored = PipelineConfig.from_manifest(manifest.parameters)
    chosen = replace(params.collaborative, n_threads=stored.collaborative.n_threads)
    config = replace(stored.with_params(replace(params, collaborative=chosen)),
                     tuned={"source": "rekko tune", **summary}, autotune=replace(stored.autotune, enabled=False))
    new_cf = ("sim_cf" not in manifest.artifacts
              or similarity_settings(stored.collaborative) != similarity_settings(chosen))
    new_recency = stored.collaborative.recency != chosen.recency
    if not new_cf and not new_recency:
        with exclusive_lock(manifest_path.parent / ".rekko.lock", timeout=lock_timeout,
                            what=f"the artifact set of {manifest_path}"):
            if manifest_path.read_bytes() != before:
                raise ArtifactError(f"{manifest_path} changed while tuning (another run wrote the set): "
                                    "nothing written; run `rekko tune` again")
            manifest.parameters = config.to_manifest()
            write_manifest(manifest, manifest_path)
        return "applied the tuned blend (the co-watching similarity and recency ranks were built with these settings)"
    paths = paths_of(manifest)
    if paths.manifest.resolve() != manifest_path.resolve():
        raise ArtifactError(f"{manifest_path} lists artifacts beside {paths.manifest}: run `rekko tune` with "
                            "--manifest naming the set's own manifest")
    with progress.stage("apply the tuned model", of="the artifact set") as report:
        result = _read_set(paths, manifest, stored, new_recency=new_recency)
        if new_recency:
            result.interactions[C.RECENCY_RANK] = recency_rank(result.interactions, chosen.recency).astype(np.int32)
        result = add_cowatch(result, config) if new_cf or result.sim_cf is None else replace(result, config=config)
        write_result(result, paths, config, manifest.inputs, lock_timeout=lock_timeout, engine=manifest.engine,
                     expect_manifest=before)
        report.facts["rebuilt"] = ", ".join(n for n, b in (("co-watching similarity", new_cf),
                                                           ("recency ranks", new_recency)) if b)
    what = " and ".join(n for n, b in (("the co-watching similarity", new_cf), ("the recency ranks", new_recency)) if b)
    return f"rebuilt {what} with the tuned settings and published the set"


def _read_set(paths: PipelinePaths, manifest: Manifest, config: PipelineConfig, *, new_recency: bool
              ) -> PipelineResult:
    """The set's artifacts, each verified against the manifest, as the pipeline computed them."""
    def table(role: str, path: Path) -> pd.DataFrame:
        return pd.read_parquet(io.BytesIO(read_verified(path, manifest, role)))

    movies = table("movies_upd", paths.movies_upd)
    for col in LIST_COLUMNS:
        if col in movies.columns:
            movies[col] = movies[col].map(lambda v: [] if v is None else list(v))
    interactions = table("interactions_upd", paths.interactions_upd)
    sims = {role: topk_from_bytes(read_verified(getattr(paths, role), manifest, role), source=str(getattr(paths, role)))
            for role in ("sim_md", "sim_desc")}
    sim_cf = (topk_from_bytes(read_verified(paths.sim_cf, manifest, "sim_cf"), source=str(paths.sim_cf))
              if "sim_cf" in manifest.artifacts else None)
    counts = {k: v for k, v in manifest.counts.items() if k != "timings_s"}
    # tables this rebuild does not change are copied byte for byte (a frame read back and written again
    # may differ in its bytes: dtypes, parquet metadata); interactions_upd only when its recency stays
    kept = {"movies_rd": paths.movies_rd, "int_coef": paths.int_coef, "movies_upd": paths.movies_upd}
    if not new_recency:
        kept["interactions_upd"] = paths.interactions_upd
    return PipelineResult(table("movies_rd", paths.movies_rd), movies, interactions, table("int_coef", paths.int_coef),
                          sims["sim_md"], sims["sim_desc"], sim_cf, counts=counts, timings={}, config=config,
                          kept=kept)
