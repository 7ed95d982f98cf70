"""Hot reload against the production server: a broken pack never interrupts service."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from service.config import PROJECT_ROOT
from tests.conftest import example_request

PACK = Path("pgx") / "clopidogrel-cyp2c19.yaml"
SIGN = "/cds-services/precision-cds-order-sign"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    rules = tmp_path / "rules"
    shutil.copytree(PROJECT_ROOT / "rules", rules)
    port = _free_port()
    env = dict(os.environ, PCDS_RELOAD_INTERVAL_SECONDS="0.2", PCDS_DATA_DIR=str(tmp_path / "data"), PCDS_LOG_LEVEL="WARNING")
    cli = Path(sys.executable).parent / "precision-cds"
    proc = subprocess.Popen(
        [str(cli), "serve", "--port", str(port), "--workers", "2", "--rules", str(rules)],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{base}/cds-services", timeout=5).status_code == 200:
                    break
            except requests.RequestException:  # not listening yet, or still loading packs
                time.sleep(0.1)
        else:
            raise AssertionError("server did not start: " + (proc.stderr.read(4000).decode() if proc.stderr else ""))
        yield base, rules
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stderr:
            proc.stderr.close()


def _summary(base: str, session: requests.Session) -> str:
    r = session.post(f"{base}{SIGN}", json=example_request("zhang-wei-acs-cyp2c19-pm.order-sign"), timeout=10)
    assert r.status_code == 200, r.text
    return str(r.json()["cards"][0]["summary"])


def _wait_until(check: Any, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError("condition not reached in time")


def test_broken_pack_keeps_last_good_set_and_valid_update_is_picked_up(live_server: tuple[str, Path]) -> None:
    base, rules = live_server
    pack = rules / PACK
    original = pack.read_text(encoding="utf-8")
    before = _summary(base, requests.Session())
    assert "avoid clopidogrel" in before

    failures: list[str] = []
    summaries: list[str] = []
    stop = threading.Event()

    def stream() -> None:
        session = requests.Session()
        while not stop.is_set():
            try:
                summaries.append(_summary(base, session))
            except Exception as exc:  # any failure counts
                failures.append(repr(exc))

    threads = [threading.Thread(target=stream) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        # 1. a broken pack (schema error), written in place as an editor would
        pack.write_text(original.replace("indicator: warning", "indicator: severe", 1), encoding="utf-8")
        status_session = requests.Session()

        def refused() -> bool:
            s = status_session.get(f"{base}/status", timeout=5).json()
            return not s["lastReload"]["ok"]

        _wait_until(refused)
        status = status_session.get(f"{base}/status", timeout=5).json()
        problem = status["lastReload"]["problems"][0]
        assert problem["file"].endswith("clopidogrel-cyp2c19.yaml") and problem["line"] > 1
        time.sleep(1.0)  # keep the stream going against the broken files
        # 2. a valid update
        pack.write_text(original.replace("avoid clopidogrel after ACS/PCI", "avoid clopidogrel (updated) after ACS/PCI", 1), encoding="utf-8")
        _wait_until(lambda: "(updated)" in _summary(base, status_session))
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=20)
    assert failures == []
    assert len(summaries) > 20
    assert all("avoid clopidogrel" in s for s in summaries)
    status = requests.get(f"{base}/status", timeout=5).json()
    assert status["lastReload"]["ok"] is True
    assert any(p["id"] == "pgx-clopidogrel-cyp2c19" for p in status["packs"])


def test_admin_reload_requires_the_admin_token(tmp_path: Path) -> None:

    from service.app import create_app
    from service.config import load_settings

    settings = load_settings({"data_dir": tmp_path / "data", "reload_interval_seconds": 0, "admin_token": "t0ken"}, environ={})
    app = create_app(settings)
    try:
        client = app.test_client()
        assert client.post("/admin/reload").status_code == 401
        assert client.post("/admin/reload", headers={"Authorization": "Bearer wrong"}).status_code == 401
        r = client.post("/admin/reload", headers={"Authorization": "Bearer t0ken"})
        assert r.status_code == 200 and r.get_json()["ok"] is True
    finally:
        app.extensions["precision_cds"].store.close()
        app.extensions["precision_cds"].holder.stop()
