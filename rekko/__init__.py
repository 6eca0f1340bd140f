"""rekko: movie recommendations from watch history, metadata and descriptions."""

__version__ = "1.0.0"
