"""Benchmark suite for issue #7: one command, one table, one JSON file.

    .venv/bin/python -m tests.benchmarks.run            # full suite (~10-15 min on 2 cores)
    .venv/bin/python -m tests.benchmarks.run --quick    # smoke version (< 2 min)

What it does (README.md explains every number):

1. generates rule packs (100 / 1,200 / 10,000 rules), knowledge folders, a
   250- and a 1,000-resource patient and a mix of order-sign / order-select
   requests into a temporary folder (`generate.py`, fixed seed), and checks
   that every pack set passes the real lint;
2. start-up: load + lint + compile (`load_ruleset`) in a fresh interpreter;
3. in-process: engine only (`evaluate` on prebuilt facts) and pipeline
   (`run_hook`: facts + engine + cards), p50/p99 per request; a per-stage
   breakdown of the HTTP path and the Flask app through its test client;
4. HTTP: `precision-cds serve --workers 1` at concurrency 1 (keep-alive
   http.client) and `--workers 2` at concurrency 16 (wrk, or a Python load
   generator when wrk is missing), resident memory of every worker;
5. optional profiles (pyinstrument in-process, py-spy on a live worker).

Results go to bench-results/ (git-ignored): bench-<time>.json, latest.json
and profile-*.txt.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import json
import math
import os
import resource
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable

from . import generate as gen

REPO = gen.REPO
BIN = Path(sys.executable).parent
CLI = BIN / "precision-cds"
RESULTS = REPO / "bench-results"
LUA = Path(__file__).with_name("wrk_post.lua")
MAIN = (1200, 250)  # the configuration the budgets apply to

BUDGETS = {
    "engine_p99_ms": ("engine p99 (1,200 rules, 250 res.)", "<=", 1.0),
    "http_c1_p50_ms": ("HTTP c=1 p50", "<=", 5.0),
    "http_c1_p99_ms": ("HTTP c=1 p99", "<=", 15.0),
    "http_c16_rps": ("HTTP c=16 throughput (workers 2)", ">=", 600.0),
    "http_c16_errors": ("HTTP c=16 errors", "<=", 0),
    "startup_s": ("start-up: load+lint+compile 1,200 rules", "<=", 2.0),
    "rss_mb_per_worker": ("RSS per worker after load", "<=", 200.0),
    "ratio_10k_100": ("10,000 / 100 rules, same orders (engine)", "<=", 1.5),
}


@dataclass
class Plan:
    quick: bool
    scales: list[int]
    patients: list[int]
    startup_repeats: dict[int, int]
    engine_s: float
    pipeline_s: float
    stage_s: float
    app_s: float
    c1_s: float
    c1_configs: list[tuple[int, int]]
    c16_configs: list[tuple[int, int, float]]
    profile: bool
    wait_idle_s: float


def make_plan(args: argparse.Namespace) -> Plan:
    if args.quick:
        return Plan(True, [100, 1200], [250], {100: 1, 1200: 1}, 1.0, 1.0, 0.3, 1.5, 4.0,
                    [MAIN], [(1200, 250, 5.0)], args.profile, min(args.wait_idle, 3))
    return Plan(False, [100, 1200, 10000], [250, 1000], {100: 3, 1200: 3, 10000: 1}, 3.0, 4.0, 1.0, 4.0, 15.0,
                [MAIN, (100, 250), (10000, 250), (1200, 1000)],
                [(1200, 250, 20.0), (100, 250, 10.0), (10000, 250, 10.0), (1200, 1000, 10.0)],
                not args.no_profile, args.wait_idle)


# -----------------------------------------------------------------------------
# Small helpers
# -----------------------------------------------------------------------------


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def summarize_ms(samples_ns: list[int]) -> dict[str, float]:
    ms = sorted(s / 1e6 for s in samples_ns)
    return {"n": len(ms), "mean": statistics.fmean(ms) if ms else float("nan"), "p50": percentile(ms, 50),
            "p90": percentile(ms, 90), "p99": percentile(ms, 99), "max": ms[-1] if ms else float("nan")}


def timed_loop(items: list[Any], fn: Callable[[Any], Any], seconds: float, min_rounds: int = 3,
               cpu: dict[str, list[int]] | None = None) -> dict[str, list[int]]:
    """Call fn(item) round-robin for `seconds`; per item name, the wall-clock durations in ns.

    With `cpu`, also this thread's CPU time per call (robust to other load on the machine).
    """
    out: dict[str, list[int]] = {name: [] for name, _ in items}
    if cpu is not None:
        cpu.update({name: [] for name, _ in items})
    deadline = time.perf_counter() + seconds
    rounds = 0
    clock, tclock = time.perf_counter_ns, time.thread_time_ns
    while rounds < min_rounds or time.perf_counter() < deadline:
        for name, item in items:
            c0 = tclock()
            t0 = clock()
            fn(item)
            t1 = clock()
            out[name].append(t1 - t0)
            if cpu is not None:
                cpu[name].append(tclock() - c0)
        rounds += 1
    return out


def merge(per_item: dict[str, list[int]]) -> list[int]:
    return [v for vs in per_item.values() for v in vs]


def machine_busy(sample_s: float = 1.0) -> float:
    """Fraction of all CPUs busy over a short sample (from /proc/stat)."""
    def read() -> tuple[int, int]:
        with open("/proc/stat") as f:
            parts = [int(x) for x in f.readline().split()[1:]]
        idle = parts[3] + (parts[4] if len(parts) > 4 else 0)
        return sum(parts), idle
    try:
        t0, i0 = read()
        time.sleep(sample_s)
        t1, i1 = read()
        return 1 - (i1 - i0) / max(1, t1 - t0)
    except OSError:
        return 0.0


_WAIT_BUDGET = [300.0]  # total seconds the whole run may spend waiting for a quiet machine


def wait_for_quiet(limit_s: float, notes: list[str], phase: str) -> float:
    """Wait (up to limit_s) until other processes leave the CPUs mostly idle; record contention."""
    busy = machine_busy()
    waited = 0.0
    limit_s = min(limit_s, _WAIT_BUDGET[0])
    while busy > 0.25 and waited < limit_s:
        time.sleep(4)
        waited += 5
        busy = machine_busy()
    _WAIT_BUDGET[0] -= waited
    if busy > 0.25:
        notes.append(f"{phase}: CPUs {busy:.0%} busy with other work before measuring (waited {waited:.0f} s)")
        log(f"warning: machine {busy:.0%} busy before {phase}")
    return busy


def proc_status(pid: int) -> dict[str, float]:
    out: dict[str, float] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return out


def children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        found = []
        for d in Path("/proc").iterdir():
            if d.name.isdigit():
                try:
                    if int((d / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                        found.append(int(d.name))
                except (OSError, IndexError, ValueError):
                    continue
        return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_CLK = os.sysconf("SC_CLK_TCK")


def proc_cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK
    except (OSError, IndexError, ValueError):
        return 0.0


def machine_cpu_s() -> float:
    """Busy CPU-seconds of the whole machine so far (user+nice+system+irq+softirq+steal)."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return (v[0] + v[1] + v[2] + v[5] + v[6] + (v[7] if len(v) > 7 else 0)) / _CLK
    except (OSError, IndexError, ValueError):
        return 0.0


class CpuMeter:
    """Who used the CPUs during a measurement: the server's workers, the load generator, everybody else.

    The machine is shared; `other_share` says how much of its capacity other work took meanwhile,
    and `server_cpu_ms_per_request` is a cost measure that other load hardly disturbs.
    """

    def __init__(self, server_pids: list[int]) -> None:
        self.pids = server_pids

    def __enter__(self) -> "CpuMeter":
        self.t0 = time.perf_counter()
        self.m0 = machine_cpu_s()
        self.s0 = sum(proc_cpu_s(p) for p in self.pids)
        self.c0 = time.process_time()
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.k0 = ru.ru_utime + ru.ru_stime
        return self

    def __exit__(self, *exc: Any) -> None:
        self.elapsed = time.perf_counter() - self.t0
        self.machine = machine_cpu_s() - self.m0
        self.server = sum(proc_cpu_s(p) for p in self.pids) - self.s0
        ru = resource.getrusage(resource.RUSAGE_CHILDREN)
        self.client = (time.process_time() - self.c0) + (ru.ru_utime + ru.ru_stime - self.k0)

    def report(self, requests: int) -> dict[str, float]:
        cpus = os.cpu_count() or 1
        other = max(0.0, self.machine - self.server - self.client)
        return {"server_cpu_ms_per_request": 1000 * self.server / max(1, requests),
                "client_cpu_ms_per_request": 1000 * self.client / max(1, requests),
                "server_cpu_share": self.server / (self.elapsed * cpus),
                "other_share": other / (self.elapsed * cpus)}


def git_describe() -> dict[str, Any]:
    def git(*a: str) -> str:
        try:
            return subprocess.run(["git", *a], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    return {"commit": git("rev-parse", "--short", "HEAD"),
            "dirty_files": [line[3:] for line in git("status", "--porcelain", "--", "service").splitlines()]}


# -----------------------------------------------------------------------------
# Data
# -----------------------------------------------------------------------------


@dataclass
class Data:
    root: Path
    anchor: date
    scales: dict[int, gen.Scale] = field(default_factory=dict)
    patients: dict[int, gen.RequestSet] = field(default_factory=dict)


def generate_data(plan: Plan, root: Path, anchor: date) -> Data:
    data = Data(root, anchor)
    for n in plan.scales:
        t = time.perf_counter()
        data.scales[n] = gen.write_scale(root, n)
        log(f"generated {n} rules in {data.scales[n].packs} packs ({time.perf_counter() - t:.1f} s)")
    for size in plan.patients:
        data.patients[size] = rs = gen.write_requests(root, size, anchor)
        log(f"generated patient {size}: {rs.resources} resources, prefetch {rs.prefetch_bytes / 1024:.0f} KiB, {len(rs.requests)} requests")
    return data


# -----------------------------------------------------------------------------
# Start-up (fresh interpreter per repeat)
# -----------------------------------------------------------------------------

_STARTUP_SNIPPET = r"""
import json, sys, time
t0 = time.perf_counter()
from pathlib import Path
from service.knowledge import load_knowledge
from service.engine.ruleset import build_ruleset
from service.calculators.registry import names
t1 = time.perf_counter()
c1 = time.process_time()
k = load_knowledge(Path(sys.argv[2]))
t2 = time.perf_counter()
rs, problems = build_ruleset([Path(sys.argv[1])], k, names())
t3 = time.perf_counter()
c3 = time.process_time()
errors = [p.format() for p in problems if p.severity == "error"]
rss = 0.0
for line in open("/proc/self/status"):
    if line.startswith("VmRSS"):
        rss = int(line.split()[1]) / 1024
print(json.dumps({"import_s": t1 - t0, "knowledge_s": t2 - t1, "build_s": t3 - t2, "load_lint_compile_s": t3 - t1,
                  "load_lint_compile_cpu_s": c3 - c1,
                  "rules": len(rs.rules) if rs else 0, "errors": errors[:20], "error_count": len(errors), "rss_mb": rss}))
"""


def measure_startup(scale: gen.Scale, repeats: int) -> dict[str, Any]:
    runs = []
    for _ in range(repeats):
        out = subprocess.run([sys.executable, "-c", _STARTUP_SNIPPET, str(scale.rules_dir), str(scale.knowledge_dir)],
                             cwd=REPO, capture_output=True, text=True, timeout=900)
        if out.returncode != 0:
            raise RuntimeError(f"start-up measurement failed:\n{out.stderr[-3000:]}")
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    if runs[0]["error_count"]:
        raise SystemExit("generated packs do not lint (the grammar changed? adapt generate.py):\n" + "\n".join(runs[0]["errors"]))
    med = {k: statistics.median(r[k] for r in runs) for k in ("import_s", "knowledge_s", "build_s", "load_lint_compile_s",
                                                             "load_lint_compile_cpu_s", "rss_mb")}
    return {"rules": runs[0]["rules"], "repeats": repeats, **med, "runs": runs}


# -----------------------------------------------------------------------------
# In-process measurements
# -----------------------------------------------------------------------------


@dataclass
class Prepared:
    name: str
    hook: str
    locale: str
    service: str
    raw: bytes
    body: dict[str, Any]
    request: Any  # HookRequest
    resources: list[dict[str, Any]]
    patient: Any  # PatientFacts
    orders: list[Any]


def prepare(rs_set: gen.RequestSet, knowledge: Any, today: date) -> list[Prepared]:
    from service.api.discovery import PREFETCH, REQUIRED
    from service.facts.builder import build_draft_order, build_patient_facts
    from service.fhir.prefetch import FetchSettings, gather
    from service.hooks.request import parse_hook_request
    from service.pipeline import _for_patient

    out = []
    for r in rs_set.requests:
        raw = Path(r["file"]).read_bytes()
        body = json.loads(raw)
        hr = parse_hook_request(body, r["hook"])
        g = gather(PREFETCH, hr.prefetch, hr.context, hr.fhir_server, hr.fhir_authorization, FetchSettings(), set(REQUIRED))
        resources = g.all_resources()
        patient = build_patient_facts(_for_patient(resources, hr.patient_id), knowledge, today)
        orders = [build_draft_order(o, knowledge) for o in hr.orders_in_scope()]
        out.append(Prepared(r["name"], r["hook"], r["locale"], r["service"], raw, body, hr, resources, patient, orders))
    return out


def load_ruleset_for(scale: gen.Scale) -> Any:
    from service.engine.ruleset import load_ruleset

    return load_ruleset(scale.rules_dir, scale.knowledge_dir)


def measure_inprocess(ruleset: Any, items: list[Prepared], plan: Plan, today: date) -> dict[str, Any]:
    from service.calculators.registry import CALCULATORS
    from service.engine.evaluate import evaluate
    from service.pipeline import run_hook

    def engine(p: Prepared) -> Any:
        return evaluate(ruleset, p.hook, p.orders, p.patient, CALCULATORS)

    def pipeline(p: Prepared) -> Any:
        return run_hook(ruleset, p.request, p.resources, p.locale, today)

    shape = {}
    for p in items:
        result = pipeline(p)
        shape[p.name] = {"orders": len(p.orders), "candidates": [len(ruleset.candidates(o)) for o in p.orders],
                         "firings": len(result.firings), "cards": len(result.cards), "dropped": len(result.dropped)}
    gc_ms = []
    for _ in range(3):
        t0 = time.perf_counter()
        gc.collect()
        gc_ms.append((time.perf_counter() - t0) * 1000)
    gc_info = {"full_collection_ms": statistics.median(gc_ms), "tracked_objects": len(gc.get_objects())}
    pairs = [(p.name, p) for p in items]
    eng_cpu: dict[str, list[int]] = {}
    pipe_cpu: dict[str, list[int]] = {}
    gc.collect()
    eng = timed_loop(pairs, engine, plan.engine_s, cpu=eng_cpu)
    gc.collect()
    pipe = timed_loop(pairs, pipeline, plan.pipeline_s, cpu=pipe_cpu)
    return {
        "engine": summarize_ms(merge(eng)),
        "pipeline": summarize_ms(merge(pipe)),
        "engine_cpu": summarize_ms(merge(eng_cpu)),
        "pipeline_cpu": summarize_ms(merge(pipe_cpu)),
        "per_request": {name: {"engine": summarize_ms(eng[name]), "pipeline": summarize_ms(pipe[name]), **shape[name]} for name in eng},
        "gc": gc_info,
        "candidates_per_order_mean": statistics.fmean(c for s in shape.values() for c in s["candidates"]),
        "cards_per_request_mean": statistics.fmean(s["cards"] for s in shape.values()),
    }


def measure_stages(ruleset: Any, items: list[Prepared], plan: Plan, today: date, workdir: Path) -> dict[str, Any]:
    """Each step of the HTTP handler in isolation, p50 per request (ms)."""
    from service.api.discovery import PREFETCH, REQUIRED
    from service.calculators.registry import CALCULATORS
    from service.cards.invariants import card_violations
    from service.cards.render import CardRenderer
    from service.engine.evaluate import evaluate
    from service.facts.builder import build_draft_order, build_patient_facts
    from service.fhir.prefetch import FetchSettings, gather
    from service.hooks.request import parse_hook_request
    from service.pipeline import _for_patient
    from service.storage import InvocationRecord, Store

    knowledge = ruleset.knowledge
    store = Store(f"sqlite:///{workdir / 'stages.sqlite3'}", b"k" * 32, spool_dir=workdir / "stages-spool")
    firings = {p.name: evaluate(ruleset, p.hook, p.orders, p.patient, CALCULATORS) for p in items}
    observations = {p.name: [r for r in p.resources if r.get("resourceType") == "Observation" and r.get("status") in ("final", "amended", "corrected", "preliminary")] for p in items}
    responses = {}
    for p in items:
        renderer = CardRenderer(knowledge)
        responses[p.name] = {"cards": [renderer.render(f, p.locale) for f in firings[p.name]]}

    def render(p: Prepared) -> None:
        renderer = CardRenderer(knowledge)
        for f in firings[p.name]:
            card_violations(renderer.render(f, p.locale))

    def audit(p: Prepared) -> None:
        cards = responses[p.name]["cards"]
        store.record_invocation(InvocationRecord(
            service_id=p.service, hook=p.hook, hook_instance=p.request.hook_instance, patient_id=p.request.patient_id,
            rules_fired=[f.rule.id for f in firings[p.name]],
            cards=[(uuid.uuid4().hex, f.rule.id, f.order.reference) for f in firings[p.name]][: len(cards)],
            duration_ms=1.0, outcome="ok", http_status=200, ruleset_version=ruleset.version))

    def genomics(p: Prepared) -> None:
        from service.facts.genomics import read_genomic_results
        read_genomic_results(observations[p.name], knowledge.pgx)

    stages: list[tuple[str, Callable[[Prepared], Any]]] = [
        ("json.loads(body)", lambda p: json.loads(p.raw)),
        ("parse_hook_request (draft validation)", lambda p: parse_hook_request(p.body, p.hook)),
        ("gather (prefetch flatten)", lambda p: gather(PREFETCH, p.request.prefetch, p.request.context, p.request.fhir_server,
                                                       None, FetchSettings(), set(REQUIRED))),
        ("facts: build_patient_facts", lambda p: build_patient_facts(_for_patient(p.resources, p.request.patient_id), knowledge, today)),
        ("  of which genomics reader", genomics),
        ("facts: draft orders", lambda p: [build_draft_order(o, knowledge) for o in p.request.orders_in_scope()]),
        ("engine: evaluate", lambda p: evaluate(ruleset, p.hook, p.orders, p.patient, CALCULATORS)),
        ("cards: render + invariants", render),
        ("json.dumps(response)", lambda p: json.dumps(responses[p.name], ensure_ascii=False)),
        ("audit: record_invocation (SQLite)", audit),
    ]
    out: dict[str, Any] = {}
    pairs = [(p.name, p) for p in items]
    for label, fn in stages:
        gc.collect()
        cpu: dict[str, list[int]] = {}
        per = timed_loop(pairs, fn, plan.stage_s, cpu=cpu)
        out[label] = summarize_ms(merge(per))
        out[label]["cpu_p50"] = summarize_ms(merge(cpu))["p50"]
    store.close()
    return out


def make_app(scale: gen.Scale, workdir: Path) -> Any:
    from service.app import create_app
    from service.config import Settings

    data_dir = workdir / "app-data"
    settings = Settings(rules_dir=scale.rules_dir, knowledge_dir=scale.knowledge_dir, data_dir=data_dir,
                        database_url=f"sqlite:///{data_dir / 'app.sqlite3'}", reload_interval_seconds=0)
    return create_app(settings)


def measure_app(app: Any, items: list[Prepared], plan: Plan) -> dict[str, Any]:
    """The Flask app through its test client: the HTTP handler without sockets or gunicorn."""
    client = app.test_client()

    def call(p: Prepared) -> None:
        resp = client.post(f"/cds-services/{p.service}", data=p.raw, content_type="application/json",
                           headers={"Accept-Language": p.locale})
        if resp.status_code != 200:
            raise RuntimeError(f"{p.name}: HTTP {resp.status_code}: {resp.get_data(as_text=True)[:300]}")

    pairs = [(p.name, p) for p in items]
    gc.collect()
    per = timed_loop(pairs, call, plan.app_s)
    return summarize_ms(merge(per))


# -----------------------------------------------------------------------------
# Profiles
# -----------------------------------------------------------------------------


def _short(path: str) -> str:
    p = str(path)
    if p.startswith(str(REPO)):
        return p[len(str(REPO)) + 1:]
    if "site-packages/" in p:
        return p.split("site-packages/", 1)[1]
    return Path(p).name if p else "?"


def aggregate_pyinstrument(session: Any, top: int = 15) -> dict[str, Any]:
    root = session.root_frame()
    total = root.time if root else 0.0
    self_t: dict[str, float] = {}
    incl: dict[str, float] = {}

    def walk(frame: Any, stack: set[str]) -> None:
        if frame.is_synthetic:
            return
        key = f"{frame.function} ({_short(frame.file_path or '')}:{frame.line_no})"
        self_t[key] = self_t.get(key, 0.0) + frame.total_self_time
        if key not in stack:
            incl[key] = incl.get(key, 0.0) + frame.time
        for child in frame.children:
            walk(child, stack | {key})

    if root:
        walk(root, set())

    def rank(d: dict[str, float]) -> list[dict[str, Any]]:
        return [{"function": k, "seconds": round(v, 4), "pct": round(100 * v / total, 1) if total else 0.0}
                for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]]

    app_incl = {k: v for k, v in incl.items() if "(service/" in k}
    return {"total_s": total, "top_self": rank(self_t), "top_inclusive": rank(incl), "top_inclusive_service": rank(app_incl)}


def profile_inprocess(label: str, fn: Callable[[], Any], seconds: float, out_dir: Path) -> dict[str, Any]:
    from pyinstrument import Profiler

    prof = Profiler(interval=0.0002)
    deadline = time.perf_counter() + seconds
    prof.start()
    while time.perf_counter() < deadline:
        fn()
    prof.stop()
    (out_dir / f"profile-{label}.txt").write_text(prof.output_text(unicode=False, color=False, show_all=False))
    agg = aggregate_pyinstrument(prof.last_session)
    agg["file"] = str(out_dir / f"profile-{label}.txt")
    return agg


def aggregate_collapsed(text: str, top: int = 15) -> dict[str, Any]:
    """py-spy --format raw (collapsed stacks) -> top functions by self and inclusive samples."""
    self_c: dict[str, int] = {}
    incl: dict[str, int] = {}
    total = 0
    for line in text.splitlines():
        stack, _, count_s = line.rpartition(" ")
        if not stack or not count_s.isdigit():
            continue
        count = int(count_s)
        total += count
        frames = []
        for fr in stack.split(";"):
            name, _, where = fr.partition(" (")
            where = where.rstrip(")")
            file, _, line_no = where.rpartition(":")
            frames.append(f"{name} ({_short(file or where)})")
        if not frames:
            continue
        self_c[frames[-1]] = self_c.get(frames[-1], 0) + count
        for key in set(frames):
            incl[key] = incl.get(key, 0) + count

    def rank(d: dict[str, int]) -> list[dict[str, Any]]:
        return [{"function": k, "samples": v, "pct": round(100 * v / total, 1) if total else 0.0}
                for k, v in sorted(d.items(), key=lambda kv: -kv[1])[:top]]

    app_incl = {k: v for k, v in incl.items() if "(service/" in k}
    return {"samples": total, "top_self": rank(self_c), "top_inclusive": rank(incl), "top_inclusive_service": rank(app_incl)}


# -----------------------------------------------------------------------------
# HTTP
# -----------------------------------------------------------------------------


class Server:
    """`precision-cds serve` in a subprocess, on loopback, with its own data dir and SQLite file."""

    def __init__(self, scale: gen.Scale, workers: int, workdir: Path, tag: str) -> None:
        self.scale, self.workers, self.port = scale, workers, free_port()
        self.dir = workdir / f"server-{tag}"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.dir / "server.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float) -> float:
        env = dict(os.environ, PCDS_DATA_DIR=str(self.dir / "data"), XDG_RUNTIME_DIR=str(self.dir))
        cmd = [str(CLI), "serve", "--host", "127.0.0.1", "--port", str(self.port), "--workers", str(self.workers),
               "--rules", str(self.scale.rules_dir), "--knowledge", str(self.scale.knowledge_dir),
               "--database-url", f"sqlite:///{self.dir / 'audit.sqlite3'}"]
        t0 = time.perf_counter()
        self.log_file = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=self.log_file, stderr=subprocess.STDOUT, start_new_session=True)
        while time.perf_counter() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            text = self.log_path.read_text(errors="replace")
            if text.count("precision-cds ready") >= self.workers and self._status_ok():
                return time.perf_counter() - t0
            time.sleep(0.2)
        raise RuntimeError(f"server not ready after {timeout:.0f} s:\n{self.log_tail()}")

    def _status_ok(self) -> bool:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
            conn.request("GET", "/status")
            ok = conn.getresponse().status == 200
            conn.close()
            return ok
        except OSError:
            return False

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def worker_pids(self) -> list[int]:
        return children(self.proc.pid) if self.proc else []

    def memory(self) -> dict[str, Any]:
        assert self.proc is not None
        workers = {pid: proc_status(pid) for pid in self.worker_pids()}
        return {"master": proc_status(self.proc.pid), "workers": workers,
                "max_worker_rss_mb": max((w.get("VmRSS", 0.0) for w in workers.values()), default=float("nan"))}

    def worker_class(self) -> str | None:
        for line in self.log_path.read_text(errors="replace").splitlines():
            if "Using worker:" in line:
                return line.rsplit(":", 1)[1].strip()
        return None

    def problems_in_log(self) -> list[str]:
        text = self.log_path.read_text(errors="replace")
        return [line for line in text.splitlines() if any(w in line for w in ("WORKER TIMEOUT", "ERROR", "Traceback", "rejected"))][:10]

    def stop(self) -> None:
        if self.proc is None:
            return
        workers = self.worker_pids()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        for pid in workers:  # normally already gone with the master
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.log_file.close()
        self.proc = None


@dataclass
class Body:
    name: str
    path: str
    locale: str
    data: bytes


def bodies_for(rs_set: gen.RequestSet) -> list[Body]:
    return [Body(r["name"], f"/cds-services/{r['service']}", r["locale"], Path(r["file"]).read_bytes()) for r in rs_set.requests]


def _post(conn: http.client.HTTPConnection, b: Body) -> tuple[int, bytes]:
    conn.request("POST", b.path, body=b.data, headers={"Content-Type": "application/json", "Accept-Language": b.locale})
    resp = conn.getresponse()
    return resp.status, resp.read()


def http_c1(port: int, bodies: list[Body], seconds: float, pids: list[int], warmup_rounds: int = 5) -> dict[str, Any]:
    """Concurrency 1 on one keep-alive connection; every response must be 200 with a cards array."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    cards: dict[str, int] = {}
    sizes: dict[str, int] = {}
    for _ in range(warmup_rounds):
        for b in bodies:
            status, data = _post(conn, b)
            if status != 200:
                raise RuntimeError(f"{b.name}: HTTP {status}: {data[:300]!r}")
            cards[b.name] = len(json.loads(data)["cards"])
            sizes[b.name] = len(data)
    per: dict[str, list[int]] = {b.name: [] for b in bodies}
    meter = CpuMeter(pids)
    conn_box, errs = [conn], [0, 0]
    with meter:
        _c1_loop(conn_box, port, bodies, per, seconds, errs)
    conn = conn_box[0]
    errors, reconnects = errs
    conn.close()
    all_ns = merge(per)
    return {**summarize_ms(all_ns), "errors": errors, "reconnects": reconnects, "seconds": seconds,
            "rps": len(all_ns) / seconds, "cards_per_request": cards, "response_bytes": sizes,
            **meter.report(len(all_ns)),
            "per_request_p50_ms": {k: summarize_ms(v)["p50"] for k, v in per.items()}}


def _c1_loop(conn_box: list[http.client.HTTPConnection], port: int, bodies: list[Body], per: dict[str, list[int]],
             seconds: float, errs: list[int]) -> None:
    conn = conn_box[0]
    clock = time.perf_counter_ns
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for b in bodies:
            t0 = clock()
            try:
                status, _ = _post(conn, b)
            except (http.client.HTTPException, OSError):
                errs[0] += 1
                errs[1] += 1
                conn.close()
                conn = conn_box[0] = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
                continue
            per[b.name].append(clock() - t0)
            if status != 200:
                errs[0] += 1


def _write_manifest(bodies_src: gen.RequestSet, path: Path) -> None:
    lines = [f"/cds-services/{r['service']}\t{r['locale']}\t{r['file']}" for r in bodies_src.requests]
    path.write_text("\n".join(lines) + "\n")


def wrk_run(port: int, manifest: Path, seconds: float, connections: int = 16, threads: int = 2) -> dict[str, Any]:
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
           "-s", str(LUA), f"http://127.0.0.1:{port}", "--", str(manifest)]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed ({out.returncode}): {out.stdout[-2000:]} {out.stderr[-2000:]}")
    res = json.loads(line[len("WRKJSON "):])
    dur = res["duration_us"] / 1e6
    errors = sum(res["errors"].values()) + res["non200"]
    lat = res["latency_us"]
    return {"tool": "wrk", "connections": connections, "threads": threads, "seconds": dur, "requests": res["requests"],
            "rps": res["requests"] / dur, "errors": errors, "error_detail": res["errors"], "non200": res["non200"],
            "mean": lat["mean"] / 1000, "p50": lat["p50"] / 1000, "p90": lat["p90"] / 1000, "p99": lat["p99"] / 1000,
            "p999": lat["p999"] / 1000, "max": lat["max"] / 1000}


def _py_load_worker(port: int, raw: list[tuple[str, str, bytes]], threads: int, seconds: float, offset: int) -> tuple[list[int], int]:
    bodies = [Body(f"b{i}", p, loc, d) for i, (p, loc, d) in enumerate(raw)]
    lat: list[int] = []
    errors = [0]
    lock = threading.Lock()
    deadline = time.perf_counter() + seconds

    def run(k: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[int] = []
        i = k
        while time.perf_counter() < deadline:
            b = bodies[i % len(bodies)]
            i += 1
            t0 = time.perf_counter_ns()
            try:
                status, _ = _post(conn, b)
                mine.append(time.perf_counter_ns() - t0)
                if status != 200:
                    with lock:
                        errors[0] += 1
            except (http.client.HTTPException, OSError):
                with lock:
                    errors[0] += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        with lock:
            lat.extend(mine)

    ts = [threading.Thread(target=run, args=(offset + k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return lat, errors[0]


def py_load(port: int, bodies: list[Body], seconds: float, connections: int = 16, procs: int = 4) -> dict[str, Any]:
    """Fallback load generator: `procs` processes x threads, one keep-alive connection per thread."""
    raw = [(b.path, b.locale, b.data) for b in bodies]
    per_proc = connections // procs
    with ProcessPoolExecutor(procs) as pool:
        futs = [pool.submit(_py_load_worker, port, raw, per_proc, seconds, k * per_proc) for k in range(procs)]
        results = [f.result() for f in futs]
    lat = [v for r in results for v in r[0]]
    errors = sum(r[1] for r in results)
    s = summarize_ms(lat)
    return {"tool": "python (4 processes x 4 threads)", "connections": connections, "seconds": seconds, "requests": len(lat),
            "rps": len(lat) / seconds, "errors": errors, **{k: s[k] for k in ("mean", "p50", "p90", "p99", "max")}}


def load_c16(port: int, rs_set: gen.RequestSet, seconds: float, workdir: Path, pids: list[int]) -> dict[str, Any]:
    meter = CpuMeter(pids)
    if shutil.which("wrk"):
        manifest = workdir / f"wrk-manifest-{rs_set.patient_size}.tsv"
        _write_manifest(rs_set, manifest)
        wrk_run(port, manifest, 3)  # warm-up, not recorded
        with meter:
            res = wrk_run(port, manifest, seconds)
    else:
        bodies = bodies_for(rs_set)
        py_load(port, bodies, 3)
        with meter:
            res = py_load(port, bodies, seconds)
    out = {**res, **meter.report(res["requests"])}
    per_req = out["server_cpu_ms_per_request"] + out["client_cpu_ms_per_request"]
    out["capacity_rps_estimate"] = (os.cpu_count() or 1) * 1000 / per_req if per_req else float("nan")
    return out


def pyspy_during_load(server: Server, rs_set: gen.RequestSet, seconds: float, workdir: Path, out_dir: Path) -> dict[str, Any] | None:
    """Sample one gunicorn worker with py-spy while wrk drives c=16 (a separate run; not in the numbers above)."""
    pyspy = shutil.which("py-spy") or (str(BIN / "py-spy") if (BIN / "py-spy").exists() else None)
    if pyspy is None or not shutil.which("wrk"):
        return None
    pids = server.worker_pids()
    if not pids:
        return None
    raw_out = out_dir / "profile-http-pyspy.collapsed.txt"
    manifest = workdir / f"wrk-manifest-{rs_set.patient_size}.tsv"
    _write_manifest(rs_set, manifest)
    spy = subprocess.Popen([pyspy, "record", "--pid", str(pids[0]), "--duration", str(int(seconds)), "--rate", "200",
                            "--format", "raw", "--gil", "--full-filenames", "--nonblocking", "--output", str(raw_out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(1.0)
    wrk_run(server.port, manifest, seconds)
    try:
        _, err = spy.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        spy.kill()
        return None
    if spy.returncode != 0 or not raw_out.exists():
        return {"error": (err or b"").decode(errors="replace")[-500:]}
    agg = aggregate_collapsed(raw_out.read_text(errors="replace"))
    agg["file"] = str(raw_out)
    return agg


# -----------------------------------------------------------------------------
# Report
# -----------------------------------------------------------------------------


def fmt(v: Any, digits: int = 2) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if v != v:
            return "-"
        return f"{v:,.{digits}f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def judge(results: dict[str, Any]) -> dict[str, Any]:
    m = f"{MAIN[0]}x{MAIN[1]}"
    inproc = results["inprocess"].get(m, {})
    c1 = results["http_c1"].get(m, {})
    c16 = results["http_c16"].get(m, {})
    values = {
        "engine_p99_ms": inproc.get("engine", {}).get("p99"),
        "http_c1_p50_ms": c1.get("p50"),
        "http_c1_p99_ms": c1.get("p99"),
        "http_c16_rps": c16.get("rps"),
        "http_c16_errors": c16.get("errors"),
        "startup_s": results["startup"].get(str(MAIN[0]), {}).get("load_lint_compile_s"),
        "rss_mb_per_worker": c16.get("memory", {}).get("max_worker_rss_mb") or c1.get("memory", {}).get("max_worker_rss_mb"),
        "ratio_10k_100": results.get("ratio_10k_100", {}).get("engine_mean"),
    }
    out = {}
    for key, (label, op, limit) in BUDGETS.items():
        v = values[key]
        if v is None or (isinstance(v, float) and v != v):
            status = "n/a"
        else:
            ok = v <= limit if op == "<=" else v >= limit
            status = "PASS" if ok else "FAIL"
        out[key] = {"label": label, "value": v, "budget": f"{op} {limit}", "status": status}
    return out


def print_report(results: dict[str, Any]) -> None:
    p = print
    meta = results["meta"]
    p()
    p(f"precision-cds benchmark  {meta['started']}  git {meta['git']['commit']}"
      f"{' (+' + str(len(meta['git']['dirty_files'])) + ' modified files in service/)' if meta['git']['dirty_files'] else ''}"
      f"  {meta['cpus']} CPUs  Python {meta['python']}  {'QUICK' if meta['quick'] else 'full'}")
    p(f"patient 250: {meta['patients'].get('250', {}).get('resources', '-')} resources, "
      f"{meta['patients'].get('250', {}).get('prefetch_kib', '-')} KiB prefetch; request mix: {', '.join(meta['request_mix'])}")
    p()
    p("Budgets (1,200 rules, 250-resource patient)")
    p(f"  {'measure':<44} {'value':>10} {'budget':>10}  status")
    for key, b in results["budgets"].items():
        v = b["value"]
        unit = {"engine_p99_ms": " ms", "http_c1_p50_ms": " ms", "http_c1_p99_ms": " ms", "http_c16_rps": " /s",
                "startup_s": " s", "rss_mb_per_worker": " MB", "ratio_10k_100": " x"}.get(key, "")
        p(f"  {b['label']:<44} {fmt(v) + unit if v is not None else '-':>10} {b['budget']:>10}  {b['status']}")
    p()
    p("Scaling (ms unless noted). start s: load+lint+compile wall/CPU seconds; engine/pipeline: in-process wall p50/p99 per request, [CPU p50];")
    p("HTTP: c=1 with --workers 1, c=16 with --workers 2; srv CPU = worker CPU ms per request; other = CPU share used by other processes")
    p(f"  {'rules':>6} {'pat.':>5} {'start s':>9} {'engine':>22} {'pipeline':>22} {'cand':>5} "
      f"{'HTTP c1 p50/p99':>16} {'srv CPU':>7} {'c16 req/s':>9} {'c16 p99':>8} {'other':>5} {'RSS MB':>6}")
    for n in results["plan"]["scales"]:
        for size in results["plan"]["patients"]:
            key = f"{n}x{size}"
            ip = results["inprocess"].get(key)
            if not ip:
                continue
            su_d = results["startup"].get(str(n), {})
            su = f"{fmt(su_d.get('load_lint_compile_s'), 1)}/{fmt(su_d.get('load_lint_compile_cpu_s'), 1)}"
            c1 = results["http_c1"].get(key, {})
            c16 = results["http_c16"].get(key, {})
            rss = (c16.get("memory") or c1.get("memory") or {}).get("max_worker_rss_mb")
            eng = f"{fmt(ip['engine']['p50'], 3)}/{fmt(ip['engine']['p99'], 3)} [{fmt(ip.get('engine_cpu', {}).get('p50'), 3)}]"
            pipe = f"{fmt(ip['pipeline']['p50'])}/{fmt(ip['pipeline']['p99'])} [{fmt(ip.get('pipeline_cpu', {}).get('p50'))}]"
            c1s = (fmt(c1["p50"]) + "/" + fmt(c1["p99"])) if "p50" in c1 else ("failed" if c1 else "-")
            srv = fmt(c1.get("server_cpu_ms_per_request")) if "p50" in c1 else "-"
            other = max((x.get("other_share") or 0.0) for x in (c1, c16)) if (c1 or c16) else None
            p(f"  {n:>6} {size:>5} {su:>9} {eng:>22} {pipe:>22} {fmt(ip['candidates_per_order_mean'], 1):>5} "
              f"{c1s:>16} {srv:>7} {(fmt(c16.get('rps'), 0) if 'rps' in c16 else ('failed' if c16 else '-')):>9} "
              f"{(fmt(c16.get('p99'), 1) if 'p99' in c16 else '-'):>8} {(f'{other:.0%}' if other is not None else '-'):>5} "
              f"{(fmt(rss, 0) if rss else '-'):>6}")
    gcs = [(k, v["gc"]) for k, v in results["inprocess"].items() if "gc" in v and k.endswith("x250")]
    if gcs:
        p("  full GC collection with the rule set loaded: " + ", ".join(
            f"{k.split('x')[0]} rules {fmt(g['full_collection_ms'], 0)} ms ({g['tracked_objects']:,} objects)" for k, g in gcs))
    main16 = results["http_c16"].get(f"{MAIN[0]}x{MAIN[1]}", {})
    if "capacity_rps_estimate" in main16:
        p(f"  c=16 at 1,200 rules: {fmt(main16['server_cpu_ms_per_request'])} ms server CPU + {fmt(main16['client_cpu_ms_per_request'])} ms load-generator CPU "
          f"per request -> at most ~{fmt(main16['capacity_rps_estimate'], 0)} req/s on this machine even when idle; "
          f"other processes took {main16.get('other_share', 0):.0%} of the CPUs during the run")
    r = results.get("ratio_10k_100")
    if r:
        p(f"  10,000 vs 100 rules, same orders: engine x{fmt(r['engine_mean'])}, pipeline x{fmt(r['pipeline_mean'])}"
          + (f", HTTP c1 p50 x{fmt(r['http_c1_p50'])}" if r.get("http_c1_p50") else "")
          + f"; candidates/order {fmt(r['candidates_100'], 1)} -> {fmt(r['candidates_10k'], 1)}")
    st = results.get("stages")
    if st:
        p()
        p("Where a request's time goes (1,200 rules, 250 resources; each step alone, p50 ms per request)")
        total = sum(v["p50"] for k, v in st.items() if not k.startswith("  "))
        p(f"  {'step':<44} {'p50':>8} {'mean':>8} {'CPU p50':>8}  share of p50 sum")
        for k, v in st.items():
            share = "" if k.startswith("  ") else f"{100 * v['p50'] / total:5.1f}%"
            p(f"  {k:<44} {fmt(v['p50'], 3):>8} {fmt(v['mean'], 3):>8} {fmt(v.get('cpu_p50'), 3):>8}  {share}")
        p(f"  {'sum of steps':<44} {fmt(total, 3):>8}")
        if results.get("app_inprocess"):
            p(f"  {'Flask app via test client (no socket)':<44} {fmt(results['app_inprocess']['p50'], 3):>8}")
        c1 = results["http_c1"].get(f"{MAIN[0]}x{MAIN[1]}", {})
        if "p50" in c1:
            p(f"  {'HTTP c=1 through gunicorn (loopback)':<44} {fmt(c1['p50'], 3):>8}")
    prof = results.get("profiles") or {}
    for label, agg in prof.items():
        if not agg or "top_self" not in agg:
            continue
        p()
        p(f"Profile {label}: top functions by self time | service/ functions by inclusive time")
        left = agg["top_self"][:10]
        right = agg.get("top_inclusive_service", [])[:10]
        for i in range(max(len(left), len(right))):
            a = f"{left[i]['pct']:5.1f}%  {left[i]['function'][:58]}" if i < len(left) else ""
            b = f"{right[i]['pct']:5.1f}%  {right[i]['function'][:58]}" if i < len(right) else ""
            p(f"  {a:<66} | {b}")
    for note in results["meta"].get("notes", []):
        p(f"note: {note}")
    p()
    p(f"JSON: {results['meta']['json']}")


# -----------------------------------------------------------------------------
# Main
# -----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="precision-cds benchmark suite (issue #7)")
    ap.add_argument("--quick", action="store_true", help="smoke version, under 2 minutes")
    ap.add_argument("--no-http", action="store_true", help="skip the gunicorn measurements")
    ap.add_argument("--profile", action="store_true", help="profile in --quick mode too")
    ap.add_argument("--no-profile", action="store_true", help="skip the profiles in the full run")
    ap.add_argument("--keep", action="store_true", help="keep the generated data folder")
    ap.add_argument("--workdir", type=Path, default=None, help="where to generate (default: a new temp folder)")
    ap.add_argument("--anchor", type=date.fromisoformat, default=date.today(), help="'today' for the generated data")
    ap.add_argument("--wait-idle", type=float, default=30.0, help="seconds to wait for other CPU load to settle before each phase")
    args = ap.parse_args(argv)
    plan = make_plan(args)
    started = datetime.now(timezone.utc)
    RESULTS.mkdir(exist_ok=True)
    stamp = started.strftime("%Y%m%d-%H%M%S") + ("-quick" if plan.quick else "")
    prof_dir = RESULTS / f"profiles-{stamp}"
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pcds-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    notes: list[str] = []
    results: dict[str, Any] = {
        "meta": {"started": started.isoformat(timespec="seconds"), "quick": plan.quick, "git": git_describe(),
                 "python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                 "wrk": shutil.which("wrk") is not None, "seed": gen.SEED, "anchor": args.anchor.isoformat(),
                 "workdir": str(workdir), "notes": notes, "loadavg_start": Path("/proc/loadavg").read_text().split()[:3], "request_mix": [m[0] for m in gen.REQUEST_MIX]},
        "plan": {"scales": plan.scales, "patients": plan.patients, "c1": plan.c1_configs, "c16": plan.c16_configs},
        "startup": {}, "inprocess": {}, "http_c1": {}, "http_c16": {}, "profiles": {},
    }
    t_all = time.perf_counter()
    try:
        data = generate_data(plan, workdir, args.anchor)
        results["meta"]["patients"] = {str(k): {"resources": v.resources, "prefetch_kib": round(v.prefetch_bytes / 1024)} for k, v in data.patients.items()}
        results["meta"]["packs"] = {str(k): v.packs for k, v in data.scales.items()}

        # 2. start-up in a fresh interpreter (also proves the generated packs lint)
        wait_for_quiet(plan.wait_idle_s, notes, "start-up")
        for n in plan.scales:
            log(f"start-up: {n} rules x{plan.startup_repeats[n]}")
            results["startup"][str(n)] = measure_startup(data.scales[n], plan.startup_repeats[n])
            log(f"  load+lint+compile {results['startup'][str(n)]['load_lint_compile_s']:.2f} s")

        # 3. in-process
        today = args.anchor
        wait_for_quiet(plan.wait_idle_s, notes, "in-process")
        for n in plan.scales:
            ruleset = load_ruleset_for(data.scales[n])
            for size in plan.patients:
                items = prepare(data.patients[size], ruleset.knowledge, today)
                log(f"in-process: {n} rules, patient {size}")
                results["inprocess"][f"{n}x{size}"] = measure_inprocess(ruleset, items, plan, today)
                ip = results["inprocess"][f"{n}x{size}"]
                log(f"  engine p50 {ip['engine']['p50']:.3f} p99 {ip['engine']['p99']:.3f} ms; pipeline p50 {ip['pipeline']['p50']:.2f} p99 {ip['pipeline']['p99']:.2f} ms")
                if (n, size) == MAIN:
                    log("stage breakdown")
                    results["stages"] = measure_stages(ruleset, items, plan, today, workdir)
                    app = make_app(data.scales[n], workdir)
                    results["app_inprocess"] = measure_app(app, items, plan)
                    if plan.profile:
                        prof_dir.mkdir(exist_ok=True)
                        from service.pipeline import run_hook

                        log("profiling pipeline and the Flask handler (pyinstrument)")
                        results["profiles"]["pipeline"] = profile_inprocess(
                            "pipeline", lambda: [run_hook(ruleset, p.request, p.resources, p.locale, today) for p in items], 4.0, prof_dir)
                        client = app.test_client()
                        results["profiles"]["http-handler"] = profile_inprocess(
                            "http-handler", lambda: [client.post(f"/cds-services/{p.service}", data=p.raw, content_type="application/json",
                                                                 headers={"Accept-Language": p.locale}) for p in items], 4.0, prof_dir)
                        results["profiles"]["startup"] = profile_inprocess(
                            "startup-1200", lambda: load_ruleset_for(data.scales[n]), 0.1, prof_dir)
                    del app
            del ruleset
            gc.collect()
        if 100 in plan.scales and 10000 in plan.scales:
            a, b = results["inprocess"]["100x250"], results["inprocess"]["10000x250"]
            results["ratio_10k_100"] = {
                "engine_mean": b["engine"]["mean"] / a["engine"]["mean"],
                "engine_p50": b["engine"]["p50"] / a["engine"]["p50"],
                "pipeline_mean": b["pipeline"]["mean"] / a["pipeline"]["mean"],
                "per_request_engine_p50": {k: b["per_request"][k]["engine"]["p50"] / a["per_request"][k]["engine"]["p50"] for k in a["per_request"]},
                "candidates_100": a["candidates_per_order_mean"], "candidates_10k": b["candidates_per_order_mean"],
            }

        # 4. HTTP
        if not args.no_http:
            for n, size in plan.c1_configs:
                key = f"{n}x{size}"
                wait_for_quiet(plan.wait_idle_s, notes, f"HTTP c1 {key}")
                server = Server(data.scales[n], 1, workdir, f"c1-{key}")
                try:
                    log(f"HTTP c=1: {n} rules, patient {size} (--workers 1)")
                    ready = server.start(timeout=600)
                    res = http_c1(server.port, bodies_for(data.patients[size]), plan.c1_s, server.worker_pids())
                    res["time_to_ready_s"] = ready
                    res["worker_class"] = server.worker_class()
                    res["memory"] = server.memory()
                    res["log_problems"] = server.problems_in_log()
                    results["http_c1"][key] = res
                    log(f"  ready in {ready:.1f} s; p50 {res['p50']:.2f} p99 {res['p99']:.2f} ms, errors {res['errors']}, worker RSS {res['memory']['max_worker_rss_mb']:.0f} MB")
                except Exception as exc:  # recorded, the suite goes on
                    results["http_c1"][key] = {"error": str(exc)[-2000:]}
                    log(f"  failed: {str(exc)[:500]}")
                finally:
                    server.stop()
            if results["http_c1"].get("100x250", {}).get("p50") and results["http_c1"].get("10000x250", {}).get("p50") and "ratio_10k_100" in results:
                results["ratio_10k_100"]["http_c1_p50"] = results["http_c1"]["10000x250"]["p50"] / results["http_c1"]["100x250"]["p50"]
            for n, size, seconds in plan.c16_configs:
                key = f"{n}x{size}"
                wait_for_quiet(plan.wait_idle_s, notes, f"HTTP c16 {key}")
                server = Server(data.scales[n], 2, workdir, f"c16-{key}")
                try:
                    log(f"HTTP c=16: {n} rules, patient {size} (--workers 2, {seconds:.0f} s)")
                    ready = server.start(timeout=600)
                    pids_before = server.worker_pids()
                    res = load_c16(server.port, data.patients[size], seconds, workdir, pids_before)
                    res["time_to_ready_s"] = ready
                    res["worker_class"] = server.worker_class()
                    res["memory"] = server.memory()
                    res["workers_restarted"] = sorted(pids_before) != sorted(server.worker_pids())
                    res["log_problems"] = server.problems_in_log()
                    results["http_c16"][key] = res
                    log(f"  {res['rps']:.0f} req/s, p99 {res['p99']:.1f} ms, errors {res['errors']}, worker RSS {res['memory']['max_worker_rss_mb']:.0f} MB")
                    if plan.profile and (n, size) == MAIN:
                        prof_dir.mkdir(exist_ok=True)
                        log("profiling a live worker under c=16 (py-spy, extra 10 s run)")
                        results["profiles"]["http-worker-pyspy"] = pyspy_during_load(server, data.patients[size], 10, workdir, prof_dir)
                except Exception as exc:
                    results["http_c16"][key] = {"error": str(exc)[-2000:]}
                    log(f"  failed: {str(exc)[:500]}")
                finally:
                    server.stop()
    finally:
        results["meta"]["elapsed_s"] = time.perf_counter() - t_all
        results["meta"]["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
        results["budgets"] = judge(results)
        path = RESULTS / f"bench-{stamp}.json"
        results["meta"]["json"] = str(path)
        path.write_text(json.dumps(results, indent=1, default=str))
        shutil.copyfile(path, RESULTS / ("latest-quick.json" if plan.quick else "latest.json"))
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print_report(results)
    log(f"done in {results['meta']['elapsed_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
