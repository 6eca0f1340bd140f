"""Importers: turn public data sets into rekko's three input files."""

from rekko.importers.movielens import ImportResult, import_movielens, write_import

__all__ = ["ImportResult", "import_movielens", "write_import"]
