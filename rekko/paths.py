"""The seed's file layout: nine pipeline paths and five recommend paths.

Every subcommand defaults to these, so rekko runs with no path arguments in a
working directory laid out like the seed's (``data/`` and ``matrix/``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path

MANIFEST_NAME = "manifest.json"


class _BesideSimilarity:
    """Files that live beside ``cos_sim_md.pkl``: the manifest and the collaborative matrix."""

    sim_md: Path

    @property
    def manifest(self) -> Path:
        return self.sim_md.parent / MANIFEST_NAME

    @property
    def sim_cf(self) -> Path:
        """Collaborative (co-watching) similarity, beside the other two."""
        return self.sim_md.parent / "cos_sim_cf.pkl"


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
