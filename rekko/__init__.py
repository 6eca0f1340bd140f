"""rekko: movie recommendations from watch history, metadata and descriptions.

The public API (:mod:`rekko.api`): :func:`build_artifacts`, :class:`Recommender`
and :func:`evaluate`. They load on first use, so ``import rekko`` (and the
CLI's start) stays free of pandas and numpy.
"""

__version__ = "1.0.0"

__all__ = ["Recommender", "__version__", "build_artifacts", "evaluate"]

_API = frozenset({"Recommender", "build_artifacts", "evaluate"})


def __getattr__(name: str) -> object:
    if name in _API:
        from rekko import api  # the library's weight: loaded when a public name is first used

        value = getattr(api, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rekko' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _API)
