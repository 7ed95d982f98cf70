"""Privacy over HTTP: no patient data, genotypes or tokens in any log record; the audit keeps only a keyed hash.

Every example request (examples/requests/) goes to a live server with
authentication on, with a bearer JWT and a FHIR access token; the
no-prefetch variant makes the service fetch from a local fake FHIR server
(search URLs carry the patient id). Logging is captured at DEBUG for every
logger the service does not deliberately quieten (it sets `urllib3` to
WARNING because urllib3 logs request lines, with patient ids, at DEBUG).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from service.config import PROJECT_ROOT
from tests.conftest import example_request
from tests.fhir_fake import FakeFhirServer, Route, bundle, fake_fhir_server
from tests.keys import SigningKey, close_app, ec_key, live_server, make_app, token, write_auth_config, write_jwks

ISSUER = "https://privacy-ehr.example.org"
FHIR_TOKEN = "fhir-access-token-7f3c9a2e51b84d06"
HASH_KEY = "test-key"
REQUEST_NAMES = sorted(p.stem for p in (PROJECT_ROOT / "examples" / "requests").glob("*.json"))
#: Genotype notations: star-allele diplotypes, rsIDs, HLA alleles, protein/cDNA variants.
GENOTYPE_PATTERNS = [
    re.compile(r"\*\d+[A-Za-z]*\s*/\s*\*\d+"),
    re.compile(r"\brs\d{3,}\b"),
    re.compile(r"HLA-[A-Z0-9]+\*\d+(:\d+)*"),
    re.compile(r"\bp\.[A-Z][a-z]{2}\d+[A-Z][a-z]{2}\b"),
    re.compile(r"\bc\.\d+[-+]?\d*[ACGT]>[ACGT]\b"),
]
GENOTYPE_LITERALS = ["*2/*3", "*1/*2", "*1/*3", "rs9923231", "HLA-B*15:02", "L858R", "p.Leu858Arg"]


@dataclass
class Sensitive:
    patient_ids: set[str] = field(default_factory=set)
    names: set[str] = field(default_factory=set)
    identifiers: set[str] = field(default_factory=set)
    tokens: set[str] = field(default_factory=set)

    def add_patient(self, body: dict[str, Any]) -> None:
        self.patient_ids.add(body["context"]["patientId"])
        patient = (body.get("prefetch") or {}).get("patient") or {}
        for name in patient.get("name", []):
            for part in [name.get("text"), name.get("family"), *name.get("given", [])]:
                if isinstance(part, str) and part.strip():
                    self.names.add(part.strip())
        for ident in patient.get("identifier", []):
            if isinstance(ident.get("value"), str):
                self.identifiers.add(ident["value"])

    def findings(self, text: str) -> list[str]:
        found: list[str] = []
        for value in self.patient_ids | self.identifiers | self.tokens:
            if value in text:
                found.append(f"id/token {value[:12]}...")
        for name in self.names:
            # Latin names as whole words (so "Li" does not match "List"); CJK names as substrings.
            pattern = re.escape(name) if not name.isascii() else rf"(?<![A-Za-z]){re.escape(name)}(?![A-Za-z])"
            if re.search(pattern, text):
                found.append(f"name {name!r}")
        for literal in GENOTYPE_LITERALS:
            if literal in text:
                found.append(f"genotype {literal!r}")
        for pattern in GENOTYPE_PATTERNS:
            match = pattern.search(text)
            if match:
                found.append(f"genotype-like {match.group()!r}")
        return found


def _serve(fhir: FakeFhirServer, patient_slug: str) -> None:
    """Serve a patient's example bundle from the fake FHIR server, each type at its search path."""
    data = json.loads((PROJECT_ROOT / "examples" / "patients" / f"{patient_slug}.json").read_text(encoding="utf-8"))
    by_type: dict[str, list[dict[str, Any]]] = {}
    for entry in data["entry"]:
        res = entry["resource"]
        by_type.setdefault(res["resourceType"], []).append(res)
        if res["resourceType"] == "Patient":
            fhir.routes[f"/Patient/{res['id']}"] = Route(body=res)
    for rtype, resources in by_type.items():
        if rtype != "Patient":
            fhir.routes[f"/{rtype}"] = Route(body=bundle(resources))


@dataclass
class Server:
    base: str
    key: SigningKey
    fhir: FakeFhirServer
    app: Any
    sensitive: Sensitive

    def post(self, path: str, body: Any, *, jwt: str | None = None) -> requests.Response:
        jwt = jwt or token(self.key, path, iss=ISSUER)
        self.sensitive.tokens.add(jwt)
        self.sensitive.tokens.add(jwt.rsplit(".", 1)[-1])
        return requests.post(self.base + path, json=body, headers={"Authorization": f"Bearer {jwt}"}, timeout=10)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    key = ec_key("privacy-1", "ES384")
    write_jwks(tmp_path / "jwks.json", key)
    config = write_auth_config(tmp_path / "auth.toml", [{"iss": ISSUER, "jwks_file": "jwks.json"}])
    app = make_app(tmp_path / "data", config, audit_hash_key=HASH_KEY)
    sensitive = Sensitive(tokens={FHIR_TOKEN})
    try:
        with fake_fhir_server({}) as fhir, live_server(app) as base:
            yield Server(base, key, fhir, app, sensitive)
    finally:
        close_app(app)


def _capture_everything(caplog: Any) -> None:
    """DEBUG on the root and on every logger that set its own level, except those the service quietens."""
    caplog.set_level(logging.DEBUG)
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and logger.level != logging.NOTSET \
                and not (name == "urllib3" or name.startswith("urllib3.")):
            caplog.set_level(logging.DEBUG, logger=name)


def _log_text(caplog: Any) -> str:
    parts: list[str] = []
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    for record in caplog.records:
        parts.append(formatter.format(record))  # includes exc_info / stack_info text
        parts.append(repr(record.args))
    return "\n".join(parts)


def test_no_patient_data_genotypes_or_tokens_in_any_log(server: Server, caplog: Any) -> None:
    assert logging.getLogger("urllib3").getEffectiveLevel() >= logging.WARNING  # set by security.init_app
    _capture_everything(caplog)
    statuses: dict[str, int] = {}
    for name in REQUEST_NAMES:
        body = example_request(name)
        server.sensitive.add_patient(body)
        slug = body["context"]["patientId"]
        if set(body.get("prefetch") or {}) != {"patient", "medications", "conditions", "procedures", "observations", "bodyMeasures", "coverage"}:
            _serve(server.fhir, slug)  # the no-prefetch variant fetches the rest
        body["fhirServer"] = server.fhir.base_url
        body["fhirAuthorization"] = {"access_token": FHIR_TOKEN, "token_type": "Bearer", "expires_in": 300,
                                     "scope": "patient/*.read", "subject": "precision-cds"}
        r = server.post(f"/cds-services/precision-cds-{body['hook']}", body)
        statuses[name] = r.status_code
    assert all(code == 200 for code in statuses.values()), statuses
    assert any(req.query.get("patient") for req in server.fhir.requests), "the no-prefetch request fetched nothing"

    # Unhappy paths log too: a refused token, a malformed request, data not obtainable (412).
    body = example_request("zhang-wei-acs-cyp2c19-pm.order-sign")
    bad = token(server.key, "/cds-services/other", iss=ISSUER)
    assert server.post("/cds-services/precision-cds-order-sign", body, jwt=bad).status_code == 401
    broken = example_request("zhang-wei-acs-cyp2c19-pm.order-sign")
    broken["context"]["draftOrders"]["entry"][0]["resource"]["id"] = "bad id with spaces zhang-wei-acs-cyp2c19-pm"
    assert server.post("/cds-services/precision-cds-order-sign", broken).status_code == 400
    missing = example_request("zhang-wei-acs-cyp2c19-pm.order-sign")
    missing["prefetch"] = {"patient": missing["prefetch"]["patient"]}
    missing["fhirServer"] = server.fhir.base_url + "/nothing-here"
    missing["fhirAuthorization"] = {"access_token": FHIR_TOKEN, "token_type": "Bearer", "expires_in": 300,
                                    "scope": "patient/*.read", "subject": "precision-cds"}
    assert server.post("/cds-services/precision-cds-order-sign", missing).status_code == 412

    text = _log_text(caplog)
    assert caplog.records, "nothing was logged: the capture is broken"
    assert any(r.name.startswith("service") and r.levelno == logging.DEBUG for r in caplog.records), "DEBUG not captured"
    assert any("authentication refused" in r.getMessage() for r in caplog.records)
    assert server.sensitive.patient_ids and server.sensitive.names
    findings = server.sensitive.findings(text)
    assert not findings, f"sensitive data in the logs: {sorted(set(findings))}"


def test_sensitive_data_detector_is_not_blind(server: Server) -> None:
    """The checks above would see a leak (guards against a vacuous pass)."""
    s = Sensitive(tokens={FHIR_TOKEN})
    s.add_patient(example_request("zhang-wei-acs-cyp2c19-pm.order-sign"))
    assert s.findings("GET /Condition?patient=zhang-wei-acs-cyp2c19-pm")
    assert s.findings("patient Zhang Wei arrived") and s.findings("张伟") and s.findings("MRN DEMO-0000101")
    assert s.findings("CYP2C19 *2/*3") and s.findings("VKORC1 rs9923231") and s.findings("HLA-B*58:01 positive")
    assert s.findings(f"Bearer {FHIR_TOKEN}")
    assert not s.findings("List of rules: clopidogrel-cyp2c19-acs-pci-poor fired; Weight 80 kg")


def test_audit_table_holds_only_the_keyed_hash(server: Server) -> None:
    names = [n for n in REQUEST_NAMES if "no-prefetch" not in n]
    ids = set()
    for name in names:
        body = example_request(name)
        body.pop("fhirServer", None)
        ids.add(body["context"]["patientId"])
        assert server.post(f"/cds-services/precision-cds-{body['hook']}", body).status_code == 200
    store = server.app.extensions["precision_cds"].store
    rows = store.invocations(limit=1000)
    assert len(rows) == len(names)
    expected = {hmac.new(HASH_KEY.encode(), pid.encode(), hashlib.sha256).hexdigest() for pid in ids}
    assert {row["patient_hash"] for row in rows} == expected
    assert "patient_id" not in rows[0]
    for row in rows:
        assert re.fullmatch(r"[0-9a-f]{64}", row["patient_hash"])
        flat = json.dumps(row, default=str)
        for pid in ids:
            assert pid not in flat
        # an unkeyed SHA-256 of the id (guessable from the id alone) is not what is stored
        assert row["patient_hash"] not in {hashlib.sha256(pid.encode()).hexdigest() for pid in ids}
