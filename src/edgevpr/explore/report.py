"""``edgevpr report``: one self-contained HTML page (no network needed to view it) with the
stored runs: Pareto fronts of recall against model bytes, extraction latency, total latency
and database memory at a chosen map size, recall against descriptor size and precision,
per-layer bits of mixed-precision runs, the design-rule checks, and a sortable table."""

from __future__ import annotations

import html
import json
from importlib import resources
from pathlib import Path

from edgevpr.atomic import atomic_path
from edgevpr.explore.recommend import timed_on_busy_machine
from edgevpr.explore.rules import check_all
from edgevpr.explore.store import Store

ROW_FIELDS = (
    "key",
    "dataset",
    "protocol_name",
    "backbone",
    "aggregator",
    "descriptor_dim",
    "descriptor_bits",
    "index_fixed_bytes",
    "rerank_ms",
    "patch_bytes",
    "image_size",
    "precision",
    "runtime",
    "index_spec",
    "recall_1",
    "recall_5",
    "recall_10",
    "params",
    "flops",
    "model_bytes",
    "extraction_ms",
    "matching_ms",
    "num_database",
    "database_bytes",
    "total_ms",
    "cpu",
    "threads",
)

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; }
.plots > div { border: 1px solid #ddd; padding: 0.5em; }
h3 { font-size: 0.95em; margin: 0.2em 0; }
table { border-collapse: collapse; font-size: 0.85em; margin-top: 1em; }
th, td { border: 1px solid #ccc; padding: 2px 6px; text-align: right; }
th { cursor: pointer; background: #f3f3f3; user-select: none; }
.legend span { margin-right: 1em; }
"""


def _rows(store: Store) -> list[dict]:
    rows = []
    for row in store.rows():
        item = {name: row[name] for name in ROW_FIELDS}
        extra = json.loads(row["extra_json"] or "{}")
        item["layer_bits"] = extra.get("layer_bits")
        environment = json.loads(row["environment_json"] or "{}")
        item["int8_kernels"] = environment.get("int8_kernels")  # None: stored before kernels were recorded
        item["cpu_flags"] = environment.get("cpu_flags")
        item["busy"] = timed_on_busy_machine(row)  # its latency was measured while other work ran
        item["auc_pr"] = json.loads(row.get("metrics_json") or "{}").get("auc_pr")
        item["descriptor_bits"] = item["descriptor_bits"] or 32  # rows stored before the column existed
        item["index_fixed_bytes"] = item["index_fixed_bytes"] or 0
        item["rerank_ms"] = item["rerank_ms"] or 0.0
        item["patch_bytes"] = item["patch_bytes"] or 0
        rows.append(item)
    return rows


def render(store: Store, map_size: int = 100_000) -> str:
    rows = _rows(store)
    rules = check_all(store.rows())
    payload = {"rows": rows, "map_size": map_size, "datasets": sorted({r["dataset"] for r in rows})}
    data = json.dumps(payload).replace("</", "<\\/")
    script = resources.files("edgevpr.explore").joinpath("report_page.js").read_text()
    rule_items = "".join(
        f"<li>{html.escape(r['claim'])}: <b>{html.escape(r['verdict'])}</b>"
        + (f" ({r['pairs']} pairs, mean R@1 difference {r['mean_recall1_difference']:+.1f})" if r["pairs"] else "")
        + "</li>"
        for r in rules
    )
    machines = sorted(
        {(r["cpu"] or "?", r["int8_kernels"] or "kernels not recorded", ", ".join(r["cpu_flags"] or [])) for r in rows}
    )
    machine_items = "".join(
        f"<li>{html.escape(cpu)}: int8 kernels {html.escape(family)}"
        + (f" ({html.escape(flags)})" if flags else "")
        + "</li>"
        for cpu, family, flags in machines
    )
    legend = "".join(
        f'<span style="color:{c}">&#9679; {p}</span>'
        for p, c in (
            ("fp32", "#1f77b4"),
            ("fp16", "#2ca02c"),
            ("int8", "#d62728"),
            ("int4", "#9467bd"),
            ("mixed", "#ff7f0e"),
        )
    )
    plots = "".join(
        f'<div id="{name}"></div>'
        for name in ("p-bytes", "p-extract", "p-total", "p-db", "p-dim", "p-precision", "p-descbits", "p-bits")
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>edgevpr report</title><style>{STYLE}</style></head>
<body>
<h1>edgevpr report</h1>
<p>{len(rows)} runs from <code>{html.escape(str(store.path))}</code>. Dashed lines are Pareto fronts
(higher recall, lower cost). Hollow points were timed while other work kept the machine busy.
Matching time and database memory are projected linearly from the
measured map size to N. Hover a point for its configuration; click a column to sort.</p>
<p>Dataset <select id="dataset"></select> &nbsp; map size N <input id="mapsize" type="number" min="1" step="1000">
<span class="legend">{legend}</span></p>
<div class="plots">{plots}</div>
<h2>Machines</h2><ul id="machines">{machine_items}</ul>
<h2>Design rules</h2><ul id="rules">{rule_items}</ul>
<h2>Runs</h2><table id="runs"></table>
<script type="application/json" id="edgevpr-data">{data}</script>
<script>{script}</script>
</body></html>
"""


def write_report(store: Store, out: str | Path, map_size: int = 100_000) -> Path:
    out = Path(out)
    with atomic_path(out) as temporary:
        temporary.write_text(render(store, map_size))
    return out
