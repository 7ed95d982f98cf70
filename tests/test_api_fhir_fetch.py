"""Missing prefetch is fetched from the EHR's FHIR server (a local HTTP server started here)."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest

from tests.conftest import example_request
from tests.fhir_fake import FakeFhirServer, Route, bundle

SIGN = "/cds-services/precision-cds-order-sign"
TOKEN = "s3cr3t-access-token-for-test"


def _with_server(body: dict[str, Any], fhir: FakeFhirServer) -> dict[str, Any]:
    body["fhirServer"] = fhir.base_url
    body["fhirAuthorization"] = {
        "access_token": TOKEN, "token_type": "Bearer", "expires_in": 300,
        "scope": "patient/*.read", "subject": "precision-cds",
    }
    return body


def _serve_patient(fhir: FakeFhirServer, prefetch: dict[str, Any]) -> None:
    """Serve the example prefetch from the fake server, each key at its search path."""
    fhir.routes["/Patient/zhang-wei-acs-cyp2c19-pm"] = Route(body=prefetch["patient"])
    for key, path in (("medications", "/MedicationRequest"), ("conditions", "/Condition"), ("procedures", "/Procedure"),
                      ("observations", "/Observation"), ("coverage", "/Coverage")):
        fhir.routes[path] = Route(body=prefetch[key])


def post(client: Any, body: Any) -> Any:
    return client.post(SIGN, data=json.dumps(body), content_type="application/json")


def test_missing_prefetch_is_fetched_with_the_bearer_token(client: Any, fhir: FakeFhirServer, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    body = example_request("zhang-wei-acs-cyp2c19-pm.order-sign")
    _serve_patient(fhir, body["prefetch"])
    body["prefetch"] = {"patient": body["prefetch"]["patient"]}
    r = post(client, _with_server(body, fhir))
    assert r.status_code == 200, r.get_data(as_text=True)
    assert len(r.get_json()["cards"]) == 1
    paths = {req.path for req in fhir.requests}
    assert {"/Condition", "/Observation", "/Procedure", "/MedicationRequest"} <= paths
    assert "/Patient/zhang-wei-acs-cyp2c19-pm" not in paths  # it was in the prefetch
    assert all(req.authorization == f"Bearer {TOKEN}" for req in fhir.requests)
    assert all(req.query.get("patient") == ["zhang-wei-acs-cyp2c19-pm"] for req in fhir.requests)
    assert TOKEN not in caplog.text


def test_null_and_operation_outcome_prefetch_are_fetched(client: Any, fhir: FakeFhirServer) -> None:
    body = example_request("zhang-wei-acs-cyp2c19-pm.order-sign")
    _serve_patient(fhir, body["prefetch"])
    body["prefetch"]["observations"] = None
    body["prefetch"]["conditions"] = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "timeout"}]}
    r = post(client, _with_server(body, fhir))
    assert r.status_code == 200
    assert len(r.get_json()["cards"]) == 1
    assert {"/Observation", "/Condition"} <= {req.path for req in fhir.requests}


def test_paged_prefetch_bundle_is_followed(client: Any, fhir: FakeFhirServer) -> None:
    body = example_request("zhang-wei-acs-cyp2c19-pm.order-sign")
    observations = [e["resource"] for e in body["prefetch"]["observations"]["entry"]]
    genotype = [o for o in observations if "84413-4" in json.dumps(o["code"])]
    others = [o for o in observations if o not in genotype]
    fhir.routes["/Observation"] = Route(pages=[others, genotype])
    first_page = bundle(others, next_url=f"{fhir.base_url}/Observation?patient=zhang-wei-acs-cyp2c19-pm&_page=2")
    body["prefetch"]["observations"] = first_page
    r = post(client, _with_server(body, fhir))
    assert r.status_code == 200
    assert len(r.get_json()["cards"]) == 1, "the genotype on page 2 must be read"


@pytest.mark.parametrize("failure", [Route(status=500), Route(status=401), Route(status=404), Route(invalid_json=True), Route(drop=True)])
def test_required_data_unobtainable_is_412(client: Any, fhir: FakeFhirServer, failure: Route, store: Any) -> None:
    body = example_request("zhang-wei-acs-cyp2c19-pm.order-sign")
    _serve_patient(fhir, body["prefetch"])
    fhir.routes["/Observation"] = failure
    del body["prefetch"]["observations"]
    r = post(client, _with_server(body, fhir))
    assert r.status_code == 412
    assert "observations" in r.get_json()["issue"][0]["diagnostics"]
    assert store.invocations(limit=1)[0]["http_status"] == 412


def test_missing_prefetch_and_no_fhir_server_is_412(client: Any) -> None:
    body = example_request("zhang-wei-acs-cyp2c19-pm.order-sign")
    del body["prefetch"]["conditions"]
    body.pop("fhirServer", None)
    r = post(client, body)
    assert r.status_code == 412


def test_optional_data_failing_still_gives_cards(client: Any, fhir: FakeFhirServer) -> None:
    body = example_request("zhang-wei-acs-cyp2c19-pm.order-sign")
    _serve_patient(fhir, body["prefetch"])
    fhir.routes["/Coverage"] = Route(status=500)
    del body["prefetch"]["coverage"]
    r = post(client, _with_server(body, fhir))
    assert r.status_code == 200
    assert len(r.get_json()["cards"]) == 1


def test_slow_fhir_server_times_out_within_the_budget(settings: Any, fhir: FakeFhirServer) -> None:
    from dataclasses import replace

    from service.app import create_app

    app = create_app(replace(settings, fhir_total_budget=1.0, fhir_read_timeout=0.8))
    try:
        body = example_request("zhang-wei-acs-cyp2c19-pm.order-sign")
        _serve_patient(fhir, body["prefetch"])
        fhir.routes["/Observation"] = Route(body=body["prefetch"]["observations"], delay=5)
        del body["prefetch"]["observations"]
        started = time.monotonic()
        r = app.test_client().post(SIGN, data=json.dumps(_with_server(body, fhir)), content_type="application/json")
        elapsed = time.monotonic() - started
        assert r.status_code == 412
        assert elapsed < 1.0 + 0.8, f"took {elapsed:.2f}s with a 1.0s budget"
    finally:
        app.extensions["precision_cds"].store.close()
