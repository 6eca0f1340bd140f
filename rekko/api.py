"""rekko's public Python API: build an artifact set, load it, ask it.

``import rekko`` exposes exactly these names (loaded on first use, so the
import itself stays cheap)::

    rec = rekko.build_artifacts("data/interactions.parquet", "data/movies_metdata.parquet",
                                "data/Movies_r_d.xlsx", out="build")
    rec.recommend(42, 10)          # top-10 for user 42: a DataFrame
    rec.similar(movie_id, 5)       # the five movies nearest one movie (blended similarity)
    rec.recommend_all(10)          # top-10 for every known user
    rekko.Recommender.load("build")
    rekko.evaluate(interactions, movies, ratings).table

Every input may be a path (parquet, csv or xlsx, as ``rekko pipeline`` takes
it) or a pandas DataFrame; a frame goes through the same validation, with the
same errors (:mod:`rekko.exceptions`), as a file. The artifact set is written
in the seed's layout (``data/`` and ``matrix/`` under ``out``), so the CLI
(``rekko recommend``, ``rekko serve``) run in ``out`` reads it with no options.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Union

import numpy as np
import pandas as pd

from rekko.artifacts import Manifest
from rekko.build import ENGINES, compute, run_pipeline
from rekko.columns import Columns as C
from rekko.config import PipelineConfig
from rekko.evaluation.run import EvalConfig, EvaluationResult, run_evaluation
from rekko.exceptions import ConfigError
from rekko.io import sha256_file
from rekko.paths import MANIFEST_NAME, ArtifactPaths, PipelinePaths
from rekko.pipeline import ingest
from rekko.pipeline.collaborative import family
from rekko.pipeline.outputs import check_outputs
from rekko.pipeline.ratings import clean_ratings
from rekko.pipeline.run import input_fingerprints, write_result
from rekko.recommend.recommender import Recommender as Ranker
from rekko.recommend.recommender import load_artifacts

__all__ = ["Recommender", "build_artifacts", "evaluate"]

#: A path to a table (str or path-like) or a pandas DataFrame.
Input = Union[str, "os.PathLike[str]", pd.DataFrame]
#: What :meth:`Recommender.load` takes: a folder, or the artifact paths themselves.
Source = Union[str, "os.PathLike[str]", ArtifactPaths, PipelinePaths]

_ROLES = ("interactions", "movies", "ratings")


def artifact_layout(out: str | os.PathLike[str]) -> PipelinePaths:
    """The seed's layout under ``out``: outputs in ``out/data`` and ``out/matrix`` (inputs left at the defaults)."""
    root = Path(out)
    defaults = PipelinePaths()
    return PipelinePaths(
        **{role: getattr(defaults, role) for role in _ROLES},
        **{role: root / getattr(defaults, role)
           for role in ("movies_rd", "int_coef", "movies_upd", "interactions_upd", "sim_md", "sim_desc")},
    )


def _is_frame(value: object) -> bool:
    return isinstance(value, pd.DataFrame)


def _check_input(role: str, value: object) -> None:
    if not (_is_frame(value) or isinstance(value, (str, os.PathLike))):
        raise ConfigError(f"{role} must be a path or a pandas DataFrame, got {type(value).__name__}")


def _frame_fingerprint(frame: pd.DataFrame) -> dict[str, object]:
    """What the manifest records of an input given as a frame: its shape, columns and a content hash."""
    digest = hashlib.sha256(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes()).hexdigest()
    return {"source": "DataFrame", "rows": len(frame), "columns": [str(c) for c in frame.columns],
            "content_sha256": digest}


def _validated(interactions: Input, movies: Input, ratings: Input) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The three inputs as the pipeline reads them: a path through its loader, a frame through the same checks."""
    return (
        ingest.validate_interactions(interactions) if _is_frame(interactions)
        else ingest.load_interactions(interactions),
        ingest.validate_movies(movies) if _is_frame(movies) else ingest.load_movies(movies),
        clean_ratings(ratings) if _is_frame(ratings) else ingest.load_ratings(ratings),
    )


def build_artifacts(interactions: Input, movies: Input, ratings: Input, *, out: str | os.PathLike[str] = ".",
                    config: PipelineConfig | None = None, engine: str = "local") -> Recommender:
    """Build an artifact set from the three inputs (paths or DataFrames) and return it loaded.

    As ``rekko pipeline`` builds it: the same validation and errors, the same
    stages and tuning, the same staged and locked write with its manifest. The
    set goes to ``out/data/`` and ``out/matrix/`` under the seed's file names
    (``out="."``: where ``rekko pipeline`` writes by default). ``config``:
    a :class:`rekko.config.PipelineConfig` (default: the CLI's defaults).
    ``engine="dask"`` needs all three inputs as paths (the cluster reads them).
    Nothing is fetched from a movie API here (``rekko enrich`` does that).
    """
    for role, value in zip(_ROLES, (interactions, movies, ratings), strict=True):
        _check_input(role, value)
    config = config or PipelineConfig()
    if engine not in ENGINES:
        raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    layout = artifact_layout(out)
    if not any(_is_frame(v) for v in (interactions, movies, ratings)):
        paths = PipelinePaths(Path(interactions), Path(movies), Path(ratings),  # type: ignore[arg-type]
                              *(getattr(layout, f) for f in ("movies_rd", "int_coef", "movies_upd",
                                                             "interactions_upd", "sim_md", "sim_desc")))
        run_pipeline(paths, config, engine=engine)
        return Recommender.load(paths)
    if engine != "local":
        raise ConfigError(f"engine {engine!r} reads its inputs from paths: give paths, or use engine='local' "
                          "for DataFrames")
    family(config.collaborative, engine)
    given = dict(zip(_ROLES, (interactions, movies, ratings), strict=True))
    # a role given as a frame has no file: its placeholder names it in messages and is never read
    paths = PipelinePaths(*(Path(f"<{role} DataFrame>") if _is_frame(v) else Path(v)  # type: ignore[arg-type]
                            for role, v in given.items()),
                          *(getattr(layout, f) for f in ("movies_rd", "int_coef", "movies_upd", "interactions_upd",
                                                         "sim_md", "sim_desc")))
    check_outputs(paths)  # before the computation, as the CLI
    files = input_fingerprints(paths) if not _is_frame(interactions) else {
        role: {"path": str(v), "sha256": sha256_file(v)} for role, v in given.items() if not _is_frame(v)}
    inputs = {role: _frame_fingerprint(v) if _is_frame(v) else files[role] for role, v in given.items()}
    frames = _validated(interactions, movies, ratings)
    result = compute(*frames, config, paths=paths)
    write_result(result, paths, result.config or config, inputs, engine="local")
    return Recommender.load(paths)


def evaluate(interactions: Input, movies: Input, ratings: Input, *, k: int = 10, split: str = "per-user",
             models: tuple[str, ...] | None = None, config: EvalConfig | None = None) -> EvaluationResult:
    """``rekko evaluate`` on paths or DataFrames: split by time, fit on train, compare the models on test.

    The result's ``table`` is a DataFrame (model x metric); ``to_dict()`` the
    report ``rekko evaluate --json`` writes. ``config`` (an
    :class:`rekko.evaluation.run.EvalConfig`) overrides ``k``, ``split`` and
    ``models``.
    """
    for role, value in zip(_ROLES, (interactions, movies, ratings), strict=True):
        _check_input(role, value)
    if config is None:
        config = EvalConfig(split=split, k=k) if models is None else EvalConfig(split=split, k=k,
                                                                                 models=tuple(models))
    return run_evaluation(*_validated(interactions, movies, ratings), config)


def _artifact_paths(source: Source) -> ArtifactPaths:
    """The artifact paths of a folder (the seed's layout, or every file side by side) or of a paths object."""
    if isinstance(source, ArtifactPaths):
        return source
    if isinstance(source, PipelinePaths):
        return source.artifacts()
    if not isinstance(source, (str, os.PathLike)):
        raise ConfigError(f"Recommender.load takes a folder or rekko.paths.ArtifactPaths, got {type(source).__name__}")
    root = Path(source)
    seed = artifact_layout(root).artifacts()
    if (root / MANIFEST_NAME).is_file() and not seed.manifest.is_file():  # one flat folder, the seed's file names
        return ArtifactPaths(*(root / Path(getattr(seed, f)).name
                               for f in ("interactions_upd", "movies_upd", "int_coef", "sim_md", "sim_desc")))
    return seed


class Recommender:
    """A loaded artifact set, asked in DataFrames.

    :meth:`load` reads a set (every file verified against its manifest);
    :meth:`recommend`, :meth:`similar` and :meth:`recommend_all` answer with
    DataFrames. ``ranker`` is the engine underneath
    (:class:`rekko.recommend.Recommender`, the one the CLI and the server use:
    the same answers, bit for bit).
    """

    def __init__(self, ranker: Ranker) -> None:
        self.ranker = ranker

    @classmethod
    def load(cls, source: Source = ".") -> Recommender:
        """Load the artifact set of ``source``: a folder (``build_artifacts``' ``out``, a working directory laid
        out like the seed's with ``data/`` and ``matrix/``, or one folder holding every file) or an
        :class:`~rekko.paths.ArtifactPaths`."""
        # one answer at a time in a notebook: small users are ranked interpreted, no compiler start (same bits)
        return cls(Ranker(load_artifacts(_artifact_paths(source)), engine="auto"))

    @property
    def manifest(self) -> Manifest | None:
        """The set's manifest: parameters, counts, inputs, every artifact's digest."""
        return self.ranker.artifacts.manifest

    @property
    def users(self) -> np.ndarray:
        """The user ids with a watch history in the set (sorted)."""
        return self.ranker.artifacts.user_ids

    @property
    def movies(self) -> pd.DataFrame:
        """The catalogue: movie_id, title and movie_score, in the set's order."""
        a = self.ranker.artifacts
        return pd.DataFrame({C.MOVIE: a.movie_ids, C.TITLE: a.titles, C.MOVIE_SCORE: a.movie_score})

    def recommend(self, user_id: int, n: int = 10) -> pd.DataFrame:
        """Top-``n`` unwatched movies for one user, best first.

        The columns of ``rekko recommend --format csv``: user_id, rank,
        movie_id, title, score, based_on, based_on_title, the score's
        components, cold_start (True for a user with no history: the
        best-rated popular movies).
        """
        recs = self.ranker.recommend(user_id, n)
        items = recs.items.assign(**{C.USER: recs.user_id, C.COLD_START: recs.cold_start})
        return items[[C.USER] + [c for c in items.columns if c != C.USER]]

    def similar(self, movie_id: str, n: int = 10, kind: str = "blend") -> pd.DataFrame:
        """The ``n`` movies most similar to one movie: rank, movie_id, title, score.

        ``kind="blend"``: the similarity recommendations are scored with (the
        set's blend of metadata, description and co-watching); ``"md"``,
        ``"desc"`` or ``"cf"``: one of them alone. An unknown movie is a
        :class:`~rekko.exceptions.ConfigError`.
        """
        found = self.ranker.similar(movie_id, n, kind)
        return found.assign(**{C.RANK: np.arange(1, len(found) + 1)})[[C.RANK, C.MOVIE, C.TITLE, C.SCORE]]

    def recommend_all(self, n: int = 10, users: object | None = None) -> pd.DataFrame:
        """Top-``n`` for every known user (or for ``users``; unknown ones get the cold-start list):
        user_id, movie_id, score, rank."""
        ids = None if users is None else np.asarray(users, dtype=np.int64)
        return self.ranker.recommend_all(n, user_ids=ids)

    def __repr__(self) -> str:
        a = self.ranker.artifacts
        return f"<rekko.Recommender: {len(a.movie_ids)} movies, {len(a.user_ids)} users, similarities {list(a.sims)}>"
