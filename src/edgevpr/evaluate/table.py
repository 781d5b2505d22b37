"""Results as an aligned text table: recall and cost side by side."""

from __future__ import annotations

COLUMNS = [
    ("model", lambda r: r.get("label") or f"{r['model']['backbone']}+{r['model']['aggregator']}"),
    ("R@1", lambda r: f"{r['recall']['1']:.1f}"),
    ("R@5", lambda r: f"{r['recall']['5']:.1f}"),
    ("R@10", lambda r: f"{r['recall']['10']:.1f}"),
    ("R@20", lambda r: f"{r['recall']['20']:.1f}"),
    ("dim", lambda r: str(r["model"]["descriptor_dim"])),
    ("params M", lambda r: f"{r['cost']['params'] / 1e6:.2f}"),
    ("GFLOPs", lambda r: f"{r['cost']['flops'] / 1e9:.2f}"),
    ("model MB", lambda r: f"{r['cost']['model_bytes'] / 1e6:.2f}"),
    ("extract ms", lambda r: f"{r['cost']['extraction_ms']:.1f}"),
    ("match ms", lambda r: f"{r['cost']['matching_ms']:.3f}"),
    ("DB MB", lambda r: f"{r['cost']['database_bytes'] / 1e6:.2f}"),
    ("total ms", lambda r: f"{r['cost']['total_ms']:.1f}"),
]


def format_table(results: list[dict]) -> str:
    rows = [[name for name, _ in COLUMNS]] + [[cell(r) for _, cell in COLUMNS] for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.rjust(w) if i else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
