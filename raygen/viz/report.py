"""`raygen report DATASET [--out FILE.html]`: one self-contained HTML page about a dataset and its runs.

Plots (inline SVG, no scripts needed to see them): workspace coverage (every episode's gripper path from
above, on the diversity stage's 5 cm grid), viewpoints (where the cameras are and look), quality scores
with the acceptance threshold, reject reasons, seconds per episode by stage over the run, cumulative
cost; then the diversity report's score, distributions and recommendations. Everything comes from the
dataset's own files: the shard records (metrics, cameras), the data parquet (gripper poses),
meta/raygen/rejects/, diversity.json and run.json.
"""

from __future__ import annotations

import html
import json
import logging
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from raygen.datasets import _layout as L
from raygen.datasets.reader import DatasetReader
from raygen.viz.svg import PALETTE, Chart, bar_chart, histogram

logger = logging.getLogger(__name__)

__all__ = ["PLOTS", "write_report"]

PLOTS = ("workspace", "viewpoints", "quality", "rejects", "stages", "cost")
MAX_PATHS = 300
CELL_M = 0.05


def _records(root: Path) -> list[dict[str, Any]]:
    """Every committed episode's shard record, in episode order."""
    out = []
    for entry in L.read_jsonl(root / L.LEDGER):
        rec = L.read_json(root / L.SHARD_RECORD_PATH.format(chunk_index=entry["chunk_index"],
                                                            file_index=entry["file_index"]))
        out.extend(rec["episodes"])
    return out


def _paths(root: Path, episodes: int) -> list[np.ndarray]:
    """Flange positions [T,3] of up to MAX_PATHS episodes, spread over the dataset."""
    keep = set(np.linspace(0, max(episodes - 1, 0), min(episodes, MAX_PATHS)).round().astype(int).tolist())
    paths: dict[int, list[np.ndarray]] = {}
    for f in sorted((root / "data").rglob("*.parquet")):
        t = pq.read_table(f, columns=["episode_index", "gripper.pose"])
        ep = t.column("episode_index").to_numpy()
        pose = np.asarray(t.column("gripper.pose").combine_chunks().flatten()).reshape(-1, 16)
        for e in np.unique(ep):
            if int(e) in keep:
                sel = ep == e
                paths.setdefault(int(e), []).append(pose[sel][:, [3, 7, 11]])
    return [np.concatenate(paths[e]) for e in sorted(paths)]


def _workspace(paths: list[np.ndarray]) -> str:
    pts = np.concatenate(paths) if paths else np.zeros((1, 3))
    lo, hi = pts[:, :2].min(axis=0) - 0.05, pts[:, :2].max(axis=0) + 0.05
    chart = Chart("Workspace coverage (from above)", "x (m, forward)", "y (m, left)", (lo[0], hi[0]), (lo[1], hi[1]),
                  equal=True, css_id="plot-workspace")
    cells = {tuple(c) for c in np.floor(pts[:, :2] / CELL_M).astype(int).tolist()}
    for cx, cy in cells:
        chart.rect(cx * CELL_M, cy * CELL_M, (cx + 1) * CELL_M, (cy + 1) * CELL_M, PALETTE[2], opacity=0.18)
    for i, p in enumerate(paths):
        chart.polyline(p[:, 0], p[:, 1], PALETTE[i % len(PALETTE)], width=1.0, opacity=0.6)
    chart.points([0.0], [0.0], "#000", r=5, label="robot base", shape="triangle")
    chart.legend.append((f"{len(cells)} cells ({CELL_M * 100:.0f} cm) passed over", PALETTE[2]))
    return chart.svg()


def _viewpoints(records: list[dict[str, Any]], reader: DatasetReader, paths: list[np.ndarray]) -> str:
    fixed: dict[str, list[np.ndarray]] = {}
    moving: list[str] = []
    for rec in records:
        for cam, c in rec["cameras"].items():
            if c.get("moving"):
                if cam not in moving:
                    moving.append(cam)
            else:
                fixed.setdefault(cam, []).append(np.asarray(c["pose"], dtype=np.float64))
    xy = [np.zeros(2)] + [p[:3, 3][:2] for ps in fixed.values() for p in ps[:50]]
    if paths:
        xy += list(np.concatenate(paths)[:, :2])
    xy = np.asarray(xy)
    lo, hi = xy.min(axis=0) - 0.15, xy.max(axis=0) + 0.15
    chart = Chart("Viewpoints (cameras from above)", "x (m)", "y (m)", (lo[0], hi[0]), (lo[1], hi[1]), equal=True,
                  css_id="plot-viewpoints")
    if paths:
        pts = np.concatenate(paths)
        chart.points(pts[::7, 0], pts[::7, 1], "#cccccc", r=1.2)
    chart.points([0.0], [0.0], "#000", r=5, label="robot base", shape="triangle")
    for i, (cam, poses) in enumerate(sorted(fixed.items())):
        colour = PALETTE[i % len(PALETTE)]
        for p in poses[:50]:  # a camera's own poses (randomized cameras show as a spread)
            pos, ahead = p[:3, 3], p[:3, 3] + 0.15 * p[:3, 2]
            chart.segment(pos[0], pos[1], ahead[0], ahead[1], colour, width=2)
        chart.points([p[0, 3] for p in poses[:50]], [p[1, 3] for p in poses[:50]], colour, r=5, label=cam)
    if moving:
        ep = reader.episode(0, decode_video=False)
        for j, cam in enumerate(moving):
            colour = PALETTE[(len(fixed) + j) % len(PALETTE)]
            pose = np.asarray(ep.cameras[cam].pose)
            chart.polyline(pose[:, 0, 3], pose[:, 1, 3], colour, width=2, label=f"{cam} (moves; episode 0)")
    return chart.svg()


def _stage_series(records: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    names = sorted({k[len("timing."):-2] for r in records for k in r["metrics"]
                    if k.startswith("timing.") and k.endswith("_s")})
    series = {n: np.array([float(r["metrics"].get(f"timing.{n}_s", np.nan)) for r in records]) for n in names}
    series["backend (host)"] = np.array([float(r["metrics"].get("host.episode_s", np.nan)) for r in records])
    return {k: v for k, v in series.items() if np.isfinite(v).any()}


def _stages(records: list[dict[str, Any]]) -> str:
    series = _stage_series(records)
    top = max([float(np.nanmax(v)) for v in series.values()], default=1.0)
    chart = Chart("Seconds per episode by stage, over the run", "episode (commit order)", "seconds",
                  (0, max(1, len(records) - 1)), (0, top * 1.1), css_id="plot-stages")
    x = np.arange(len(records))
    for i, (name, v) in enumerate(sorted(series.items())):
        chart.polyline(x, v, PALETTE[i % len(PALETTE)], label=name)
    return chart.svg()


def _cost(records: list[dict[str, Any]], run: dict[str, Any]) -> str:
    from raygen.pipelines.stages import spent

    cost_cfg = (run.get("config") or {}).get("cost", {})
    gpu_h, cpu_h = float(cost_cfg.get("gpu_hour", 0.0)), float(cost_cfg.get("cpu_hour", 0.0))
    share_match = re.search(r"([\d.]+) GPU each", str(run.get("plan") or ""))
    share = float(share_match.group(1)) if share_match else 0.0  # GPUs each backend host held
    per = [spent(r["metrics"]) for r in records]
    cpu = np.cumsum([p["cpu_s"] for p in per])
    host = np.cumsum([p["host_s"] for p in per])
    x = np.arange(len(records))
    if gpu_h or cpu_h:
        money = (host * share * gpu_h + cpu * cpu_h) / 3600.0
        currency = cost_cfg.get("currency", "USD")
        chart = Chart("Estimated cost, cumulative (accepted episodes)", "episode (commit order)", currency,
                      (0, max(1, len(x) - 1)), (0, max(float(money[-1]) if len(money) else 0.0, 1e-9) * 1.1),
                      css_id="plot-cost")
        chart.polyline(x, money, PALETTE[3], width=2, label=f"{currency}, at the run's prices")
    else:
        chart = Chart("CPU- and host-seconds, cumulative (no prices in the config)", "episode (commit order)",
                      "seconds", (0, max(1, len(x) - 1)), (0, max(float(cpu[-1]) if len(cpu) else 1.0,
                                                                  float(host[-1]) if len(host) else 1.0) * 1.1),
                      css_id="plot-cost")
        chart.polyline(x, cpu, PALETTE[0], width=2, label="CPU-seconds")
        chart.polyline(x, host, PALETTE[1], width=2, label="backend host-seconds")
    return chart.svg()


def _reject_reasons(root: Path) -> tuple[list[str], list[int]]:
    from raygen.pipelines.rejects import read_rejects

    rows = read_rejects(root, ["stage", "reason"]).to_pylist()
    counts = Counter(f"{r['stage']}: {str(r['reason']).splitlines()[0].split(';')[0][:100]}" for r in rows)
    common = counts.most_common(15)
    return [k for k, _ in common], [v for _, v in common]


def _bottleneck(comparison: dict[str, Any], summary: dict[str, Any]) -> list[str]:
    """The bottleneck run's comparison table (run.json summary.bottleneck), if this was one."""
    if not comparison:
        return []
    out = ['<h2 id="bottleneck">Bottleneck generation</h2>']
    if comparison.get("error"):
        return [*out, f"<p>No comparison: {html.escape(str(comparison['error']))}</p>"]
    n = comparison.get("at_n", 0)
    out.append(f"<p>{comparison['critical_states']} critical states; coverage = share of the 5 cm cells above the "
               f"table within {comparison['radius_m']:g} m of each critical TCP position that the dataset's TCP "
               f"passes through (mean over the states); at {n} = the same over each dataset's first {n} committed "
               "episodes (coverage grows with size). Not rendered: failed attempts found on the physics-only pass "
               f"(this invocation: {summary.get('renders_saved', 0)}).</p>")
    rows = "".join(
        f"<tr><td>{html.escape(name)}</td><td>{rec['committed']}</td><td>{rec['rejected']}</td>"
        f"<td>{rec.get('not_rendered', 0)}</td><td>{100 * rec['success_rate']:.1f}%</td>"
        f"<td>{100 * rec['coverage']:.1f}%</td><td>{100 * rec.get('coverage_at_n', 0.0):.1f}%</td>"
        f"<td>{html.escape(str(rec['path']))}</td></tr>"
        for name, rec in comparison.items() if isinstance(rec, dict) and "coverage" in rec)
    out.append('<table id="bottleneck-comparison"><tr><th>dataset</th><th>committed</th><th>rejected</th>'
               f"<th>not rendered</th><th>success rate</th><th>coverage</th><th>coverage at {n}</th><th>path</th>"
               f"</tr>{rows}</table>")
    return out


def write_report(root: str | Path, out: str | Path | None = None) -> Path:
    """Write the report of the dataset at ``root`` (default: ``<root>/report.html``); returns its path."""
    root = Path(root)
    reader = DatasetReader(root)
    records = _records(root)
    run = L.read_json(root / L.RUN) if (root / L.RUN).exists() else {}
    diversity = L.read_json(root / L.DIVERSITY) if (root / L.DIVERSITY).exists() else {}
    paths = _paths(root, len(records))
    scores = [r["metrics"].get("quality.score") for r in records]
    min_score = ((run.get("config") or {}).get("stages", {}).get("quality", {}) or {}).get("min_score")
    labels, counts = _reject_reasons(root)
    figures = {
        "workspace": (_workspace(paths), f"Gripper (flange) paths of {len(paths)} of {len(records)} episodes from "
                                         "above; shaded: the 5 cm cells they pass through."),
        "viewpoints": (_viewpoints(records, reader, paths), "Fixed cameras (dot, and a 15 cm line along the "
                                                            "optical axis) and moving cameras' paths."),
        "quality": (histogram("Quality score of accepted episodes", scores, bins=20, lo=0.0, hi=1.0,
                              xlabel="quality.score", marker=min_score, marker_label=f"min_score {min_score}",
                              css_id="plot-quality"), "Rejected episodes are not in the dataset: see below."),
        "rejects": (bar_chart(f"Reject reasons ({sum(counts)} rejected episodes)", labels, counts,
                              xlabel="episodes", css_id="plot-rejects"), "From meta/raygen/rejects/."),
        "stages": (_stages(records), "From each episode's timing.* metrics; the backend host's seconds include "
                                     "its simulator or recording reader."),
        "cost": (_cost(records, run), "GPU-seconds (GPU share x host seconds) and CPU-seconds at the run's prices."),
    }
    info = reader.info
    summary = (run.get("summary") or {})
    recs = diversity.get("recommendations") or []
    dist = diversity.get("task_distribution") or {}
    body = [
        f"<h1>raygen report: {html.escape(root.resolve().name)}</h1>",
        f"<p>{info['total_episodes']} episodes, {info['total_frames']} frames at {info['fps']} fps, "
        f"{info['total_tasks']} tasks, robot {html.escape(str(info['robot_type']))}; cameras "
        f"{', '.join(html.escape(c) for c in reader.cameras)}. Last run: {summary.get('accepted', '?')} accepted, "
        f"{summary.get('rejected', '?')} rejected, {summary.get('episodes_per_minute', 0):.1f} episodes/min.</p>",
    ]
    for name in PLOTS:
        svg, caption = figures[name]
        body.append(f'<figure class="plot" id="figure-{name}">{svg}<figcaption>{html.escape(caption)}'
                    "</figcaption></figure>")
    body.append("<h2>Diversity</h2>")
    if diversity:
        body.append(f"<p>Overall score {diversity.get('overall_score', 0):.2f}; workspace coverage "
                    f"{100 * diversity.get('workspace_coverage', 0):.1f}% ({diversity.get('workspace_cells_visited')}"
                    f" of {diversity.get('workspace_cells_total')} cells); trajectory variance "
                    f"{diversity.get('trajectory_variance_m2', 0):.4f} m&sup2;; {diversity.get('fixed_viewpoints')} "
                    "fixed viewpoints.</p>")
        body.append('<ul id="recommendations">' + "".join(f"<li>{html.escape(r)}</li>" for r in recs)
                    + ("" if recs else "<li>none: the diversity checks are satisfied</li>") + "</ul>")
        body.append("<table><tr><th>task</th><th>episodes</th></tr>" + "".join(
            f"<tr><td>{html.escape(k)}</td><td>{v}</td></tr>" for k, v in sorted(dist.items(), key=lambda kv: -kv[1])
        ) + "</table>")
    else:
        body.append("<p>No diversity report (meta/raygen/diversity.json) in this dataset.</p>")
    body.extend(_bottleneck(summary.get("bottleneck") or {}, summary))
    page = _PAGE.format(title=html.escape(root.resolve().name), body="\n".join(body),
                        plots=json.dumps(list(PLOTS)))
    out = Path(out) if out else root / "report.html"
    out.write_text(page, encoding="utf-8")
    logger.info("report of %s written to %s", root, out)
    return out


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>raygen report: {title}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:1em auto;color:#222}}
figure.plot{{display:inline-block;margin:0.5em;vertical-align:top}}figcaption{{font-size:12px;color:#555;max-width:560px}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 8px;font-size:13px}}</style></head>
<body>
{body}
<pre id="render-check" hidden></pre>
<script>
// What the browser actually laid out, per plot (read by raygen's browser test; harmless elsewhere).
const out = {{}};
for (const name of {plots}) {{
  const svg = document.querySelector("#figure-" + name + " svg");
  const box = svg ? svg.getBoundingClientRect() : {{width: 0, height: 0}};
  const marks = svg ? svg.querySelectorAll(".mark").length : 0;
  out[name] = {{width: Math.round(box.width), height: Math.round(box.height), marks: marks}};
}}
document.getElementById("render-check").textContent = JSON.stringify(out);
</script>
</body></html>
"""
