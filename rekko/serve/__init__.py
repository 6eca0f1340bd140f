"""``rekko serve``: the recommender over HTTP (FastAPI + uvicorn, the ``rekko[serve]`` extra).

The artifacts are loaded and verified once into an immutable snapshot; a
watcher swaps in a new snapshot when a pipeline run writes new artifacts, so a
request always sees one consistent generation. See :mod:`rekko.serve.state`.
"""

from __future__ import annotations

__all__ = ["create_app"]


def __getattr__(name: str):  # lazy: importing rekko.serve must not need FastAPI
    if name == "create_app":
        from rekko.serve.app import create_app

        return create_app
    raise AttributeError(name)
