"""The seed's file layout: nine pipeline paths and five recommend paths.

Every subcommand defaults to these, so rekko runs with no path arguments in a
working directory laid out like the seed's (``data/`` and ``matrix/``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path

MANIFEST_NAME = "manifest.json"
#: The lock a pipeline holds while it writes an artifact set (see :mod:`rekko.locking`).
LOCK_NAME = ".rekko.lock"
#: The movie-API cache's file name, beside the ratings file (P3) the pipeline reads.
CACHE_NAME = "api_cache.parquet"


def default_cache_path(ratings_path: str | Path) -> Path:
    """The API cache lives beside the ratings file the pipeline reads (P3)."""
    return Path(ratings_path).parent / CACHE_NAME
#: The sha256 of every 16 KiB chunk of every artifact, beside the manifest (which hashes it).
CHUNK_TABLE_NAME = "manifest.chunks"


class _BesideSimilarity:
    """Files that live beside ``cos_sim_md.pkl``: the manifest, the collaborative matrix and the lock."""

    sim_md: Path

    @property
    def lock(self) -> Path:
        """Held by the pipeline for its whole write phase; one per artifact set, beside its manifest."""
        return self.sim_md.parent / LOCK_NAME

    @property
    def manifest(self) -> Path:
        return self.sim_md.parent / MANIFEST_NAME

    @property
    def sim_cf(self) -> Path:
        """Collaborative (co-watching) similarity, beside the other two."""
        return self.sim_md.parent / "cos_sim_cf.pkl"

    @property
    def chunk_table(self) -> Path:
        return self.sim_md.parent / CHUNK_TABLE_NAME


def _option(field_name: str) -> str:
    """The CLI option (and P number) that sets a path: ``movies_rd`` -> ``--movies-rd (P4)``."""
    number = [f.name for f in fields(PipelinePaths)].index(field_name) + 1
    return f"--{field_name.replace('_', '-')} (P{number})"


@dataclass(frozen=True)
class PipelinePaths(_BesideSimilarity):
    """P1..P9 of the seed's pipeline ``docker run`` line, in order."""

    interactions: Path = Path("data/interactions.parquet")  # P1
    movies: Path = Path("data/movies_metdata.parquet")  # P2 (the seed's spelling)
    ratings: Path = Path("data/Movies_r_d.xlsx")  # P3
    movies_rd: Path = Path("data/movies_rd.parquet")  # P4
    int_coef: Path = Path("data/int_coef.parquet")  # P5
    movies_upd: Path = Path("data/movies_md_upd.parquet")  # P6
    interactions_upd: Path = Path("data/interactions_upd.parquet")  # P7
    sim_md: Path = Path("matrix/cos_sim_md.pkl")  # P8
    sim_desc: Path = Path("matrix/cos_sim_desc.pkl")  # P9

    def inputs(self) -> dict[str, Path]:
        """P1..P3 by the option that sets them (for messages)."""
        return {_option(name): getattr(self, name) for name in ("interactions", "movies", "ratings")}

    def outputs(self) -> dict[str, Path]:
        """Every file a run writes, by the option that places it: P4..P9, then the three beside --sim-md."""
        named = {_option(name): getattr(self, name)
                 for name in ("movies_rd", "int_coef", "movies_upd", "interactions_upd", "sim_md", "sim_desc")}
        return {**named, "the manifest (beside --sim-md)": self.manifest,
                "cos_sim_cf.pkl (beside --sim-md)": self.sim_cf, "the lock file (beside --sim-md)": self.lock,
                "the chunk table (beside --sim-md)": self.chunk_table}

    def write_locks(self) -> list[Path]:
        """The lock of every folder this run writes into (``.rekko.lock`` in each), in one global order.

        A pipeline holds all of them while it writes: two artifact sets that share files in ``data/``
        but have their own ``matrix/`` folders still exclude each other. Taken in sorted order of the
        resolved folders, so two runs never wait on each other in a circle; the lock beside the manifest
        (:attr:`lock`, the one ``rekko tune`` takes) is one of them.
        """
        folders: dict[str, Path] = {}
        for path in [self.lock, *self.outputs().values()]:  # the manifest's folder first: its name wins
            folders.setdefault(os.path.realpath(path.parent), path.parent)
        return [folders[real] / LOCK_NAME for real in sorted(folders)]

    def artifacts(self) -> ArtifactPaths:
        return ArtifactPaths(
            interactions_upd=self.interactions_upd,
            movies_upd=self.movies_upd,
            int_coef=self.int_coef,
            sim_md=self.sim_md,
            sim_desc=self.sim_desc,
        )

    @classmethod
    def from_strings(cls, values: list[str | None]) -> PipelinePaths:
        """Build from nine optional strings (None keeps the default)."""
        defaults = cls()
        kwargs = {
            f.name: (Path(v) if v else getattr(defaults, f.name)) for f, v in zip(fields(cls), values, strict=True)
        }
        return cls(**kwargs)


@dataclass(frozen=True)
class ArtifactPaths(_BesideSimilarity):
    """P3..P7 of the seed's recommend ``docker run`` line, in order."""

    interactions_upd: Path = Path("data/interactions_upd.parquet")  # P3
    movies_upd: Path = Path("data/movies_md_upd.parquet")  # P4
    int_coef: Path = Path("data/int_coef.parquet")  # P5
    sim_md: Path = Path("matrix/cos_sim_md.pkl")  # P6
    sim_desc: Path = Path("matrix/cos_sim_desc.pkl")  # P7
