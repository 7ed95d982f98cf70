"""Prefetch fetched from a REAL FHIR R4 server: Medplum's in-memory FHIR router with bearer-token checking.

tests/medplum/server.mjs wraps `@medplum/fhir-router` (MemoryRepository) in a
loopback HTTP server that requires `Authorization: Bearer <token>` and rewrites
`patient=<bare id>` to `patient=Patient/<id>` (Medplum needs the typed
reference; CDS Hooks templates give the bare id). We load the example patient
bundles into it, send hook requests without prefetch, and check the service
fetched what it needed and returned the expected cards.

Needs Node >= 20.19 and `npm ci --prefix tests/medplum`. Without them the tests
skip, except under CI=true, where they fail (.ci/run must install them).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.conftest import EXAMPLES, example_request

MEDPLUM_DIR = Path(__file__).resolve().parent / "medplum"
SERVER_JS = MEDPLUM_DIR / "server.mjs"
SIGN = "/cds-services/precision-cds-order-sign"
START_TIMEOUT = 30.0
SETUP_HINT = ".ci/run must run `npm ci --prefix tests/medplum` (Node >= 20.19 on PATH)"


def _missing_prerequisite() -> str | None:
    if shutil.which("node") is None:
        return "node is not on PATH"
    if not (MEDPLUM_DIR / "node_modules" / "@medplum" / "fhir-router" / "package.json").is_file():
        return "tests/medplum/node_modules is missing"
    return None


def _require_prerequisites() -> None:
    missing = _missing_prerequisite()
    if missing is None:
        return
    message = f"real FHIR server tests: {missing}; {SETUP_HINT}"
    if os.environ.get("CI") == "true":
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


class MedplumServer:
    def __init__(self, proc: subprocess.Popen[str], base_url: str, token: str, log: Path) -> None:
        self.proc = proc
        self.base_url = base_url
        self.token = token
        self.log = log
        self.http = requests.Session()
        self.http.trust_env = False  # loopback: never through a proxy from the environment

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Content-Type": "application/fhir+json"}

    def load(self, bundle_path: Path) -> None:
        r = self.http.post(self.base_url, data=bundle_path.read_bytes(), headers=self._headers(), timeout=20)
        assert r.status_code == 200, r.text[:500]
        statuses = [e["response"]["status"] for e in r.json()["entry"]]
        assert all(s.startswith("2") for s in statuses), statuses

    def requests_seen(self) -> list[dict[str, Any]]:
        admin = self.base_url.rsplit("/fhir", 1)[0] + "/__admin/requests"
        r = self.http.get(admin, headers=self._headers(), timeout=10)
        r.raise_for_status()
        return [q for q in r.json()["requests"] if q["path"].startswith("/fhir")]  # not the admin calls


@pytest.fixture(scope="module")
def medplum(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MedplumServer]:
    _require_prerequisites()
    token = secrets.token_urlsafe(24)
    log = tmp_path_factory.mktemp("medplum") / "server.log"
    env = dict(os.environ, FHIR_BEARER_TOKEN=token)
    with open(log, "w", encoding="utf-8") as err:
        proc = subprocess.Popen(
            ["node", str(SERVER_JS), "--port", "0", "--exit-with-stdin"],
            cwd=MEDPLUM_DIR, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True,
        )
    server: MedplumServer | None = None
    try:
        ready: dict[str, Any] = {}
        reader = threading.Thread(target=lambda: ready.update(line=proc.stdout.readline()), daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(START_TIMEOUT)
        line = ready.get("line") or ""
        if not line.strip():
            pytest.fail(f"Medplum test server did not start within {START_TIMEOUT:.0f}s "
                        f"(exit {proc.poll()}): {log.read_text()[-2000:]}", pytrace=False)
        info = json.loads(line)
        server = MedplumServer(proc, info["baseUrl"], token, log)
        for name in ("li-na-nstemi-untested", "zhang-wei-acs-cyp2c19-pm"):
            server.load(EXAMPLES / "patients" / f"{name}.json")
        yield server
    finally:
        if server is not None:
            server.http.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


def _hook(client: Any, body: dict[str, Any], medplum: MedplumServer, token: str) -> Any:
    body["fhirServer"] = medplum.base_url
    body["fhirAuthorization"] = {
        "access_token": token, "token_type": "Bearer", "expires_in": 300,
        "scope": "patient/*.read", "subject": "precision-cds",
    }
    return client.post(SIGN, data=json.dumps(body), content_type="application/json")


def _rule_ids(response: Any) -> list[str]:
    return [card["source"]["topic"]["code"] for card in response.get_json()["cards"]]


def _searches_since(medplum: MedplumServer, before: int) -> list[dict[str, Any]]:
    return medplum.requests_seen()[before:]


def test_wrapper_requires_the_bearer_token(medplum: MedplumServer) -> None:
    url = f"{medplum.base_url}/Patient/li-na-nstemi-untested"
    assert medplum.http.get(url, timeout=10).status_code == 401
    assert medplum.http.get(url, headers={"Authorization": "Bearer wrong"}, timeout=10).status_code == 401
    ok = medplum.http.get(url, headers={"Authorization": f"Bearer {medplum.token}"}, timeout=10)
    assert ok.status_code == 200 and ok.json()["id"] == "li-na-nstemi-untested"


def test_untested_patient_gets_the_test_first_card(client: Any, medplum: MedplumServer) -> None:
    body = example_request("li-na-nstemi-untested.order-sign.no-prefetch")
    assert set(body["prefetch"]) == {"patient"}
    before = len(medplum.requests_seen())
    r = _hook(client, body, medplum, medplum.token)
    assert r.status_code == 200, r.get_data(as_text=True)
    assert "clopidogrel-cyp2c19-test-before-acs-pci" in _rule_ids(r)
    fetched = _searches_since(medplum, before)
    paths = {f["path"] for f in fetched}
    assert {"/fhir/MedicationRequest", "/fhir/Condition", "/fhir/Procedure", "/fhir/Observation", "/fhir/Coverage"} <= paths
    assert "/fhir/Patient/li-na-nstemi-untested" not in paths  # it was in the prefetch
    assert all(f["authorized"] and f["status"] == 200 for f in fetched), fetched


def test_poor_metabolizer_genotype_is_read_from_the_server(client: Any, medplum: MedplumServer) -> None:
    body = example_request("zhang-wei-acs-cyp2c19-pm.order-sign")
    del body["prefetch"]
    before = len(medplum.requests_seen())
    r = _hook(client, body, medplum, medplum.token)
    assert r.status_code == 200, r.get_data(as_text=True)
    rules = _rule_ids(r)
    assert "clopidogrel-cyp2c19-acs-pci-poor" in rules, rules
    assert "clopidogrel-cyp2c19-test-before-acs-pci" not in rules, "the genotype on the server was not seen"
    paths = {f["path"] for f in _searches_since(medplum, before)}
    assert "/fhir/Patient/zhang-wei-acs-cyp2c19-pm" in paths


def test_wrong_token_is_412(client: Any, medplum: MedplumServer, store: Any) -> None:
    body = example_request("li-na-nstemi-untested.order-sign.no-prefetch")
    before = len(medplum.requests_seen())
    r = _hook(client, body, medplum, "not-" + medplum.token)
    assert r.status_code == 412, r.get_data(as_text=True)
    assert r.get_json()["resourceType"] == "OperationOutcome"
    fetched = _searches_since(medplum, before)
    assert fetched and all(f["status"] == 401 and not f["authorized"] for f in fetched), fetched
    assert store.invocations(limit=1)[0]["http_status"] == 412
