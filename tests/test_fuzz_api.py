"""Property-based tests against a LIVE server (werkzeug on 127.0.0.1:<ephemeral>, auth on).

1. schemathesis generates requests from service/openapi.yaml (as served at
   /openapi.yaml) and checks: no 5xx, documented status codes and content
   types, and response bodies that match the documented schemas.
2. hypothesis mutates the example order-sign request with FHIR oddities
   (missing fields, wrong types, huge strings, deep nesting, unknown resource
   types, Bundles without `type`, a 10,000-entry prefetch): every answer is a
   400 / 412 / 413 OperationOutcome or a valid 200, never a 5xx, never a hang.

The requests' `fhirServer` is always rewritten to a local fake FHIR server, so
nothing generated here ever leaves 127.0.0.1. Bounded: well under 60 s.
"""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import unquote

import jsonschema
import pytest
import requests
import schemathesis
import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.api.security import OPENAPI_PATH
from service.cards.invariants import response_violations
from tests.conftest import example_request
from tests.fhir_fake import FakeFhirServer, Route, fake_fhir_server
from tests.keys import (
    SigningKey,
    close_app,
    ec_key,
    live_server,
    make_app,
    token,
    write_auth_config,
    write_jwks,
)

SEED_NAME = "zhang-wei-acs-cyp2c19-pm.order-sign"
SIGN = "/cds-services/precision-cds-order-sign"
PATIENT = "zhang-wei-acs-cyp2c19-pm"
REQUEST_TIMEOUT = 10.0  # a hang is a failure, not a stuck test run
#: Deterministic by default (a shared suite must not turn red at random); PCDS_FUZZ_RANDOM=1 explores.
DERANDOMIZE = os.environ.get("PCDS_FUZZ_RANDOM", "") not in ("1", "true", "yes")
#: PCDS_FUZZ_SCALE=10 for a deeper local run (the default keeps the file well under 60 s).
SCALE = max(0.1, float(os.environ.get("PCDS_FUZZ_SCALE", "1")))
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]
ISSUER = "https://fuzz-ehr.example.org"


@dataclass
class Live:
    base: str
    key: SigningKey
    fhir: FakeFhirServer
    app: Any

    def auth(self, path: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token(self.key, path, iss=ISSUER)}"}

    def local_fhir(self, body: Any) -> Any:
        """Point any http(s) fhirServer at the local fake server (never the outside world)."""
        if isinstance(body, dict) and isinstance(body.get("fhirServer"), str) \
                and body["fhirServer"].lower().startswith(("http://", "https://")):
            body["fhirServer"] = self.fhir.base_url
        return body


def _serve_seed_patient(fhir: FakeFhirServer) -> None:
    """The fake FHIR server answers the seed patient's searches, so dropping a prefetch key still gives 200."""
    prefetch = example_request(SEED_NAME)["prefetch"]
    fhir.routes[f"/Patient/{PATIENT}"] = Route(body=prefetch["patient"])
    for key, path in (("medications", "/MedicationRequest"), ("conditions", "/Condition"), ("procedures", "/Procedure"),
                      ("observations", "/Observation"), ("coverage", "/Coverage")):
        fhir.routes[path] = Route(body=prefetch[key])


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    key = ec_key("fuzz-es384", "ES384")
    write_jwks(tmp / "jwks.json", key)
    config = write_auth_config(tmp / "auth.toml", [{"iss": ISSUER, "jwks_file": "jwks.json"}])
    app = make_app(tmp / "data", config)
    try:
        with fake_fhir_server({}) as fhir, live_server(app) as base:
            _serve_seed_patient(fhir)
            yield Live(base, key, fhir, app)
    finally:
        close_app(app)


@pytest.fixture(scope="module")
def openapi_document(live: Live) -> dict[str, Any]:
    r = requests.get(live.base + "/openapi.yaml", timeout=REQUEST_TIMEOUT)
    assert r.status_code == 200
    return yaml.safe_load(r.text)


# -- the document ----------------------------------------------------------------------


def test_served_document_is_the_file_and_valid_openapi_3_1(live: Live, openapi_document: dict[str, Any]) -> None:
    assert openapi_document == yaml.safe_load(OPENAPI_PATH.read_text(encoding="utf-8"))
    assert openapi_document["openapi"].startswith("3.1.")
    schema = schemathesis.openapi.from_dict(openapi_document)
    schema.validate()  # against the OpenAPI 3.1 meta-schema
    ops = {op.ok().label for op in schema.get_all_operations()}
    assert {"GET /cds-services", "POST /cds-services/{service_id}", "POST /cds-services/{service_id}/feedback",
            "GET /status", "GET /openapi.yaml"} <= ops


def test_document_validation_would_catch_a_broken_document(openapi_document: dict[str, Any]) -> None:
    broken = copy.deepcopy(openapi_document)
    broken["paths"]["/status"]["get"]["responses"] = "not a responses object"
    with pytest.raises(Exception):
        schemathesis.openapi.from_dict(broken).validate()


def _component_validator(document: dict[str, Any], name: str) -> jsonschema.protocols.Validator:
    schema = {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    return jsonschema.Draft202012Validator(schema)


def test_example_requests_and_answers_match_the_document(live: Live, openapi_document: dict[str, Any]) -> None:
    request_validator = _component_validator(openapi_document, "HookRequest")
    response_validator = _component_validator(openapi_document, "CdsResponse")
    names = sorted(p.stem for p in (Path(__file__).resolve().parent.parent / "examples" / "requests").glob("*.json"))
    assert names
    for name in names:
        body = live.local_fhir(example_request(name))
        request_validator.validate(body)
        path = f"/cds-services/precision-cds-{body['hook']}"
        r = requests.post(live.base + path, json=body, headers=live.auth(path), timeout=REQUEST_TIMEOUT)
        assert r.status_code == 200, (name, r.text[:300])
        response_validator.validate(r.json())
    discovery = requests.get(live.base + "/cds-services", headers=live.auth("/cds-services"), timeout=REQUEST_TIMEOUT)
    _component_validator(openapi_document, "DiscoveryResponse").validate(discovery.json())


# -- 1. schemathesis -----------------------------------------------------------------------

# Loaded from the file (the test above proves /openapi.yaml serves exactly this file); requests go
# to the live server via base_url. (schemathesis.pytest.from_fixture breaks on pytest 9.)
schema = schemathesis.openapi.from_path(OPENAPI_PATH)


@schema.parametrize()
@settings(
    max_examples=int(20 * SCALE),
    deadline=None,
    database=None,
    derandomize=DERANDOMIZE,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)
def test_api_conforms_to_openapi(case: Any, live: Live) -> None:
    live.local_fhir(case.body)
    path = unquote(case.formatted_path)
    headers = live.auth(path) if path.startswith("/cds-services") else None
    started = time.monotonic()
    case.call_and_validate(base_url=live.base, headers=headers, checks=CHECKS, timeout=REQUEST_TIMEOUT)
    assert time.monotonic() - started < REQUEST_TIMEOUT


# -- 2. FHIR oddities posted to order-sign ---------------------------------------------------

DEEP = "__precision_cds_deep__"


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every JSON path in `node` (dict keys and list indexes), parents before children."""
    out: list[tuple[Any, ...]] = []
    if isinstance(node, dict):
        for k, v in node.items():
            out.append(prefix + (k,))
            out.extend(_paths(v, prefix + (k,)))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out.append(prefix + (i,))
            out.extend(_paths(v, prefix + (i,)))
    return out


def _parent(body: Any, path: tuple[Any, ...]) -> Any:
    node = body
    for step in path[:-1]:
        node = node[step]
    return node


def _nested(depth: int, kind: str) -> str:
    if kind == "list":
        return "[" * depth + "1" + "]" * depth
    return '{"a":' * depth + "1" + "}" * depth


def serialise(body: Any, deep: tuple[int, str] | None = None) -> bytes:
    text = json.dumps(body, ensure_ascii=False)
    if deep is not None:
        text = text.replace(json.dumps(DEEP), _nested(*deep), 1)
    return text.encode("utf-8")


def post_raw(live: Live, payload: bytes) -> requests.Response:
    started = time.monotonic()
    r = requests.post(live.base + SIGN, data=payload, timeout=REQUEST_TIMEOUT,
                      headers={"Content-Type": "application/json", **live.auth(SIGN)})
    assert time.monotonic() - started < REQUEST_TIMEOUT
    return r


def assert_sane(r: requests.Response, allowed: tuple[int, ...] = (200, 400, 412, 413)) -> Any:
    assert r.status_code < 500, f"{r.status_code}: {r.text[:300]}"
    assert r.status_code in allowed, f"{r.status_code}: {r.text[:300]}"
    body = r.json()
    if r.status_code == 200:
        assert response_violations(body) == []
    else:
        assert body["resourceType"] == "OperationOutcome"
        assert body["issue"][0]["diagnostics"]
    return body


wrong_values = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=30),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.sampled_from(["", " ", "\u0000", "Patient/", "../../etc/passwd", "Bundle", "MedicationRequest", "1e309"]),
)


random_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["resourceType", "id", "entry", "resource", "coding", "code", "system", "value", "subject",
                         "reference", "status", "valueCodeableConcept", "component", "x"]), children, max_size=4),
    max_leaves=25,
)


@st.composite
def mutated_requests(draw: st.DrawFn) -> tuple[dict[str, Any], tuple[int, str] | None]:
    body = example_request(SEED_NAME)
    deep: tuple[int, str] | None = None
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = _paths(body)
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent, last = _parent(body, path), path[-1]
        kind = draw(st.sampled_from(["delete", "wrong_type", "huge_string", "odd_text", "deep", "unknown_type",
                                     "no_bundle_type", "random_json", "swap"]))
        if kind == "delete":
            del parent[last]
        elif kind == "wrong_type":
            parent[last] = draw(wrong_values)
        elif kind == "huge_string":
            parent[last] = draw(st.sampled_from(["A", "\u00e9", "\U0001F9EC", "*2/"])) * draw(st.sampled_from([10_000, 300_000, 1_200_000]))
        elif kind == "odd_text":
            parent[last] = draw(st.text(min_size=1, max_size=60))
        elif kind == "deep" and deep is None:
            parent[last] = DEEP
            deep = (draw(st.sampled_from([50, 500, 800, 990, 5000, 100_000])), draw(st.sampled_from(["list", "dict"])))
        elif kind == "unknown_type":
            resources = [p for p in _paths(body) if p[-1] == "resourceType"]
            target = draw(st.sampled_from(resources)) if resources else None
            if target is not None:
                _parent(body, target)["resourceType"] = draw(st.sampled_from(["Foo", "Observation2", "", "Bundle", "Patient", "OperationOutcome", "medicationrequest"]))
        elif kind == "random_json":
            parent[last] = draw(random_json)
        elif kind == "swap":
            other = draw(st.sampled_from(_paths(body)))
            if other[: len(path)] != path and path[: len(other)] != other:  # neither contains the other
                other_parent = _parent(body, other)
                parent[last], other_parent[other[-1]] = other_parent[other[-1]], parent[last]
        elif kind == "no_bundle_type":
            for p in _paths(body):
                if p[-1] == "type" and isinstance(_parent(body, p), dict) and _parent(body, p).get("resourceType") == "Bundle":
                    del _parent(body, p)["type"]
                    break
    return body, deep


@given(mutated_requests())
@settings(max_examples=int(250 * SCALE), deadline=None, database=None, derandomize=DERANDOMIZE,
          suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
def test_mutated_order_sign_requests_never_fail_the_server(live: Live, mutated: tuple[dict[str, Any], tuple[int, str] | None]) -> None:
    body, deep = mutated
    assert_sane(post_raw(live, serialise(live.local_fhir(body), deep)))


# -- named oddities (deterministic) ----------------------------------------------------------


def _seed(live: Live) -> dict[str, Any]:
    return live.local_fhir(example_request(SEED_NAME))


def _cards(live: Live, body: Any, deep: tuple[int, str] | None = None) -> list[dict[str, Any]]:
    r = post_raw(live, serialise(body, deep))
    result = assert_sane(r, (200,))
    return result["cards"]


def test_seed_gives_its_card(live: Live) -> None:
    cards = _cards(live, _seed(live))
    assert [c["source"]["topic"]["code"] for c in cards] == ["clopidogrel-cyp2c19-acs-pci-poor"]


@pytest.mark.parametrize("path", [
    ("hook",), ("hookInstance",), ("context",), ("context", "userId"), ("context", "patientId"),
    ("context", "draftOrders"), ("context", "draftOrders", "resourceType"),
    ("context", "draftOrders", "entry", 0, "resource", "resourceType"), ("context", "draftOrders", "entry", 0, "resource", "id"),
])
def test_missing_required_field_is_400_naming_it(live: Live, path: tuple[Any, ...]) -> None:
    body = _seed(live)
    del _parent(body, path)[path[-1]]
    result = assert_sane(post_raw(live, serialise(body)), (400,))
    named = result["issue"][0]["expression"][0]
    assert named.split(".")[0].split("[")[0] == str(path[0]) or named == "(body)"


@pytest.mark.parametrize("path,value", [
    (("context",), []), (("context", "patientId"), 42), (("context", "draftOrders"), "Bundle"),
    (("context", "draftOrders", "entry"), {"resource": {}}), (("prefetch",), ["patient"]),
    (("hookInstance",), 12345), (("fhirServer",), 1), (("fhirAuthorization",), "Bearer x"),
    (("context", "draftOrders", "entry", 0, "resource", "dosageInstruction"), "twice daily"),
    (("context", "draftOrders", "entry", 0, "resource", "medicationCodeableConcept", "coding"), {"code": 1}),
])
def test_wrong_types_are_400(live: Live, path: tuple[Any, ...], value: Any) -> None:
    body = _seed(live)
    _parent(body, path)[path[-1]] = value
    assert_sane(post_raw(live, serialise(body)), (400,))


@pytest.mark.parametrize("path,value,status", [
    (("prefetch", "patient"), "not a resource", (200, 412)),
    (("prefetch", "observations"), 7, (200, 412)),
    (("prefetch", "observations", "entry"), "none", (200, 400, 412)),
    (("prefetch", "observations", "entry", 0), None, (200, 400, 412)),
    (("prefetch", "observations", "entry", 0, "resource", "valueCodeableConcept"), [1, 2], (200, 400, 412)),
])
def test_odd_prefetch_values_are_answered(live: Live, path: tuple[Any, ...], value: Any, status: tuple[int, ...]) -> None:
    body = _seed(live)
    _parent(body, path)[path[-1]] = value
    assert_sane(post_raw(live, serialise(body)), status)


@pytest.mark.parametrize("size", [100_000, 4_000_000])
@pytest.mark.parametrize("path", [("context", "patientId"), ("context", "draftOrders", "entry", 0, "resource", "note"),
                                  ("prefetch", "patient", "name", 0, "text")])
def test_huge_strings(live: Live, path: tuple[Any, ...], size: int) -> None:
    body = _seed(live)
    _parent(body, path)[path[-1]] = "\u00e9" * (size // 2) if path[-1] != "note" else [{"text": "x" * size}]
    assert_sane(post_raw(live, serialise(body)))


def test_body_over_the_limit_is_413(live: Live) -> None:
    body = _seed(live)
    body["prefetch"]["patient"]["name"][0]["text"] = "x" * (6 * 1024 * 1024)
    assert_sane(post_raw(live, serialise(body)), (413,))


@pytest.mark.parametrize("depth", [100, 500, 800, 990, 5000, 200_000])
@pytest.mark.parametrize("kind", ["list", "dict"])
@pytest.mark.parametrize("path", [("prefetch", "observations", "entry", 0, "resource", "extension"),
                                  ("prefetch", "observations", "entry", 0, "resource", "valueCodeableConcept", "coding"),
                                  ("prefetch", "conditions", "entry", 0, "resource", "code"),
                                  ("context", "draftOrders", "entry", 0, "resource", "extension"),
                                  ("context", "encounterId")])
def test_deep_nesting(live: Live, path: tuple[Any, ...], depth: int, kind: str) -> None:
    body = _seed(live)
    _parent(body, path)[path[-1]] = DEEP
    assert_sane(post_raw(live, serialise(body, (depth, kind))))


def test_unknown_resource_type_in_draft_orders_is_400(live: Live) -> None:
    body = _seed(live)
    body["context"]["draftOrders"]["entry"].append({"resource": {"resourceType": "Spaceship", "id": "x1"}})
    result = assert_sane(post_raw(live, serialise(body)), (400,))
    assert result["issue"][0]["expression"] == ["context.draftOrders.entry[1].resource.resourceType"]


def test_unknown_resource_types_in_prefetch_are_ignored(live: Live) -> None:
    body = _seed(live)
    for key in ("observations", "conditions", "medications"):
        body["prefetch"][key].setdefault("entry", []).append({"resource": {"resourceType": "Spaceship", "id": "s1", "subject": {"reference": f"Patient/{PATIENT}"}}})
    body["prefetch"]["coverage"] = {"resourceType": "Spaceship", "id": "s2"}
    assert [c["source"]["topic"]["code"] for c in _cards(live, body)] == ["clopidogrel-cyp2c19-acs-pci-poor"]


def test_bundles_without_type_are_accepted(live: Live) -> None:
    body = _seed(live)
    body["context"]["draftOrders"].pop("type", None)
    for value in body["prefetch"].values():
        if isinstance(value, dict) and value.get("resourceType") == "Bundle":
            value.pop("type", None)
    assert [c["source"]["topic"]["code"] for c in _cards(live, body)] == ["clopidogrel-cyp2c19-acs-pci-poor"]


def _filler_observation(i: int) -> dict[str, Any]:
    return {"resource": {
        "resourceType": "Observation", "id": f"filler-{i}", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "2345-7", "display": "Glucose"}]},
        "subject": {"reference": f"Patient/{PATIENT}"},
        "effectiveDateTime": "2026-11-20T08:00:00Z",
        "valueQuantity": {"value": 5.0 + (i % 10) / 10, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"},
    }}


def test_ten_thousand_entry_prefetch_genotype_first(live: Live) -> None:
    body = _seed(live)
    body["prefetch"]["observations"]["entry"].extend(_filler_observation(i) for i in range(10_000))
    started = time.monotonic()
    assert [c["source"]["topic"]["code"] for c in _cards(live, body)] == ["clopidogrel-cyp2c19-acs-pci-poor"]
    assert time.monotonic() - started < REQUEST_TIMEOUT


def test_ten_thousand_entry_prefetch_genotype_last(live: Live) -> None:
    """The genotype after 10,000 other results: the answer must still use it (or admit it cannot: 412)."""
    body = _seed(live)
    original = body["prefetch"]["observations"]["entry"]
    body["prefetch"]["observations"]["entry"] = [_filler_observation(i) for i in range(10_000)] + original
    r = post_raw(live, serialise(body))
    result = assert_sane(r, (200, 412))
    if r.status_code == 200:
        codes = [c["source"]["topic"]["code"] for c in result["cards"]]
        assert codes == ["clopidogrel-cyp2c19-acs-pci-poor"], f"wrong advice from a truncated prefetch: {codes}"


@pytest.mark.parametrize("payload", [
    b"", b"null", b"[]", b"\"string\"", b"{", b"{\"hook\": NaN}", b"{\"hook\": Infinity}",
    b"\xef\xbb\xbf{}", b"\xff\xfe\x00{", "{\"hook\": \"order-sign\u0000\"}".encode(),
    b"{\"hook\": \"order-sign\", \"hook\": 1}", b"1" * 10_000, b"[" * 100_000,
])
def test_malformed_bodies_are_400(live: Live, payload: bytes) -> None:
    assert_sane(post_raw(live, payload), (400,))


def test_nan_and_huge_numbers_inside_a_valid_request(live: Live) -> None:
    text = serialise(_seed(live)).decode()
    for literal in ("NaN", "Infinity", "-Infinity", "1e400", "9" * 5000):
        odd = text.replace('"value": 75', f'"value": {literal}', 1)
        assert_sane(post_raw(live, odd.encode()))


# -- regressions: 500s and silently dropped cards the fuzzer once found ---------------------------


@pytest.mark.parametrize("status", [[], {}, ["final"]])
def test_observation_status_of_the_wrong_type_is_not_a_500(live: Live, status: Any) -> None:
    body = _seed(live)
    body["prefetch"]["observations"]["entry"][0]["resource"]["status"] = status
    assert_sane(post_raw(live, serialise(body)), (200, 400, 412))


def test_bare_sandbox_draft_is_answered_with_the_card(live: Live) -> None:
    body = _seed(live)
    draft = body["context"]["draftOrders"]["entry"][0]["resource"]
    body["context"]["draftOrders"]["entry"][0]["resource"] = {
        k: v for k, v in draft.items() if k in ("resourceType", "id", "medicationCodeableConcept")}
    assert [c["source"]["topic"]["code"] for c in _cards(live, body)] == ["clopidogrel-cyp2c19-acs-pci-poor"]


@pytest.mark.parametrize("field,value", [("subject", None), ("subject", {}), ("encounter", None), ("requester", {})])
def test_empty_draft_fields_do_not_drop_the_warning(live: Live, field: str, value: Any) -> None:
    body = _seed(live)
    body["context"]["draftOrders"]["entry"][0]["resource"][field] = value
    r = post_raw(live, serialise(body))
    result = assert_sane(r, (200, 400))
    if r.status_code == 200:
        assert [c["source"]["topic"]["code"] for c in result["cards"]] == ["clopidogrel-cyp2c19-acs-pci-poor"]
