"""A localization report: one self-contained HTML page of a localized stream (the JSON lines
of ``edgevpr localize``) against its map, drawn with matplotlib (the ``report`` extra).

It shows the map's positions and where each frame was placed (correct or wrong when true
positions are known: correct means the top-1 lies within ``threshold_m`` of the frame's true
position; hollow where the answer fell below the map's known/unknown threshold), the error
in metres over time, the top-1 precision-recall curve as the known/unknown threshold moves
(VPR-Bench's), the per-frame latency over time, and the worst failures as query | top-1 |
true place. Only the worst frames' thumbnails are kept while a
stream runs, so memory stays flat however long the recording is."""

from __future__ import annotations

import base64
import heapq
import html
import io
import math
from pathlib import Path

import numpy as np
from PIL import Image

from edgevpr.atomic import atomic_path
from edgevpr.errors import ConfigError

THUMB_WIDTH = 240
COLOURS = {"correct": "#2ca02c", "wrong": "#d62728", "no truth": "#1f77b4"}


def _thumbnail(image) -> bytes:
    picture = (Image.open(image) if isinstance(image, (str, Path)) else image).convert("RGB")
    picture.thumbnail((THUMB_WIDTH, THUMB_WIDTH))
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


class LocalizationReport:
    """Collects a stream's answers (``add``) and writes the page (``write``)."""

    def __init__(self, map_, threshold_m: float = 25.0, worst: int = 6):
        if not threshold_m > 0:
            raise ConfigError(f"--report-threshold-m must be > 0, got {threshold_m}")
        self.map, self.threshold_m, self.worst = map_, threshold_m, worst
        self.kind = map_.manifest["positions"]["kind"]
        self.rows: list[dict] = []
        self._worst: list[tuple[float, int, bytes]] = []  # a min-heap of (error, frame number, query thumbnail)

    def add(self, answer: dict, image=None) -> None:
        top = answer["matches"][0] if answer["matches"] else None
        error = answer.get("error_m")
        row = {
            "time": answer.get("timestamp", len(self.rows)),
            "placed": top["position"] if top else None,
            "score": top["score"] if top else -math.inf,
            "known": answer["known"],
            "truth": answer.get("position"),
            "error": error,
            "ms": answer["ms"]["total"],
            "query": answer["query"],
            "top": top["name"] if top else None,
        }
        self.rows.append(row)
        if error is not None and error > self.threshold_m and image is not None:  # a failure for the gallery
            item = (error, len(self.rows) - 1, _thumbnail(image))
            if len(self._worst) < self.worst:
                heapq.heappush(self._worst, item)
            elif error > self._worst[0][0]:
                heapq.heapreplace(self._worst, item)

    def outcome(self, row: dict) -> str:
        if row["error"] is None:
            return "no truth"
        return "correct" if row["error"] <= self.threshold_m else "wrong"

    def _scatter(self, axes, points: list, outcome: str, prefix: str = "") -> None:
        """Known answers filled, unknown ones (below the map's threshold) hollow."""
        for known in (True, False):
            chosen = [xy for xy, row in points if row["known"] == known]
            if not chosen:
                continue
            colour = COLOURS[outcome]
            style = {"c": colour} if known else {"facecolors": "none", "edgecolors": colour}
            label = f"{prefix}{outcome}" + ("" if known else ", unknown")
            axes.scatter(*np.array(chosen, dtype=float).T, s=16, label=label, **style)

    # -- the figures ---------------------------------------------------------------------------
    def _trajectory(self, plt):
        figure, axes = plt.subplots(figsize=(7, 5.5))
        positions = np.array([p[:2] for p in self.map.positions], dtype=float)
        if self.kind == "frame":
            axes.set_xlabel("frame of the stream")
            axes.set_ylabel("map frame")
            for outcome, colour in COLOURS.items():
                chosen = [
                    (i, r["placed"][0]) for i, r in enumerate(self.rows) if r["placed"] and self.outcome(r) == outcome
                ]
                if chosen:
                    axes.scatter(*zip(*chosen), s=10, c=colour, label=outcome)
        else:
            axes.scatter(positions[:, 0], positions[:, 1], s=6, c="#bbbbbb", label="map")
            truth = np.array([r["truth"][:2] for r in self.rows if r["truth"]], dtype=float)
            if len(truth):
                axes.plot(truth[:, 0], truth[:, 1], "-", c="black", lw=1, label="true path")
            for outcome in COLOURS:
                placed = [(r["placed"][:2], r) for r in self.rows if r["placed"] and self.outcome(r) == outcome]
                self._scatter(axes, placed, outcome, "placed: ")
            axes.set_xlabel("x (m)")
            axes.set_ylabel("y (m)")
            axes.set_aspect("equal", adjustable="datalim")
        axes.set_title("Where each frame was placed")
        axes.legend(fontsize=8, loc="best")
        return figure

    def _error(self, plt):
        figure, axes = plt.subplots(figsize=(7, 3))
        pairs = [(r["time"], r["error"]) for r in self.rows if r["error"] is not None]
        axes.plot(*zip(*pairs), ".-", ms=3, lw=0.8)
        axes.axhline(self.threshold_m, c=COLOURS["wrong"], ls="--", lw=1, label=f"{self.threshold_m:g} m")
        axes.set_yscale("symlog", linthresh=max(self.threshold_m, 1.0))
        axes.set_xlabel("time (s)" if "timestamp" in self._keys() else "frame")
        axes.set_ylabel("top-1 error (m)")
        axes.set_title("Error over time")
        axes.legend(fontsize=8)
        return figure

    def _precision_recall(self, plt):
        figure, axes = plt.subplots(figsize=(4.5, 4))
        judged = [r for r in self.rows if r["error"] is not None]
        order = sorted(judged, key=lambda r: -r["score"])
        correct = np.array([r["error"] <= self.threshold_m for r in order], dtype=float)
        accepted = np.arange(1, len(order) + 1)
        axes.plot(np.cumsum(correct) / len(order), np.cumsum(correct) / accepted, lw=1.5)
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1.02)
        axes.set_xlabel("recall")
        axes.set_ylabel("precision")
        axes.set_title("Top-1 precision-recall")
        return figure

    def _latency(self, plt):
        figure, axes = plt.subplots(figsize=(7, 3))
        values = [r["ms"] for r in self.rows]
        axes.plot(values, lw=0.8)
        axes.axhline(float(np.median(values)), c="black", ls="--", lw=1, label=f"p50 {np.median(values):.1f} ms")
        axes.set_xlabel("frame")
        axes.set_ylabel("ms per frame")
        axes.set_title("Latency over time")
        axes.legend(fontsize=8)
        return figure

    def _keys(self) -> set:
        return {"timestamp"} if self.rows and isinstance(self.rows[0]["time"], float) else set()

    # -- the page ------------------------------------------------------------------------------
    def _map_image(self, name: str | None) -> str:
        if name is None:
            return "<div class=missing>no match</div>"
        index = self.map.names.index(name)
        path = Path(self.map.sources[index]) / name
        if not path.is_file():
            return f"<div class=missing>{html.escape(name)}<br>(image not found)</div>"
        return _img(_thumbnail(path), name)

    def _true_place(self, row: dict) -> str | None:
        positions = np.array([p[:2] for p in self.map.positions], dtype=float)
        nearest = int(np.argmin(np.hypot(*(positions - np.array(row["truth"][:2], dtype=float)).T)))
        return self.map.names[nearest]

    def _gallery(self) -> str:
        if not self._worst:
            return "<p>No failure with a query image to show.</p>"
        rows = []
        for error, number, query in sorted(self._worst, reverse=True):
            row = self.rows[number]
            cells = [
                _img(query, row["query"]),
                self._map_image(row["top"]),
                self._map_image(self._true_place(row)),
            ]
            caption = f"{html.escape(str(row['query']))}: {error:.1f} m off, score {row['score']:.3f}"
            rows.append(f"<tr><td>{'</td><td>'.join(cells)}</td></tr><tr><td colspan=3>{caption}</td></tr>")
        head = "<tr><th>query</th><th>top-1</th><th>true place</th></tr>"
        return f"<table class=gallery>{head}{''.join(rows)}</table>"

    def _summary(self) -> str:
        judged = [r for r in self.rows if r["error"] is not None]
        totals = np.array([r["ms"] for r in self.rows])
        p50, p90, p99 = np.percentile(totals, [50, 90, 99])
        parts = [f"{len(self.rows)} frames", f"latency p50 / p90 / p99 {p50:.1f} / {p90:.1f} / {p99:.1f} ms"]
        parts.append(f"{sum(r['known'] for r in self.rows)} known")
        if judged:
            within = [r for r in judged if self.outcome(r) == "correct"]
            median = float(np.median([r["error"] for r in judged]))
            parts += [
                f"top-1 within {self.threshold_m:g} m: {100 * len(within) / len(judged):.1f} %",
                f"correct and known: {100 * sum(r['known'] for r in within) / len(judged):.1f} %",
                f"median error {median:.1f} m",
            ]
        return " &middot; ".join(parts)

    def write(self, path: str | Path, title: str = "Localization report") -> Path:
        if not self.rows:
            raise ConfigError("no localized frames to report")
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib import pyplot as plt

        figures = [self._trajectory(plt)]
        if any(r["error"] is not None for r in self.rows):
            figures += [self._error(plt), self._precision_recall(plt)]
        figures.append(self._latency(plt))
        images = []
        for figure in figures:
            figure.tight_layout()
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", dpi=90)
            plt.close(figure)
            images.append(_img(buffer.getvalue(), "figure", "image/png"))
        page = PAGE.format(
            title=html.escape(title),
            map=html.escape(str(self.map.folder)),
            summary=self._summary(),
            figures="".join(f"<div class=figure>{image}</div>" for image in images),
            gallery=self._gallery(),
        )
        path = Path(path)
        with atomic_path(path) as temporary:
            temporary.write_text(page)
        return path


def _img(data: bytes, alt: str, mime: str = "image/jpeg") -> str:
    encoded = base64.b64encode(data).decode()
    return f'<img alt="{html.escape(str(alt))}" src="data:{mime};base64,{encoded}">'


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1.5em; color: #222; }}
.figure {{ display: inline-block; margin: 0.5em; vertical-align: top; }}
.gallery td {{ padding: 4px; text-align: center; font-size: 0.85em; }}
.missing {{ width: 240px; height: 120px; background: #eee; display: flex; align-items: center;
            justify-content: center; font-size: 0.8em; }}
</style></head><body>
<h1>{title}</h1>
<p>Map: {map}</p>
<p id="summary">{summary}</p>
<div id="figures">{figures}</div>
<h2>Worst failures</h2>
<div id="gallery">{gallery}</div>
</body></html>
"""


def report_from_lines(
    lines_file: str | Path, map_dir: str | Path, out: str | Path, threshold_m: float, images: str | None
) -> Path:
    """The report of a JSON-lines file already written; ``images`` holds the queries, by name,
    for the gallery (a recording's frames are not files: localize --report keeps them)."""
    import json

    from edgevpr.maps.map import Map

    report = LocalizationReport(Map.load(map_dir), threshold_m)
    for number, line in enumerate(Path(lines_file).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            answer = json.loads(line)
            query = Path(images) / answer["query"] if images else None
            report.add(answer, query if query is not None and query.is_file() else None)
        except (json.JSONDecodeError, KeyError, TypeError):
            raise ConfigError(f"{lines_file}: line {number} is not a JSON line of `edgevpr localize`") from None
    return report.write(out, title=f"Localization report: {Path(lines_file).name}")
