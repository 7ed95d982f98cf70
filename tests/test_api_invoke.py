"""The CDS Hooks HTTP API end to end: discovery, invocation, errors, invariants."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from service.cards.invariants import response_violations
from tests.conftest import example_request

SIGN = "/cds-services/precision-cds-order-sign"
SELECT = "/cds-services/precision-cds-order-select"
PM_ACS = "zhang-wei-acs-cyp2c19-pm"


def post(client: Any, url: str, body: Any, **kw: Any) -> Any:
    data = body if isinstance(body, (bytes, str)) else json.dumps(body)
    return client.post(url, data=data, content_type="application/json", **kw)


def assert_valid(response_json: dict[str, Any]) -> None:
    assert response_violations(response_json) == []


# -- discovery ------------------------------------------------------------------


def test_discovery_lists_order_sign_and_order_select_with_prefetch(client: Any) -> None:
    r = client.get("/cds-services")
    assert r.status_code == 200
    services = {s["id"]: s for s in r.get_json()["services"]}
    assert services["precision-cds-order-sign"]["hook"] == "order-sign"
    assert services["precision-cds-order-select"]["hook"] == "order-select"
    for s in services.values():
        assert s["description"] and s["title"] and s["usageRequirements"]
        prefetch = s["prefetch"]
        assert prefetch["patient"] == "Patient/{{context.patientId}}"
        for key in ("medications", "conditions", "procedures", "observations", "coverage"):
            assert "{{context.patientId}}" in prefetch[key]
        assert "status=active" in prefetch["medications"]
        assert "category=laboratory" in prefetch["observations"]


# -- the first rule end to end ----------------------------------------------------


def test_poor_metabolizer_after_pci_gets_clopidogrel_warning_with_replacements(client: Any) -> None:
    r = post(client, SIGN, example_request(f"{PM_ACS}.order-sign"))
    assert r.status_code == 200, r.get_data(as_text=True)
    body = r.get_json()
    assert_valid(body)
    cards = body["cards"]
    assert len(cards) == 1
    card = cards[0]
    assert card["indicator"] == "warning"
    assert "Poor Metabolizer" in card["summary"] and "clopidogrel" in card["summary"]
    assert "*2/*3" in card["detail"] and "CPIC Strong" in card["detail"]
    assert card["source"]["url"].startswith("https://cpicpgx.org/")
    assert card["source"]["topic"]["code"] == "clopidogrel-cyp2c19-acs-pci-poor"
    uuid.UUID(card["uuid"])
    labels = [s["label"] for s in card["suggestions"]]
    assert labels == ["Replace clopidogrel with ticagrelor", "Replace clopidogrel with prasugrel"]
    draft_id = example_request(f"{PM_ACS}.order-sign")["context"]["draftOrders"]["entry"][0]["resource"]["id"]
    for sug in card["suggestions"]:
        uuid.UUID(sug["uuid"])
        delete, create = sug["actions"]
        assert delete == {"type": "delete", "description": delete["description"], "resourceId": f"MedicationRequest/{draft_id}"}
        assert create["type"] == "create"
        assert create["resource"]["resourceType"] == "MedicationRequest"
        assert create["resource"]["subject"] == {"reference": f"Patient/{PM_ACS}"}
    codes = [s["actions"][1]["resource"]["medicationCodeableConcept"]["coding"][0]["code"] for s in card["suggestions"]]
    assert codes == ["1116635", "855812"]
    assert card["selectionBehavior"] == "at-most-one"
    assert all(r["display"] for r in card["overrideReasons"])


def test_order_select_evaluates_only_the_selected_order(client: Any) -> None:
    body = example_request(f"{PM_ACS}.order-select")
    other = {"resourceType": "MedicationRequest", "id": "other-1", "status": "draft", "intent": "order",
             "subject": {"reference": f"Patient/{PM_ACS}"},
             "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "309362"}]}}
    body["context"]["draftOrders"]["entry"].append({"resource": other})
    r = post(client, SELECT, body)
    assert r.status_code == 200
    cards = r.get_json()["cards"]
    assert len(cards) == 1
    assert cards[0]["suggestions"][0]["actions"][0]["resourceId"] != "MedicationRequest/other-1"


def test_chinese_cards_when_the_ehr_asks_for_zh(client: Any) -> None:
    r = post(client, SIGN, example_request(f"{PM_ACS}.order-sign"), headers={"Accept-Language": "zh-CN,zh;q=0.9"})
    card = r.get_json()["cards"][0]
    assert "慢代谢型" in card["summary"] and "氯吡格雷" in card["summary"]
    assert card["suggestions"][0]["label"] == "将氯吡格雷替换为替格瑞洛"


def test_normal_metabolizer_gets_no_card(client: Any) -> None:
    r = post(client, SIGN, example_request("chen-jie-cyp2c19-nm-pci.order-sign"))
    assert r.status_code == 200
    assert r.get_json() == {"cards": []}


def test_sandbox_style_draft_bundle_without_type_is_accepted(client: Any) -> None:
    body = example_request(f"{PM_ACS}.order-sign")
    body["context"]["draftOrders"].pop("type", None)
    r = post(client, SIGN, body)
    assert r.status_code == 200
    assert len(r.get_json()["cards"]) == 1


def test_minimal_draft_with_no_medication_chosen_gets_no_card(client: Any) -> None:
    body = example_request(f"{PM_ACS}.order-sign")
    body["context"]["draftOrders"] = {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "MedicationRequest", "id": "x1"}}]}
    r = post(client, SIGN, body)
    assert r.status_code == 200
    assert r.get_json() == {"cards": []}


def test_security_headers_on_every_response(client: Any) -> None:
    for r in (client.get("/cds-services"), post(client, SIGN, b"{")):
        assert r.headers["X-Content-Type-Options"] == "nosniff"
        assert r.headers["Cache-Control"] == "no-store"


# -- bad input: 400 names the field ---------------------------------------------------


def _without(path: str) -> dict[str, Any]:
    body = example_request(f"{PM_ACS}.order-sign")
    node: Any = body
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[k]
    node.pop(keys[-1])
    return body


@pytest.mark.parametrize("field", ["hook", "hookInstance", "context", "context.userId", "context.patientId", "context.draftOrders"])
def test_missing_required_field_is_400_naming_it(client: Any, field: str) -> None:
    r = post(client, SIGN, _without(field))
    assert r.status_code == 400
    issue = r.get_json()["issue"][0]
    assert issue["expression"] == [field]
    assert field in issue["diagnostics"]


def _set(path: str, value: Any, name: str = f"{PM_ACS}.order-sign") -> dict[str, Any]:
    body = example_request(name)
    node: Any = body
    keys = path.split(".")
    for k in keys[:-1]:
        node = node[int(k)] if isinstance(node, list) else node[k]
    node[keys[-1]] = value
    return body


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("hook", "order-select", "hook"),
        ("hook", 7, "hook"),
        ("hookInstance", "not-a-uuid", "hookInstance"),
        ("context.userId", "dr-smith", "context.userId"),
        ("context.patientId", "", "context.patientId"),
        ("context.patientId", {"id": 1}, "context.patientId"),
        ("context.draftOrders", {"resourceType": "Patient"}, "context.draftOrders"),
        ("context.draftOrders", "MedicationRequest/1", "context.draftOrders"),
        ("context.draftOrders.entry", {"resource": {}}, "context.draftOrders.entry"),
        ("fhirAuthorization", {"access_token": "t", "token_type": "Bearer", "expires_in": 300, "scope": "patient/*.read", "subject": "x"}, None),
        ("prefetch", [], "prefetch"),
        ("context", [], "context"),
    ],
)
def test_malformed_field_is_400_naming_it(client: Any, path: str, value: Any, field: str | None) -> None:
    body = _set(path, value)
    if field is None:  # fhirAuthorization without fhirServer (cds-r-1)
        body.pop("fhirServer", None)
        field = "fhirServer"
    r = post(client, SIGN, body)
    assert r.status_code == 400, r.get_data(as_text=True)
    assert r.get_json()["issue"][0]["expression"] == [field]


def test_draft_order_with_invalid_fhir_is_400_naming_the_element(client: Any) -> None:
    body = _set("context.draftOrders.entry.0.resource.status", 12)
    r = post(client, SIGN, body)
    assert r.status_code == 400
    assert r.get_json()["issue"][0]["expression"][0].startswith("context.draftOrders.entry[0].resource.status")


def test_order_select_requires_selections_that_point_into_draft_orders(client: Any) -> None:
    body = example_request(f"{PM_ACS}.order-select")
    body["context"]["selections"] = ["MedicationRequest/not-there"]
    r = post(client, SELECT, body)
    assert r.status_code == 400
    assert r.get_json()["issue"][0]["expression"] == ["context.selections[0]"]
    body["context"].pop("selections")
    assert post(client, SELECT, body).get_json()["issue"][0]["expression"] == ["context.selections"]


def test_unknown_service_is_404(client: Any) -> None:
    r = post(client, "/cds-services/no-such-service", example_request(f"{PM_ACS}.order-sign"))
    assert r.status_code == 404
    assert client.post("/cds-services/no-such-service/feedback", json={"feedback": []}).status_code == 404


def test_non_json_body_is_400(client: Any) -> None:
    for raw in (b"not json", b"", b"{\"hook\": ", "[" * 100000):
        r = client.post(SIGN, data=raw, content_type="application/json")
        assert r.status_code == 400
        assert r.get_json()["issue"][0]["expression"] == ["(body)"]


def test_oversized_body_is_413(client: Any, app: Any) -> None:
    limit = app.config["MAX_CONTENT_LENGTH"]
    r = client.post(SIGN, data=b" " * (limit + 1), content_type="application/json")
    assert r.status_code == 413


MALFORMED: list[Any] = [
    None, 1, "x", [], {}, {"hook": None}, {"hook": "order-sign", "hookInstance": str(uuid.uuid4())},
    {"hook": "order-sign", "hookInstance": str(uuid.uuid4()), "context": {"userId": "Practitioner/1", "patientId": "p", "draftOrders": {"resourceType": "Bundle", "entry": "x"}}},
    {"hook": "order-sign", "hookInstance": str(uuid.uuid4()), "context": {"userId": "Practitioner/1", "patientId": "p", "draftOrders": {"resourceType": "Bundle", "entry": [None, 3]}}},
    {"hook": "order-sign", "hookInstance": str(uuid.uuid4()), "context": {"userId": "Practitioner/1", "patientId": "p", "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "MedicationRequest", "id": "a", "dosageInstruction": "x"}}]}}},
    {"hook": "order-sign", "hookInstance": str(uuid.uuid4()), "context": {"userId": "Practitioner/1", "patientId": "p", "draftOrders": {"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Banana", "id": "a"}}]}}},
    {"hook": "order-sign", "hookInstance": str(uuid.uuid4()), "fhirServer": "ftp://x", "context": {}},
    {"hook": "order-sign", "hookInstance": str(uuid.uuid4()), "fhirServer": "http://127.0.0.1:9", "fhirAuthorization": {"access_token": 5}, "context": {}},
]


@pytest.mark.parametrize("body", MALFORMED)
def test_malformed_requests_never_produce_a_500(client: Any, body: Any) -> None:
    r = post(client, SIGN, json.dumps(body))
    assert r.status_code in (400, 412), r.get_data(as_text=True)


def test_prefetch_oddities_are_read_defensively(client: Any) -> None:
    body = example_request(f"{PM_ACS}.order-sign")
    body["prefetch"]["conditions"]["entry"].append({"resource": {"resourceType": "Condition", "code": "I21", "onsetDateTime": 5}})
    body["prefetch"]["observations"]["entry"].append({"resource": {"resourceType": "Observation", "status": "final", "code": {"coding": "x"}, "valueQuantity": {"value": "high"}}})
    body["prefetch"]["observations"]["entry"].append({"resource": {"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": "http://loinc.org", "code": "84413-4"}]}, "valueCodeableConcept": {"text": ["*2/*2"]}}})
    body["prefetch"]["weird"] = {"resourceType": "Nonsense", "id": {"a": 1}}
    r = post(client, SIGN, body)
    assert r.status_code == 200
    assert_valid(r.get_json())
    assert len(r.get_json()["cards"]) == 1
