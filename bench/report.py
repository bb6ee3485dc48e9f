"""Report: medians over the runs, the Markdown table, the ratios, and the files in ``results/``.

Input is every driver's JSON line, grouped by row (tool and variant), plus the pool baseline and
the pgbench ceiling per run. Each figure is the median of the runs that produced it; a run that
failed or hit a bound is listed under the table, never silently dropped. Output: a timestamped
``results/<UTC time>.md`` and ``.json``, copied to ``results/latest.md`` and ``latest.json``.
"""

from __future__ import annotations

import json
import platform
import statistics
from datetime import datetime, timezone
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
METRICS = ("enqueue", "enqueue_bulk", "drain", "cpu")
LATENCY = ("p50", "p95", "p99")


def median(values: list) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def summarize(rows: dict[str, dict], runs: dict[str, list[dict]], pool: list,
              ceiling: list) -> dict:
    """rows: key -> static info; runs: key -> driver results. Returns the JSON document."""
    pool_rate = median(pool)
    summary = {}
    for key, info in rows.items():
        results = [r for r in runs.get(key, []) if "error" not in r]
        entry = {**info, "runs": len(results)}
        for metric in METRICS:
            entry[metric] = median([r.get(metric) for r in results])
        for q in LATENCY:
            entry[f"latency_{q}"] = median([(r.get("latency_ms") or {}).get(q) for r in results])
        entry["cpu_vs_pool"] = (entry["cpu"] / pool_rate) if entry["cpu"] and pool_rate else None
        entry["startup_s"] = median([r.get("startup_s") for r in results])
        loads = sorted({rate for r in results for rate in (r.get("loads") or {})}, key=int)
        entry["loads"] = {rate: {q: median([((r.get("loads") or {}).get(rate) or {}).get(q) for r in results])
                                 for q in ("offered", "p50", "p99")} for rate in loads}
        entry["notes"] = sorted({n for r in results for n in r.get("notes", [])})
        entry["errors"] = [r["error"] for r in runs.get(key, []) if "error" in r]
        for r in results:
            entry.setdefault("versions", r.get("versions"))
            entry.setdefault("setup", r.get("setup"))
            entry.setdefault("cpu_setup", r.get("cpu_setup"))
        summary[key] = entry
    return {"rows": summary, "pool_cpu": pool_rate, "pgbench_tps": median(ceiling),
            "pool_runs": pool, "pgbench_runs": ceiling, "raw": runs}


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def _ratio(mine: float | None, best: float | None) -> str:
    return f"{mine / best:.2f}x" if mine and best else "—"


def ratios(doc: dict) -> list[str]:
    """loom's figures against the best peer's, one line per metric and loom database."""
    rows = doc["rows"]
    peers = {k: r for k, r in rows.items() if r["tool"] != "loom"}
    lines = []
    for key, mine in rows.items():
        if mine["tool"] != "loom":
            continue
        parts = []
        for metric, label, higher in (("drain", "drain", True), ("enqueue", "enqueue", True),
                                      ("enqueue_bulk", "bulk enqueue", True),
                                      ("latency_p50", "p50 latency", False)):
            scored = [(r[metric], r["label"]) for r in peers.values() if r[metric]]
            if not scored or not mine[metric]:
                continue
            best, who = (max if higher else min)(scored)
            ratio = mine[metric] / best if higher else best / mine[metric]
            parts.append(f"{label} {ratio:.2f}x {who}")
        if mine["cpu_vs_pool"]:
            parts.append(f"CPU {mine['cpu_vs_pool']:.2f}x the bare pool")
        lines.append(f"- **{mine['label']} ({mine['store']})** vs the best peer "
                     "(>1 = loom better): "
                     + "; ".join(parts))
    return lines


def markdown(doc: dict, meta: dict) -> str:
    out = [f"## Results {meta['when']}", "",
           f"{meta['machine']}; {meta['runs']} runs per tool, interleaved, medians shown; "
           f"N = {meta['n']:,} no-op tasks, {meta['cpu_n']} CPU tasks of ~20 ms, "
           f"up to {meta['samples']} latency samples{' (--quick)' if meta['quick'] else ''}; "
           f"load average {meta['loadavg_before'][0]:.1f} before, "
           f"{meta['loadavg_after'][0]:.1f} after; took {meta['seconds'] // 60} min; "
           f"loom at {meta['loom_revision']}"
           + ("" if meta["loom_revision_after"] == meta["loom_revision"]
              else f" (at {meta['loom_revision_after']} by the end)") + ".", "",
           "| Tool | Store | Enqueue/s | Bulk enqueue/s | Drain/s | Pickup p50 / p95 / p99 ms "
           "| CPU tasks/s | CPU vs pool |",
           "|---|---|--:|--:|--:|--:|--:|--:|"]
    for row in doc["rows"].values():
        latency = " / ".join(_fmt(row[f"latency_{q}"], 1) for q in LATENCY)
        name = f"**{row['label']}**" if row["tool"] == "loom" else row["label"]
        out.append(f"| {name} | {row['store']} | {_fmt(row['enqueue'])} | "
                   f"{_fmt(row['enqueue_bulk']) if row['bulk'] else 'n/a'} | "
                   f"{_fmt(row['drain'])} | {latency} | {_fmt(row['cpu'], 1)} | "
                   f"{_fmt(row['cpu_vs_pool'], 2)} |")
    out.append(f"| bare `multiprocessing.Pool(2)` | — | — | — | — | — | "
               f"{_fmt(doc['pool_cpu'], 1)} | 1.00 |")
    rates = sorted({rate for row in doc["rows"].values() for rate in row.get("loads", {})}, key=int)
    if rates:
        out += ["", "Start-up (launch on a full queue to the first task's start) and pickup under offered "
                    "load (open-loop single enqueues; p50 / p99 ms, and the rate really offered when "
                    "the tool's enqueue could not keep up):", "",
                "| Tool | Store | Start-up s | " + " | ".join(f"{r}/s" for r in rates) + " |",
                "|---|---|--:|" + "--:|" * len(rates)]
        for row in doc["rows"].values():
            cells = []
            for rate in rates:
                load = row.get("loads", {}).get(rate) or {}
                cell = (f"{_fmt(load.get('p50'), 1)} / {_fmt(load.get('p99'), 1)}"
                        if load.get("p50") is not None else "—")
                if load.get("offered") and load["offered"] < 0.9 * int(rate):
                    cell += f" (at {load['offered']:.0f}/s)"
                cells.append(cell)
            name = f"**{row['label']}**" if row["tool"] == "loom" else row["label"]
            out.append(f"| {name} | {row['store']} | {_fmt(row.get('startup_s'), 2)} | " + " | ".join(cells) + " |")
        out += ["", "The same as a plot: `<this file>.png`."]
    out += ["", f"PostgreSQL's own ceiling (pgbench, 1 INSERT + 2 UPDATEs per task, autocommit, "
                f"8 clients): **{_fmt(doc['pgbench_tps'])} tasks/s**.", "", *ratios(doc)]
    flagged = [(f"{r['label']} ({r['store']})", r["notes"], r["errors"])
               for r in doc["rows"].values()
               if r["notes"] or r["errors"]]
    if flagged:
        out += ["", "Notes:"]
        for label, notes, errors in flagged:
            for note in notes:
                out.append(f"- {label}: {note}")
            for error in errors:
                out.append(f"- {label}: a run failed: {error}")
    return "\n".join(out) + "\n"


def plot_loads(doc: dict, path: Path) -> Path | None:
    """p50 and p99 pickup against offered load, one line per tool (matplotlib, no display)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(12, 5), sharey=True)
    for row in doc["rows"].values():
        rates = sorted(row.get("loads", {}), key=int)
        if not rates:
            continue
        label = f"{row['label']} ({row['store']})"
        style = {"linewidth": 2.5} if row["tool"] == "loom" else {"linewidth": 1, "alpha": 0.8}
        for ax, q in zip(axes, ("p50", "p99"), strict=True):
            points = [(int(r), row["loads"][r][q]) for r in rates if row["loads"][r].get(q) is not None]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=label, **style)
    for ax, q in zip(axes, ("p50", "p99"), strict=True):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("offered load, tasks/s")
        ax.set_title(f"pickup {q}, ms")
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    latest = path.parent / "latest.png"
    latest.write_bytes(path.read_bytes())
    return path


def machine() -> str:
    cpus = 0
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("processor"):
                cpus += 1
            elif line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    try:
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{mem_kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        mem = "?"
    return f"{cpus} × {model}, {mem}, Python {platform.python_version()}, {platform.system()}"


def write(doc: dict, meta: dict) -> Path:
    RESULTS.mkdir(exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    text = markdown(doc, meta)
    payload = json.dumps({"meta": meta, **doc}, indent=1, default=str)
    for name in (stamp, "latest"):
        (RESULTS / f"{name}.md").write_text(text)
        (RESULTS / f"{name}.json").write_text(payload)
    return RESULTS / f"{stamp}.md"


def now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
