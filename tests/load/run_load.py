#!/usr/bin/env python3
"""Load test for precision-cds: the production server (gunicorn) on loopback, a realistic mix.

Not part of pytest. Starts `precision-cds serve --workers 2` on 127.0.0.1 with a
throw-away SQLite database and data dir under a temporary directory, then drives
it with `--concurrency` client processes (one keep-alive connection each) for
`--seconds`:

* ~45 % order-select, ~45 % order-sign: every example request in
  examples/requests/ (except the `.no-prefetch` variant, which would call the
  unreachable demo FHIR server), with the patient id rewritten to one of
  `--patients` distinct ids (every occurrence of the slug is replaced, so
  Patient.id, references, draft ids and the encounter stay consistent), a fresh
  hookInstance per call and no `fhirServer` (prefetch is complete, so the
  service never calls out: loopback only);
* ~10 % feedback, each naming a card (and, when accepted, a suggestion) uuid
  returned by an earlier response of the same client, each card at most once.

Closed loop by default (each client sends its next request when the previous
one is answered). `--rate R` paces the clients to R requests/s in total (the
soak uses this; see soak.py), optionally sampling each gunicorn worker's VmRSS
every `--rss-interval` seconds.

Everything is bounded: `--seconds` (wall time of the measured phase),
`--max-requests` (total), a 30 s socket timeout per request; clients are
terminated if they overrun, and the server is stopped (SIGTERM, then SIGKILL)
on every exit path.

Errors: any non-2xx status, socket error/timeout, or a 200 invocation whose
body is not a CDS Hooks response counts as one error. Exit status 1 when
errors > 0, the server died, or a worker was replaced.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import multiprocessing as mp
import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
REQUESTS = ROOT / "examples" / "requests"
HOST = "127.0.0.1"
PID_TOKEN = "@@PATIENT-ID@@"
HOOK_TOKEN = "@@HOOK-INSTANCE@@"
SOCKET_TIMEOUT = 30.0
MAX_ERROR_SAMPLES = 20


# ----------------------------------------------------------------------------- workload


def load_templates() -> dict[str, list[dict[str, Any]]]:
    """Example requests as text templates, by hook: {"order-select": [...], "order-sign": [...]}."""
    out: dict[str, list[dict[str, Any]]] = {"order-select": [], "order-sign": []}
    for path in sorted(REQUESTS.glob("*.json")):
        if "no-prefetch" in path.name:
            continue  # would fetch from the (unreachable, non-loopback) demo fhirServer
        body = json.loads(path.read_text(encoding="utf-8"))
        slug = body["context"]["patientId"]
        body.pop("fhirServer", None)
        body.pop("fhirAuthorization", None)
        body["hookInstance"] = HOOK_TOKEN
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        if slug in (PID_TOKEN, HOOK_TOKEN) or text.count(slug) < 3:
            raise SystemExit(f"{path.name}: patient id {slug!r} not found where expected")
        text = text.replace(slug, PID_TOKEN)
        out[body["hook"]].append({"name": path.name, "slug": slug, "text": text,
                                  "service": f"precision-cds-{body['hook']}"})
    if not out["order-select"] or not out["order-sign"]:
        raise SystemExit(f"need order-select and order-sign examples in {REQUESTS}")
    return out


def patient_id(slug: str, per_slug: int, rng: random.Random) -> str:
    return f"{slug}-load{rng.randrange(per_slug):04d}"


def _percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, math.ceil(p / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def _feedback_body(card: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    now = datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    item: dict[str, Any] = {"card": card["uuid"], "outcomeTimestamp": now}
    if card["suggestions"] and rng.random() < 0.5:
        item["outcome"] = "accepted"
        item["acceptedSuggestions"] = [{"id": card["suggestions"][0]}]
    else:
        item["outcome"] = "overridden"
        reason: dict[str, Any] = {"userComment": "load test override"}
        if card["reason"]:
            reason["reason"] = card["reason"]
        item["overrideReason"] = reason
    return {"feedback": [item]}


def _remember_cards(payload: Any, service: str, pool: deque) -> bool:
    """Queue the cards of a hook response for later feedback; False if it is not a CDS Hooks response."""
    if not isinstance(payload, dict) or not isinstance(payload.get("cards"), list):
        return False
    for card in payload["cards"]:
        if not isinstance(card, dict) or not isinstance(card.get("uuid"), str):
            return False
        reasons = card.get("overrideReasons") or []
        pool.append({
            "service": service,
            "uuid": card["uuid"],
            "suggestions": [s["uuid"] for s in card.get("suggestions") or [] if isinstance(s.get("uuid"), str)],
            "reason": reasons[0] if reasons and isinstance(reasons[0], dict) else None,
        })
    return True


def client_main(index: int, cfg: dict[str, Any], start_at: float, stop_at: float, result_path: str) -> None:
    """One client: one keep-alive connection, sequential requests until stop_at or its request cap."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the orchestrator decides when to stop
    rng = random.Random(cfg["seed"] * 1000 + index)
    templates = cfg["templates"]
    per_slug = cfg["per_slug"]
    weights = cfg["weights"]  # select, sign, feedback
    interval = cfg["interval"]  # seconds between this client's requests (0: closed loop)
    cap = cfg["max_per_client"]
    latencies: dict[str, list[float]] = {"order-select": [], "order-sign": [], "feedback": []}
    statuses: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    samples: list[str] = []
    cards: deque = deque(maxlen=500)
    patients: set[str] = set()
    substituted = 0
    conn: http.client.HTTPConnection | None = None
    first = last = None

    def error(kind: str, detail: str) -> None:
        errors[kind] += 1
        if len(samples) < MAX_ERROR_SAMPLES:
            samples.append(f"client {index}: {kind}: {detail[:300]}")

    while time.time() < start_at:
        time.sleep(min(0.05, start_at - time.time()))
    sent = 0
    while sent < cap:
        now = time.time()
        if interval:
            due = start_at + (index / max(1, cfg["concurrency"]) + sent) * interval
            if due >= stop_at:
                break
            if due > now:
                time.sleep(due - now)
        if time.time() >= stop_at:
            break
        roll = rng.random()
        if roll < weights[0]:
            kind = "order-select"
        elif roll < weights[0] + weights[1]:
            kind = "order-sign"
        else:
            kind = "feedback"
        if kind == "feedback" and not cards:
            kind = "order-sign"  # nothing to give feedback on yet
            substituted += 1
        if kind == "feedback":
            card = cards.popleft()
            path = f"/cds-services/{card['service']}/feedback"
            body = json.dumps(_feedback_body(card, rng)).encode()
            service = card["service"]
        else:
            tpl = rng.choice(templates[kind])
            pid = patient_id(tpl["slug"], per_slug, rng)
            patients.add(pid)
            service = tpl["service"]
            path = f"/cds-services/{service}"
            body = tpl["text"].replace(PID_TOKEN, pid).replace(HOOK_TOKEN, str(uuid.uuid4())).encode()
        sent += 1
        t0 = time.perf_counter()
        try:
            if conn is None:
                conn = http.client.HTTPConnection(HOST, cfg["port"], timeout=SOCKET_TIMEOUT)
            conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            data = resp.read()
            status = resp.status
            if resp.will_close:
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as exc:
            elapsed = (time.perf_counter() - t0) * 1000
            error("socket", f"{kind} {type(exc).__name__}: {exc} after {elapsed:.0f} ms")
            statuses["socket-error"] += 1
            if conn is not None:
                conn.close()
            conn = None
            continue
        elapsed = (time.perf_counter() - t0) * 1000
        first = first or time.time()
        last = time.time()
        statuses[str(status)] += 1
        latencies[kind].append(elapsed)
        if not 200 <= status < 300:
            error(f"http-{status}", f"{kind} {path}: {data[:300]!r}")
            continue
        if kind != "feedback":
            try:
                ok = _remember_cards(json.loads(data), service, cards)
            except ValueError:
                ok = False
            if not ok:
                error("bad-body", f"{kind}: {data[:300]!r}")
    if conn is not None:
        conn.close()
    Path(result_path).write_text(json.dumps({
        "latencies": latencies, "statuses": statuses, "errors": errors, "samples": samples,
        "patients": sorted(patients), "substituted": substituted, "first": first, "last": last,
    }))


# ----------------------------------------------------------------------------- server


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def children_of(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # pid (comm) state ppid ...: comm may contain spaces, so split after the last ')'
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == pid:
            out.append(int(entry))
    return sorted(out)


def vm_rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


class Server:
    """`precision-cds serve` in its own process group, on a snapshot of rules/ and knowledge/."""

    def __init__(self, workdir: Path, port: int, workers: int, threads: int | None,
                 rules: Path | None = None, knowledge: Path | None = None) -> None:
        self.workdir = workdir
        self.port = port
        for name, src in (("rules", rules), ("knowledge", knowledge)):
            shutil.copytree(src or ROOT / name, workdir / name)  # snapshot: the tree may be edited meanwhile
        exe = Path(sys.executable).parent / "precision-cds"
        cmd = [str(exe) if exe.exists() else "precision-cds", "serve", "--host", HOST, "--port", str(port),
               "--workers", str(workers), "--rules", str(workdir / "rules"), "--knowledge", str(workdir / "knowledge"),
               "--database-url", f"sqlite:///{workdir / 'load.sqlite3'}"]
        if threads:
            cmd += ["--threads", str(threads)]
        env = dict(os.environ, PCDS_DATA_DIR=str(workdir / "data"), PCDS_AUDIT_HASH_KEY="load-test-key")
        env.pop("PCDS_CONFIG", None)
        self.log_path = workdir / "server.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, cwd=workdir, env=env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.workers: list[int] = []

    def wait_ready(self, workers: int, timeout: float = 90) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited with {self.proc.returncode}; log:\n{self.log_path.read_text()[-3000:]}")
            try:
                status, _ = get(self.port, "/status")
            except OSError:
                status = 0
            kids = children_of(self.proc.pid)
            if status == 200 and len(kids) == workers:
                self.workers = kids
                return
            time.sleep(0.3)
        raise SystemExit(f"server not ready after {timeout}s; log:\n{self.log_path.read_text()[-3000:]}")

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)  # gunicorn master: graceful stop of its workers
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=10)
        self.log.close()
        return self.proc.returncode


# ----------------------------------------------------------------------------- orchestration


def parse_args(argv: list[str] | None = None, *, defaults: dict[str, Any] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=300, help="measured duration (default 300)")
    p.add_argument("--concurrency", type=int, default=16, help="client processes / connections (default 16)")
    p.add_argument("--rate", type=float, default=0, help="total requests/s; 0 = closed loop, as fast as answered")
    p.add_argument("--patients", type=int, default=400, help="distinct patient ids (default 400)")
    p.add_argument("--max-requests", type=int, default=1_000_000, help="hard cap on requests in total")
    p.add_argument("--warmup", type=float, default=5, help="unmeasured warm-up seconds (default 5)")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    p.add_argument("--threads", type=int, default=None, help="threads per worker (default: the CLI's)")
    p.add_argument("--port", type=int, default=0, help="loopback port (default: a free one)")
    p.add_argument("--rss-interval", type=float, default=0, help="sample workers' VmRSS every N s (0: start/end only)")
    p.add_argument("--mix", default="45,45,10", help="order-select,order-sign,feedback percentages")
    p.add_argument("--rules", type=Path, help="rule packs to serve (default: rules/; copied at start)")
    p.add_argument("--knowledge", type=Path, help="knowledge folder (default: knowledge/; copied at start)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (db, server log)")
    p.add_argument("--json-out", type=Path, help="also write the report as JSON here")
    if defaults:
        p.set_defaults(**defaults)
    return p.parse_args(argv)


def run_phase(args: argparse.Namespace, port: int, templates: dict, seconds: float, workdir: Path, tag: str,
              server: Server | None = None, rss: dict[int, list[tuple[float, int]]] | None = None) -> dict[str, Any]:
    mix = [float(x) for x in args.mix.split(",")]
    weights = [m / sum(mix) for m in mix]
    slugs = {t["slug"] for ts in templates.values() for t in ts}
    cfg = {
        "templates": templates, "port": port, "weights": weights, "seed": args.seed + (0 if tag == "measured" else 7),
        "per_slug": max(1, args.patients // len(slugs)), "concurrency": args.concurrency,
        "interval": (args.concurrency / args.rate) if args.rate else 0.0,
        "max_per_client": max(1, args.max_requests // args.concurrency),
    }
    start_at = time.time() + 1.0
    stop_at = start_at + seconds
    ctx = mp.get_context("fork")
    results = [workdir / f"{tag}-{i}.json" for i in range(args.concurrency)]
    procs = [ctx.Process(target=client_main, args=(i, cfg, start_at, stop_at, str(results[i])), daemon=True)
             for i in range(args.concurrency)]
    for proc in procs:
        proc.start()
    cpu0 = os.times()
    next_sample = start_at
    hard_stop = stop_at + SOCKET_TIMEOUT + 15
    while any(p.is_alive() for p in procs) and time.time() < hard_stop:
        if rss is not None and server is not None and time.time() >= next_sample:
            sample_rss(server, rss, start_at)
            next_sample += args.rss_interval or 1e9
        time.sleep(0.2)
    overran = [p for p in procs if p.is_alive()]
    for proc in overran:
        proc.terminate()
    for proc in procs:
        proc.join(timeout=10)
    if rss is not None and server is not None:
        sample_rss(server, rss, start_at)
    cpu1 = os.times()
    merged: dict[str, Any] = {"latencies": {"order-select": [], "order-sign": [], "feedback": []},
                              "statuses": Counter(), "errors": Counter(), "samples": [], "patients": set(),
                              "substituted": 0, "first": [], "last": []}
    for i, path in enumerate(results):
        if not path.exists():
            merged["errors"]["client-crashed"] += 1
            merged["samples"].append(f"client {i} produced no result (exit {procs[i].exitcode})")
            continue
        part = json.loads(path.read_text())
        for k, v in part["latencies"].items():
            merged["latencies"][k].extend(v)
        merged["statuses"].update(part["statuses"])
        merged["errors"].update(part["errors"])
        merged["samples"].extend(part["samples"])
        merged["patients"].update(part["patients"])
        merged["substituted"] += part["substituted"]
        if part["first"]:
            merged["first"].append(part["first"])
            merged["last"].append(part["last"])
    merged["client_cpu_s"] = (cpu1.children_user + cpu1.children_system) - (cpu0.children_user + cpu0.children_system)
    merged["wall_s"] = seconds
    return merged


def sample_rss(server: Server, rss: dict[int, list[tuple[float, int]]], t0: float | None) -> None:
    """VmRSS of the master and each worker; t is seconds since load start (-1: idle baseline)."""
    t = -1.0 if t0 is None else round(max(0.0, time.time() - t0), 1)
    for pid in [server.proc.pid] + children_of(server.proc.pid):
        kib = vm_rss_kib(pid)
        if kib is not None:
            rss.setdefault(pid, []).append((t, kib))


def summarize(m: dict[str, Any]) -> dict[str, Any]:
    all_lat = sorted(x for v in m["latencies"].values() for x in v)
    done = len(all_lat)
    err = sum(m["errors"].values())
    out: dict[str, Any] = {
        "requests": done + m["statuses"].get("socket-error", 0),
        "answered": done,
        "throughput_rps": round(done / m["wall_s"], 1),
        "latency_ms": {"p50": round(_percentile(all_lat, 50), 1), "p90": round(_percentile(all_lat, 90), 1),
                       "p99": round(_percentile(all_lat, 99), 1), "max": round(all_lat[-1], 1) if all_lat else None},
        "by_kind": {},
        "statuses": dict(m["statuses"]),
        "errors": err,
        "error_kinds": dict(m["errors"]),
        "error_samples": m["samples"][:MAX_ERROR_SAMPLES],
        "distinct_patients": len(m["patients"]),
        "feedback_substituted_by_sign": m["substituted"],
        "client_cpu_s": round(m["client_cpu_s"], 1),
    }
    for kind, values in m["latencies"].items():
        v = sorted(values)
        out["by_kind"][kind] = {"count": len(v), "share": round(len(v) / done, 3) if done else 0,
                                "p50": round(_percentile(v, 50), 1), "p99": round(_percentile(v, 99), 1)}
    return out


def db_counts(db: Path) -> dict[str, int]:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            return {t: con.execute(f"select count(*) from {t}").fetchone()[0] for t in ("invocations", "cards_issued", "feedback")}
        finally:
            con.close()
    except sqlite3.Error as exc:
        return {"error": str(exc)}  # type: ignore[dict-item]


def log_findings(log_path: Path) -> dict[str, Any]:
    text = log_path.read_text(errors="replace") if log_path.exists() else ""
    bad = [ln for ln in text.splitlines() if any(w in ln for w in (" ERROR ", " CRITICAL ", "Traceback", "[ERROR]",
                                                                 "[CRITICAL]", "WORKER TIMEOUT", " WARNING "))
           and "AUTHENTICATION IS OFF" not in ln]
    return {"lines": len(text.splitlines()), "problem_lines": len(bad), "problem_samples": bad[:10]}


def main(argv: list[str] | None = None, *, defaults: dict[str, Any] | None = None, title: str = "load") -> int:
    args = parse_args(argv, defaults=defaults)
    if not 0 < args.seconds <= 4 * 3600 or not 0 < args.concurrency <= 256:
        raise SystemExit("--seconds must be in (0, 14400] and --concurrency in (0, 256]")
    templates = load_templates()
    port = args.port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix=f"pcds-{title}-"))
    server = Server(workdir, port, args.workers, args.threads, args.rules, args.knowledge)
    rss: dict[int, list[tuple[float, int]]] = {}
    report: dict[str, Any] = {"title": title, "port": port, "workdir": str(workdir),
                              "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    code = 1
    try:
        server.wait_ready(args.workers)
        print(f"[{title}] server on {HOST}:{port}, master {server.proc.pid}, workers {server.workers}; "
              f"workdir {workdir}", flush=True)
        status = json.loads(get(port, "/status")[1])
        report["ruleset"] = {"version": status.get("version"), "rules": status.get("rules"),
                             "packs": [p.get("id") for p in status.get("packs", [])]}
        print(f"[{title}] ruleset {report['ruleset']}", flush=True)
        sample_rss(server, rss, None)  # idle baseline, before warm-up
        warm = run_phase(args, port, templates, args.warmup, workdir, "warmup") if args.warmup > 0 else None
        print(f"[{title}] measuring for {args.seconds:.0f}s at concurrency {args.concurrency}"
              + (f", {args.rate} req/s" if args.rate else ", closed loop"), flush=True)
        measured = run_phase(args, port, templates, args.seconds, workdir, "measured", server,
                             rss if args.rss_interval else None)
        report["result"] = summarize(measured)
        phases = [m for m in (warm, measured) if m]
        report["expected_rows"] = {
            "invocations": sum(len(m["latencies"]["order-select"]) + len(m["latencies"]["order-sign"]) for m in phases),
            "feedback": sum(len(m["latencies"]["feedback"]) for m in phases),
        }  # every answered call is audited (non-2xx too); every answered feedback stored
        workers_now = children_of(server.proc.pid)
        report["server_alive"] = server.proc.poll() is None
        report["workers_start"], report["workers_end"] = server.workers, workers_now
        code = 0 if report["result"]["errors"] == 0 and report["server_alive"] \
            and workers_now == server.workers else 1
    finally:
        report["server_exit"] = server.stop()
        report["db_rows"] = db_counts(workdir / "load.sqlite3")
        expected = report.get("expected_rows")
        if expected and any(report["db_rows"].get(k) != v for k, v in expected.items()):
            report["db_mismatch"] = True
            code = 1
        spool = workdir / "data" / "spool" / "invocations.spool.jsonl"
        report["spool_bytes"] = spool.stat().st_size if spool.exists() else 0
        report["server_log"] = log_findings(server.log_path)
        report["rss_kib"] = {}
        for pid, series in rss.items():
            role = "master" if pid == server.proc.pid else "worker"
            under_load = [kib for t, kib in series if t >= 0] or [series[-1][1]]
            report["rss_kib"][str(pid)] = {
                "role": role, "idle": series[0][1] if series[0][0] < 0 else None, "start": under_load[0], "end": series[-1][1],
                "max": max(kib for _, kib in series), "samples": len(series), "series": series,
            }
        if args.json_out:
            args.json_out.write_text(json.dumps(report, indent=2))
        print_report(report)
        if not args.keep and code == 0:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"[{title}] kept {workdir} (server.log, load.sqlite3)")
    return code


def print_report(r: dict[str, Any]) -> None:
    res = r.get("result")
    print(f"\n=== {r['title']} report ===")
    if res:
        lat = res["latency_ms"]
        print(f"requests {res['requests']}  answered {res['answered']}  throughput {res['throughput_rps']} req/s")
        print(f"latency ms: p50 {lat['p50']}  p90 {lat['p90']}  p99 {lat['p99']}  max {lat['max']}")
        for kind, k in res["by_kind"].items():
            print(f"  {kind:13s} n={k['count']:7d} share={k['share']:.3f} p50={k['p50']} p99={k['p99']}")
        print(f"statuses {res['statuses']}")
        print(f"ERRORS {res['errors']} {res['error_kinds']}")
        for s in res["error_samples"]:
            print(f"  {s}")
        print(f"distinct patients {res['distinct_patients']}; feedback slots without a card yet: "
              f"{res['feedback_substituted_by_sign']}; client CPU {res['client_cpu_s']} s")
    print(f"server alive at end: {r.get('server_alive')}; workers start {r.get('workers_start')} end {r.get('workers_end')}; "
          f"exit {r.get('server_exit')}")
    print(f"db rows {r['db_rows']} (expected {r.get('expected_rows')}"
          f"{', MISMATCH' if r.get('db_mismatch') else ''}); spool bytes {r['spool_bytes']}")
    log = r["server_log"]
    print(f"server log: {log['lines']} lines, {log['problem_lines']} warning/error lines")
    for line in log["problem_samples"]:
        print(f"  {line[:300]}")
    for pid, s in r["rss_kib"].items():
        if s["samples"] > 1:
            print(f"RSS {s['role']} {pid}: idle {s['idle']} KiB, start {s['start']}, end {s['end']}, max {s['max']}, "
                  f"growth start->end {s['end'] - s['start']:+d} KiB over {s['samples']} samples")


if __name__ == "__main__":
    sys.exit(main())
