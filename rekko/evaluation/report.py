"""Outputs of ``rekko evaluate``: a JSON file and one self-contained HTML report.

The report draws one small bar chart per metric as inline SVG (no plotting
library, no script, no external file), so it opens anywhere and can be
attached to a ticket as is.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

import pandas as pd

from rekko.evaluation.run import EvaluationResult
from rekko.io import atomic_open

_PALETTE = ("#8c8c8c", "#b07aa1", "#59a14f", "#f28e2b", "#4e79a7", "#e15759", "#76b7b2", "#edc948")
_LABELS = {
    "hit_rate": "HitRate",
    "precision": "Precision",
    "recall": "Recall",
    "ndcg": "NDCG",
    "map": "MAP",
    "mrr": "MRR",
    "coverage": "Catalog coverage",
    "novelty": "Novelty (mean IUF, bits)",
    "diversity": "Intra-list diversity (genres)",
}


def write_json(result: EvaluationResult, path: Path) -> None:
    with atomic_open(path, "w", encoding="utf-8") as fh:
        json.dump(result.to_dict(), fh, indent=2, ensure_ascii=False)
        fh.write("\n")


def _bar_chart(title: str, values: pd.Series, colors: dict[str, str]) -> str:
    width, bar_h, gap, label_w, value_w = 360, 18, 6, 110, 60
    height = len(values) * (bar_h + gap) + 28
    finite = [v for v in values if v is not None and math.isfinite(v)]
    top = max(finite, default=0.0) or 1.0
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width + label_w + value_w}" height="{height}" '
        f'role="img" aria-label="{html.escape(title)}">',
        f'<text x="0" y="14" font-size="13" font-weight="bold">{html.escape(title)}</text>',
    ]
    for i, (model, value) in enumerate(values.items()):
        y = 24 + i * (bar_h + gap)
        ok = value is not None and math.isfinite(value)
        w = max(0.0, width * (value / top)) if ok else 0.0
        parts.append(f'<text x="0" y="{y + 13}" font-size="12">{html.escape(str(model))}</text>')
        parts.append(f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{colors[model]}"/>')
        shown = f"{value:.4f}" if ok else "n/a"
        parts.append(f'<text x="{label_w + w + 4:.1f}" y="{y + 13}" font-size="12">{shown}</text>')
    parts.append("</svg>")
    return "".join(parts)


def render_html(result: EvaluationResult) -> str:
    """The whole report as one HTML string."""
    k = result.config.k
    table = result.table
    colors = {m: _PALETTE[i % len(_PALETTE)] for i, m in enumerate(table.index)}
    charts = "\n".join(
        f'<div class="chart">{_bar_chart(f"{_LABELS.get(c, c)}@{k}", table[c], colors)}</div>' for c in table.columns
    )
    shown = table.rename(columns={c: f"{_LABELS.get(c, c)}@{k}" for c in table.columns})
    best = {c: table[c].idxmax() for c in table.columns}
    rows = []
    for model, row in table.iterrows():
        cells = "".join(f'<td class="{"best" if best[c] == model else ""}">{row[c]:.4f}</td>' for c in table.columns)
        rows.append(f"<tr><th>{html.escape(str(model))}</th>{cells}</tr>")
    head = "".join(f"<th>{html.escape(c)}</th>" for c in shown.columns)
    d = result.to_dict()
    pre = lambda obj: html.escape(json.dumps(obj, indent=2, ensure_ascii=False))  # noqa: E731
    models = "".join(f"<li><b>{html.escape(m)}</b>: {html.escape(t)}</li>" for m, t in d["descriptions"].items())
    total = result.seconds.get("total", 0.0)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>rekko evaluation</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: right; }}
th:first-child {{ text-align: left; }}
td.best {{ font-weight: bold; background: #eef5ff; }}
.charts {{ display: flex; flex-wrap: wrap; gap: 1.5em; }}
pre {{ background: #f6f6f6; padding: 1em; overflow-x: auto; }}
</style></head><body>
<h1>rekko evaluation</h1>
<p>{html.escape(result.split.description)}; k = {k}; {d["split"]["test_users"]} test users,
{d["split"]["test_pairs"]} test pairs, {d["split"]["train_rows"]} train rows; whole run {total:.1f} s.</p>
<table><thead><tr><th>model</th>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>
<div class="charts">{charts}</div>
<h2>Models</h2><ul>{models}</ul>
<h2>rekko's parameters</h2><pre>{pre(d["parameters"])}</pre>
<h2>Split</h2><pre>{pre(d["split"])}</pre>
<h2>Timings (s)</h2><pre>{pre(d["seconds"])}</pre>
</body></html>
"""


def write_html(result: EvaluationResult, path: Path) -> None:
    with atomic_open(path, "w", encoding="utf-8") as fh:
        fh.write(render_html(result))
