"""Recommendations for people and files: the CLI's table/csv/json, ``pred(<user>).csv``, batch output.

Presentation only: nothing here ranks or scores.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from rekko.columns import Columns as C
from rekko.exceptions import ConfigError, printable
from rekko.io import atomic_open, atomic_path, neutralise_formulas
from rekko.recommend.batch_output import BATCH_SCHEMA

BATCH_FORMATS = (".parquet", ".pq", ".csv")


def format_recommendations(items: pd.DataFrame, fmt: str) -> str:
    """One user's list as ``table`` (for a terminal), ``csv`` or ``json``."""
    if fmt == "csv":
        return neutralise_formulas(items).to_csv(index=False)
    if fmt == "json":
        return items.to_json(orient="records", force_ascii=False, indent=2) + "\n"
    shown = items.copy()
    for col in shown.columns:
        if pd.api.types.is_float_dtype(shown[col]):
            shown[col] = shown[col].map(lambda v: f"{v:.4f}")
    shown = shown.drop(columns=[C.BASED_ON], errors="ignore").fillna("—")
    # for a terminal: a title's control characters (ESC [ 2 J, ESC ] 0 ; ... BEL, NUL) shown, not obeyed
    shown = shown.map(lambda v: printable(v) if isinstance(v, str) else v)
    shown.columns = [printable(c) for c in shown.columns]
    return printable(shown.to_string(index=False)) + "\n"


def pred_path(pred_dir: Path, user_id: int) -> Path:
    """Where the seed's ``pred(<user>).csv`` goes."""
    return Path(pred_dir) / f"pred({user_id}).csv"


def write_pred_csv(items: pd.DataFrame, pred_dir: Path, user_id: int) -> Path:
    """The seed's ``pred/pred(<user>).csv``, written atomically."""
    path = pred_path(pred_dir, user_id)
    with atomic_open(path, "w", encoding="utf-8", newline="") as fh:
        neutralise_formulas(items).to_csv(fh, index=False)
    return path


def write_batch(blocks: Iterable[pd.DataFrame], path: Path) -> tuple[int, int]:
    """Write batch recommendations block by block (parquet or csv), atomically; returns (rows, users).

    Memory holds one block at a time however many users there are; the file
    appears only when complete.
    """
    ext = path.suffix.lower()
    if ext not in BATCH_FORMATS:
        raise ConfigError(f"{path}: batch output must end in one of {', '.join(BATCH_FORMATS)}, got '{path.suffix}'")
    rows = users = 0
    schema = BATCH_SCHEMA
    with atomic_path(path) as tmp:
        if ext == ".csv":
            with open(tmp, "w", encoding="utf-8", newline="") as fh:
                header = True
                for block in blocks:
                    neutralise_formulas(block).to_csv(fh, index=False, header=header)
                    header = False
                    rows, users = rows + len(block), users + block[C.USER].nunique()
                if header:
                    fh.write(",".join(schema.names) + "\n")
        else:
            with pq.ParquetWriter(tmp, schema) as writer:
                for block in blocks:
                    writer.write_table(pa.Table.from_pandas(block, schema=schema, preserve_index=False))
                    rows, users = rows + len(block), users + block[C.USER].nunique()
    return rows, users
