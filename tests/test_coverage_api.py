"""Coverage and companion-diagnostic cards through the HTTP API (Flask test client).

Stories from examples/: Liu Yang (NSCLC, no EGFR result), Zhao Min (NSCLC,
EGFR L858R), their stat variants, and the formulary examples (brand vs VBP
generic, non-formulary PPI, GLP-1 step therapy, prior authorization).
"""

from __future__ import annotations

import json
from typing import Any

from service.cards.invariants import response_violations
from tests.conftest import example_request

SIGN = "/cds-services/precision-cds-order-sign"
CARD_TYPE = "http://terminology.hl7.org/CodeSystem/cdshooks-card-type"
CDX_MISSING = "cdx-required-test-missing"
COVERAGE_TOPICS = {"therapy-alternatives-req", "coverage-info", "limits", "cost"}


def post(client: Any, name_or_body: str | dict[str, Any], lang: str | None = None) -> list[dict[str, Any]]:
    body = example_request(name_or_body) if isinstance(name_or_body, str) else name_or_body
    headers = {"Accept-Language": lang} if lang else {}
    r = client.post(SIGN, data=json.dumps(body), content_type="application/json", headers=headers)
    assert r.status_code == 200, r.get_data(as_text=True)
    payload = r.get_json()
    assert response_violations(payload) == []
    return list(payload["cards"])


def topic(card: dict[str, Any]) -> str:
    return str(card["source"]["topic"]["code"])


def is_coverage(card: dict[str, Any]) -> bool:
    return card["source"]["topic"]["system"] == CARD_TYPE and topic(card) in COVERAGE_TOPICS


def created(card: dict[str, Any]) -> list[dict[str, Any]]:
    return [a["resource"] for s in card.get("suggestions", []) for a in s["actions"] if a["type"] == "create"]


# -- companion diagnostics -------------------------------------------------------------------


def test_osimertinib_without_egfr_result_returns_the_test_ordering_card(client: Any) -> None:
    cards = post(client, "liu-yang-nsclc-egfr-untested.order-sign")
    cdx = [c for c in cards if topic(c) == CDX_MISSING]
    assert len(cdx) == 1
    card = cdx[0]
    assert card["indicator"] == "warning"
    assert "EGFR" in card["summary"] and "osimertinib" in card["summary"]
    requests = created(card)
    assert len(requests) == 1
    sr = requests[0]
    assert sr["resourceType"] == "ServiceRequest" and sr["status"] == "draft" and sr["intent"] == "order"
    assert sr["code"]["coding"][0] == {"system": "http://loinc.org", "code": "21665-5",
                                       "display": "EGFR mutation analysis (tumour tissue or plasma)"}
    assert sr["subject"] == {"reference": "Patient/liu-yang-nsclc-egfr-untested"}
    assert card["suggestions"][0]["isRecommended"] is True


def test_osimertinib_with_egfr_l858r_returns_no_test_ordering_card(client: Any) -> None:
    cards = post(client, "zhao-min-nsclc-egfr-l858r.order-sign")
    assert not [c for c in cards if topic(c) in (CDX_MISSING, "cdx-biomarker-negative")]
    assert all(c["indicator"] == "info" for c in cards)  # at most plan or paperwork information


def test_stat_untested_patient_keeps_the_clinical_card_and_demotes_coverage_cards(client: Any) -> None:
    routine = post(client, "liu-yang-nsclc-egfr-untested.order-sign")
    stat = post(client, "liu-yang-nsclc-egfr-untested.order-sign.stat")
    by_topic = {topic(c): c for c in stat}
    assert by_topic[CDX_MISSING]["indicator"] == "warning"  # clinical safety card unchanged
    assert {topic(c): c["indicator"] for c in routine if is_coverage(c)} == {"coverage-info": "warning"}
    coverage = [c for c in stat if is_coverage(c)]
    assert coverage and all(c["indicator"] == "info" for c in coverage)
    assert all("Urgent order" in c["detail"] for c in coverage)


def test_stat_order_for_the_tested_patient_shows_coverage_as_info_only(client: Any) -> None:
    body = example_request("zhao-min-nsclc-egfr-l858r.order-sign.stat")
    body["context"]["draftOrders"]["entry"][0]["resource"]["dispenseRequest"]["quantity"]["value"] = 60  # over the limit
    cards = post(client, body)
    assert {topic(c) for c in cards} == {"coverage-info", "limits"}
    assert all(c["indicator"] == "info" for c in cards)
    routine = example_request("zhao-min-nsclc-egfr-l858r.order-sign")
    routine["context"]["draftOrders"]["entry"][0]["resource"]["dispenseRequest"]["quantity"]["value"] = 60
    limits = [c for c in post(client, routine) if topic(c) == "limits"]
    assert limits[0]["indicator"] == "warning"
    update = limits[0]["suggestions"][0]["actions"][0]
    assert update["type"] == "update"
    assert update["resource"]["dispenseRequest"]["quantity"]["value"] == 30


def test_chinese_test_ordering_card(client: Any) -> None:
    cards = post(client, "liu-yang-nsclc-egfr-untested.order-sign", lang="zh-CN")
    card = next(c for c in cards if topic(c) == CDX_MISSING)
    assert "奥希替尼" in card["summary"] and "伴随诊断" in card["summary"]
    assert card["suggestions"][0]["label"] == "开具EGFR 基因突变检测（肿瘤组织或血浆）"


def test_negative_biomarker_says_not_indicated(client: Any) -> None:
    cards = post(client, "he-ping-crc-kras-g12d.order-sign")
    card = next(c for c in cards if topic(c) == "cdx-biomarker-negative")
    assert card["indicator"] == "warning" and "not indicated" in card["summary"]
    assert "KRAS p.Gly12Asp" in card["detail"]


# -- formulary -----------------------------------------------------------------------------------


def test_brand_not_covered_proposes_the_vbp_generic_with_delete_and_create(client: Any) -> None:
    body = example_request("ma-jun-hyperlipidaemia-lipitor.order-sign")
    draft = body["context"]["draftOrders"]["entry"][0]["resource"]
    cards = post(client, body)
    assert len(cards) == 1
    card = cards[0]
    assert card["source"]["topic"] == {"system": CARD_TYPE, "code": "therapy-alternatives-req"}
    assert card["indicator"] == "warning" and card["selectionBehavior"] == "at-most-one"
    assert "Demonstration plan" in card["detail"]
    (suggestion,) = card["suggestions"]
    assert suggestion["isRecommended"] is True
    assert "¥1.80" in suggestion["label"]
    delete, create = suggestion["actions"]
    assert delete == {"type": "delete", "description": delete["description"], "resourceId": f"MedicationRequest/{draft['id']}"}
    med = create["resource"]
    assert med["medicationCodeableConcept"]["coding"][0]["code"] == "617311"
    assert med["dosageInstruction"] == draft["dosageInstruction"]  # same ingredient: dose kept
    assert med["dispenseRequest"] == draft["dispenseRequest"]


def test_one_suggestion_per_covered_alternative_preferred_first(client: Any) -> None:
    cards = post(client, "wu-xia-gerd-esomeprazole.order-sign")
    (card,) = cards
    codes = [s["actions"][1]["resource"]["medicationCodeableConcept"]["coding"][0]["code"] for s in card["suggestions"]]
    assert codes == ["7646", "40790"]  # omeprazole (preferred), pantoprazole
    assert [s.get("isRecommended", False) for s in card["suggestions"]] == [True, False]
    assert all("est. patient cost ¥" in s["label"] for s in card["suggestions"])
    other = card["suggestions"][1]["actions"][1]["resource"]
    assert "dosageInstruction" not in other  # another ingredient: the prescriber chooses the dose


def test_glp1_without_prior_metformin_quotes_the_restriction_and_suggests_metformin(client: Any) -> None:
    (card,) = post(client, "zhou-lei-t2dm-glp1-no-metformin.order-sign")
    assert card["source"]["topic"]["code"] == "coverage-info"
    assert "限二甲双胍等口服降糖药或胰岛素控制效果不佳" in card["detail"]
    assert "metformin or another oral glucose-lowering drug or insulin in the last 365 days" in card["detail"]
    assert "¥400.00" in card["detail"] and "¥162.00" in card["detail"]
    (suggestion,) = card["suggestions"]
    assert suggestion["actions"][0]["type"] == "delete"
    assert suggestion["actions"][1]["resource"]["medicationCodeableConcept"]["coding"][0]["code"] == "861007"


def test_prior_authorization_info_names_what_to_submit(client: Any) -> None:
    (card,) = post(client, "emily-clark-nsclc-alk-us.order-sign")
    assert card["indicator"] == "info" and card["source"]["topic"]["code"] == "coverage-info"
    assert "ALK-positive test result" in card["detail"] and "$" in card["detail"]


def test_no_coverage_uses_the_configured_default_plan(client: Any) -> None:
    body = example_request("ma-jun-hyperlipidaemia-lipitor.order-sign")
    body["prefetch"]["coverage"] = {"resourceType": "Bundle", "type": "searchset", "total": 0}
    (card,) = post(client, body)
    assert "the default plan was assumed" in card["detail"]


def test_existing_clinical_examples_get_no_extra_coverage_cards(client: Any) -> None:
    for name in ("zhang-wei-acs-cyp2c19-pm.order-sign", "chen-jie-cyp2c19-nm-pci.order-sign", "sun-hao-epilepsy-hla-untested.order-sign"):
        assert not [c for c in post(client, name) if is_coverage(c)], name
