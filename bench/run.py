"""``make bench``: loom and its peers side by side, on this machine, in one run.

Runs in the runner venv (``bench/.venvs/runner``, made by the Makefile). For each round it runs
every row's driver (``python -m drivers TOOL`` inside that tool's venv, see ``drivers/base.py``)
in an order rotated each round, so slow drift on the machine is spread over all tools; then the
bare-pool baseline and the pgbench ceiling. Medians go to ``results/`` (see ``report.py``).

    python bench/run.py                 # N=10,000, 3 rounds (about 20 minutes on 2 cores)
    python bench/run.py --quick         # N=1,000, 1 round: for development
    python bench/run.py --only loom-postgresql,celery --runs 1

Every server and worker a driver starts listens on loopback and is stopped by that driver; if a
driver itself dies or overruns its time bound, this program stops its process group and any
worker groups it had listed in ``.work/pids/``. Databases it created are dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import baseline  # noqa: E402
import ceiling  # noqa: E402
import report  # noqa: E402
import venvs  # noqa: E402
import workload  # noqa: E402
from rich.console import Console  # noqa: E402
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn  # noqa: E402
from rich.progress import TimeElapsedColumn  # noqa: E402

WORK = BENCH / ".work"
DATABASES = ("bench_loom", "bench_dtdb", "bench_huey", "bench_procrastinate")


@dataclass(frozen=True)
class Row:
    key: str
    venv: str
    driver: str
    variant: str
    tool: str
    label: str
    store: str
    bulk: bool  # the tool has a bulk enqueue call


ROWS = (
    Row("loom-postgresql", "loom", "loom", "postgresql", "loom", "loom", "PostgreSQL", True),
    Row("loom-sqlite", "loom", "loom", "sqlite", "loom", "loom", "SQLite", True),
    Row("celery", "celery", "celery", "", "celery", "Celery", "Redis", False),
    Row("rq", "rq", "rq", "fork", "rq", "RQ (default Worker, forks per job)", "Redis", True),
    Row("rq-simple", "rq", "rq", "simple", "rq", "RQ (SimpleWorker)", "Redis", True),
    Row("huey", "huey", "huey", "", "huey", "Huey", "Redis", False),
    Row("huey-django", "huey", "huey_django", "", "huey",
        "Huey's django.tasks backend (SqlHuey)", "PostgreSQL", False),
    Row("dramatiq", "dramatiq", "dramatiq", "", "dramatiq", "Dramatiq", "Redis", False),
    Row("procrastinate", "procrastinate", "procrastinate", "", "procrastinate", "Procrastinate",
        "PostgreSQL", True),
    Row("dtdb-postgresql", "dtdb", "dtdb", "postgresql", "dtdb", "django-tasks-db",
        "PostgreSQL", False),
    Row("dtdb-sqlite", "dtdb", "dtdb", "sqlite", "dtdb", "django-tasks-db", "SQLite", False),
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small N, one round")
    parser.add_argument("--runs", type=int, help="rounds (default 3; 1 with --quick)")
    parser.add_argument("--n", type=int, help="no-op tasks (default 10,000; 1,000 with --quick)")
    parser.add_argument("--cpu-n", type=int, help="CPU tasks (default 200; 40 with --quick)")
    parser.add_argument("--samples", type=int, help="latency samples (default 300; 100 quick)")
    parser.add_argument("--only", help="comma-separated row keys: " + ",".join(r.key for r in ROWS))
    args = parser.parse_args()
    q = args.quick
    args.runs = args.runs or (1 if q else 3)
    args.n = args.n or (1_000 if q else 10_000)
    args.cpu_n = args.cpu_n or (40 if q else 200)
    args.samples = args.samples or (100 if q else 300)
    args.pgbench_seconds = 3 if q else 10
    args.load_seconds = 1.5 if q else 3.0
    args.driver_timeout = 300 if q else 900
    return args


class DriverRun:
    """One driver subprocess: pumps its progress lines, bounded in time, cleaned up after."""

    def __init__(self, row: Row, args: argparse.Namespace, burn_n: int, on_progress) -> None:
        self.cmd = [str(venvs.python_of(row.venv)), "-m", "drivers", row.driver,
                    "--variant", row.variant, "--n", str(args.n), "--cpu-n", str(args.cpu_n),
                    "--burn-n", str(burn_n), "--samples", str(args.samples),
                    "--load-seconds", str(args.load_seconds)]
        if args.quick:
            self.cmd.append("--quick")
        self.timeout = args.driver_timeout
        self.on_progress = on_progress
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self.proc: subprocess.Popen | None = None

    def _pump_stderr(self) -> None:
        for line in self.proc.stderr:
            if line.startswith("@@ "):
                try:
                    self.on_progress(json.loads(line[3:]))
                except ValueError:
                    pass
            else:
                self.stderr = (self.stderr + [line.rstrip()])[-40:]

    def _pump_stdout(self) -> None:
        self.stdout = [line for line in self.proc.stdout]

    def run(self) -> dict:
        env = dict(os.environ, PYTHONPATH=str(BENCH), PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(self.cmd, cwd=BENCH, env=env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     start_new_session=True)
        pumps = [threading.Thread(target=self._pump_stderr, daemon=True),
                 threading.Thread(target=self._pump_stdout, daemon=True)]
        for pump in pumps:
            pump.start()
        try:
            self.proc.wait(self.timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            return {"error": f"driver overran its {self.timeout} s bound"}
        finally:
            for pump in pumps:
                pump.join(10)
            self.reap_workers()
        for line in reversed(self.stdout):
            if line.startswith("{"):
                return json.loads(line)
        tail = " | ".join(self.stderr[-3:])
        return {"error": f"exit {self.proc.returncode}: {tail}"}

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        _signal_group(self.proc.pid, signal.SIGTERM)  # the driver stops its workers on SIGTERM
        try:
            self.proc.wait(40)
        except subprocess.TimeoutExpired:
            _signal_group(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def reap_workers(self) -> None:
        """Stop worker groups a driver listed but did not stop (it died or was killed)."""
        pidfile = WORK / "pids" / f"{self.proc.pid}.txt"
        if not pidfile.exists():
            return
        groups = [int(x) for x in pidfile.read_text().split()]
        for pgid in groups:
            _signal_group(pgid, signal.SIGTERM)
        time.sleep(3)
        for pgid in groups:
            _signal_group(pgid, signal.SIGKILL)
        pidfile.unlink(missing_ok=True)


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def loom_revision() -> str:
    """The commit loom was measured at, and how many of its files differed from it (read-only)."""
    repo = BENCH.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=repo, text=True,
                              capture_output=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "loom"], cwd=repo,
                               text=True, capture_output=True, timeout=10).stdout.splitlines()
    except (OSError, subprocess.SubprocessError):
        return "?"
    return f"{head}" + (f" + {len(dirty)} changed files under loom/" if dirty else "")


def drop_databases() -> None:
    import psycopg

    try:
        with psycopg.connect(ceiling.DSN + " dbname=postgres", autocommit=True) as conn:
            for name in (*DATABASES, ceiling.DB_NAME):
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    except psycopg.Error as exc:
        print(f"could not drop the bench databases: {exc}", file=sys.stderr)


def main() -> int:
    args = parse_args()
    rows = [r for r in ROWS if not args.only or r.key in args.only.split(",")]
    console = Console()
    with console.status("installing the tools' virtualenvs (first run only)…"):
        for name in sorted({r.venv for r in rows}):
            log = WORK / "logs" / f"pip-{name}.log"
            try:
                venvs.ensure(name, venvs.base_python(), log)
            except subprocess.CalledProcessError:
                console.print(f"[red]installing {name} failed; see {log}")
                return 1
    burn_n = workload.calibrate()
    console.print(f"CPU task: spin({burn_n:,}) ≈ 20 ms; {args.runs} round(s), N={args.n:,}")

    runs: dict[str, list[dict]] = {r.key: [] for r in rows}
    pool: list = []
    tps: list = []
    steps = args.runs * (len(rows) + 2)
    progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                        MofNCompleteColumn(), TimeElapsedColumn(), console=console)
    current: DriverRun | None = None
    started = time.monotonic()
    load_before = os.getloadavg()
    revision = loom_revision()
    try:
        with progress:
            overall = progress.add_task("all rounds", total=steps)
            phase = progress.add_task("", total=None)
            for round_no in range(args.runs):
                shift = round_no % len(rows)
                for row in rows[shift:] + rows[:shift]:
                    title = f"round {round_no + 1}/{args.runs} · {row.label} ({row.store})"
                    progress.update(phase, description=title, completed=0, total=None)

                    def on_progress(event, title=title):
                        text = f"{title} · {event.get('phase', '')}"
                        progress.update(phase, description=text, total=event.get("total"),
                                        completed=event.get("done", 0))

                    current = DriverRun(row, args, burn_n, on_progress)
                    result = current.run()
                    current = None
                    runs[row.key].append(result)
                    if "error" in result:
                        progress.console.print(f"[red]{title}: {result['error']}")
                    progress.advance(overall)
                progress.update(phase, description=f"round {round_no + 1} · bare pool",
                                total=None)
                pool.append(baseline.pool_rate(args.cpu_n, burn_n, WORK / "pool"))
                progress.advance(overall)
                progress.update(phase, description=f"round {round_no + 1} · pgbench ceiling")
                tps.append(ceiling.pgbench_tps(args.pgbench_seconds))
                progress.advance(overall)
    except KeyboardInterrupt:
        if current is not None:
            current.stop()
            current.reap_workers()
        console.print("[yellow]interrupted; nothing written")
        return 130
    finally:
        drop_databases()
        shutil.rmtree(WORK / "loom-sqlite", ignore_errors=True)
        shutil.rmtree(WORK / "dtdb-sqlite", ignore_errors=True)

    info = {r.key: {k: v for k, v in asdict(r).items() if k not in ("venv", "driver")}
            for r in rows}
    doc = report.summarize(info, runs, pool, tps)
    meta = {"when": report.now(), "machine": report.machine(), "runs": args.runs, "n": args.n,
            "cpu_n": args.cpu_n, "samples": args.samples, "quick": args.quick,
            "burn_n": burn_n, "seconds": round(time.monotonic() - started),
            "loadavg_before": load_before, "loadavg_after": os.getloadavg(),
            "loom_revision": revision, "loom_revision_after": loom_revision()}
    path = report.write(doc, meta)
    report.plot_loads(doc, path.with_suffix(".png"))
    print(report.markdown(doc, meta), flush=True)
    console.print(f"written: {path} and {path.parent / 'latest.md'} (+ .json); "
                  f"took {meta['seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
