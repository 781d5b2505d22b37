"""Results as an aligned text table: recall and cost side by side."""

from __future__ import annotations

MODEL = ("model", lambda r: r.get("label") or f"{r['model']['backbone']}+{r['model']['aggregator']}")
COST_COLUMNS = [
    ("dim", lambda r: str(r["model"]["descriptor_dim"])),
    ("params M", lambda r: f"{r['cost']['params'] / 1e6:.2f}"),
    ("GFLOPs", lambda r: f"{r['cost']['flops'] / 1e9:.2f}"),
    ("model MB", lambda r: f"{r['cost']['model_bytes'] / 1e6:.2f}"),
    ("extract ms", lambda r: f"{r['cost']['extraction_ms']:.1f}"),
    ("match ms", lambda r: f"{r['cost']['matching_ms']:.3f}"),
    ("DB MB", lambda r: f"{r['cost']['database_bytes'] / 1e6:.2f}"),
    ("total ms", lambda r: f"{r['cost']['total_ms']:.1f}"),
]


def _recall_column(n: str):
    return f"R@{n}", lambda r: f"{r['recall'][n]:.1f}" if n in r["recall"] else "-"


def format_table(results: list[dict]) -> str:
    """One row per result: its Recall@N for every N any result has (``eval --recall-at``), then the cost block."""
    ns = sorted({n for r in results for n in r["recall"]}, key=int)
    columns = [MODEL, *(_recall_column(n) for n in ns), *COST_COLUMNS]
    rows = [[name for name, _ in columns]] + [[cell(r) for _, cell in columns] for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns))]
    lines = [
        "  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))) for row in rows
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
