"""Pharmacogenomic packs (rules/pgx/) end to end over HTTP: one order-sign per example patient.

Each example patient in examples/patients/ added for the CPIC packs (warfarin, HLA-B,
thiopurines, DPYD, SLCO1B1, CYP2D6) is posted as its generated request
(examples/requests/<slug>.order-sign.json) through the Flask test client; the cards must
match the patient's story in examples/README.md: rule (card.source.topic.code),
indicator, key text, and the suggestion actions.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest

from service.cards.invariants import response_violations
from tests.conftest import example_request

SIGN = "/cds-services/precision-cds-order-sign"


def sign(client: Any, slug: str, lang: str | None = None) -> list[dict[str, Any]]:
    headers = {"Accept-Language": lang} if lang else {}
    body = example_request(f"{slug}.order-sign")
    r = client.post(SIGN, data=json.dumps(body), content_type="application/json", headers=headers)
    assert r.status_code == 200, r.get_data(as_text=True)
    payload = r.get_json()
    assert response_violations(payload) == []
    return list(payload["cards"])


def only_card(client: Any, slug: str, lang: str | None = None) -> dict[str, Any]:
    cards = sign(client, slug, lang)
    assert len(cards) == 1, [c["summary"] for c in cards]
    card = cards[0]
    uuid.UUID(card["uuid"])
    assert card["source"]["url"].startswith("https://")
    return card


def rule_of(card: dict[str, Any]) -> str:
    return str(card["source"]["topic"]["code"])


def actions(card: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(a["type"], a) for s in card.get("suggestions", []) for a in s["actions"]]


def test_warfarin_vkorc1_only_gets_estimate_with_unknown_cyp2c9_and_cyp2c9_test(client: Any) -> None:
    card = only_card(client, "wu-lei-dvt-warfarin-vkorc1-only")
    assert rule_of(card) == "warfarin-iwpc-one-genotype-missing"
    assert card["indicator"] == "info"
    assert "21.8 mg/week" in card["summary"] and "3.1 mg/day" in card["summary"]
    assert "IWPC pharmacogenetic" in card["detail"] and "CYP2C9 not on file (IWPC 'unknown' term used)" in card["detail"]
    assert "Not graded" in card["detail"]
    acts = actions(card)
    update = [a for t, a in acts if t == "update"]
    assert len(update) == 1
    assert update[0]["resource"]["dosageInstruction"][0]["text"].startswith("Warfarin 3.1 mg by mouth once daily")
    tests = [a["resource"]["code"]["text"] for t, a in acts if t == "create"]
    assert tests == ["CYP2C9 genotyping"]


def test_warfarin_without_any_genotype_uses_the_clinical_equation_and_suggests_both_tests(client: Any) -> None:
    card = only_card(client, "huang-mei-af-warfarin-untested")
    assert rule_of(card) == "warfarin-iwpc-no-genotype"
    assert card["indicator"] == "info"
    assert "17.5 mg/week" in card["detail"] and "IWPC clinical" in card["detail"]
    tests = sorted(a["resource"]["code"]["text"] for t, a in actions(card) if t == "create")
    assert tests == ["CYP2C9 genotyping", "VKORC1 genotyping (rs9923231)"]


def test_warfarin_without_height_gives_no_number_and_names_what_is_missing(client: Any) -> None:
    card = only_card(client, "zhou-qiang-valve-warfarin-no-height")
    assert rule_of(card) == "warfarin-iwpc-measurements-missing"
    assert card["indicator"] == "info"
    assert "missing height" in card["summary"]
    assert "mg/week" not in card["summary"] + card["detail"]
    assert not any(t == "update" for t, _ in actions(card))


def test_warfarin_card_in_chinese(client: Any) -> None:
    card = only_card(client, "huang-mei-af-warfarin-untested", lang="zh-CN")
    assert "华法林" in card["summary"] and "每日 2.5 mg" in card["summary"]
    assert "IWPC 临床算法" in card["detail"]


def test_hla_b1502_positive_carbamazepine_is_critical_with_cancel(client: Any) -> None:
    slug = "lin-xiao-epilepsy-hla-b1502-positive"
    card = only_card(client, slug)
    assert rule_of(card) == "carbamazepine-oxcarbazepine-hla-b1502-positive"
    assert card["indicator"] == "critical"
    assert "do not start carbamazepine" in card["summary"]
    assert "CPIC Strong" in card["detail"]
    draft_id = example_request(f"{slug}.order-sign")["context"]["draftOrders"]["entry"][0]["resource"]["id"]
    assert [(t, a.get("resourceId")) for t, a in actions(card)] == [("delete", f"MedicationRequest/{draft_id}")]
    assert card["overrideReasons"]


def test_hla_b1502_negative_oxcarbazepine_gets_no_card(client: Any) -> None:
    assert sign(client, "he-jun-trigeminal-neuralgia-hla-b1502-negative") == []


def test_hla_b1502_untested_carbamazepine_requires_the_test(client: Any) -> None:
    card = only_card(client, "sun-hao-epilepsy-hla-untested")
    assert rule_of(card) == "carbamazepine-hla-b1502-test-before-first-dose"
    assert card["indicator"] == "warning"
    assert "test required before the first dose" in card["summary"]
    (kind, create), = actions(card)
    assert kind == "create"
    assert create["resource"]["code"]["coding"][0] == {
        "system": "http://loinc.org", "code": "57979-7", "display": "HLA-B*15:02 genotyping"}


def test_hla_b5801_positive_allopurinol_is_contraindicated(client: Any) -> None:
    card = only_card(client, "guo-ming-gout-hla-b5801-positive")
    assert rule_of(card) == "allopurinol-hla-b5801-positive"
    assert card["indicator"] == "critical"
    assert "Allopurinol is contraindicated" in card["detail"]
    assert [t for t, _ in actions(card)] == ["delete"]


def test_hla_b5801_untested_allopurinol_gets_an_info_test_suggestion(client: Any) -> None:
    card = only_card(client, "ma-li-gout-allopurinol-untested")
    assert rule_of(card) == "allopurinol-hla-b5801-test-recommended"
    assert card["indicator"] == "info"
    assert [a["resource"]["code"]["text"] for _, a in actions(card)] == ["HLA-B*58:01 genotyping"]


def test_nudt15_intermediate_azathioprine_starts_at_30_to_80_percent(client: Any) -> None:
    card = only_card(client, "xu-ting-crohn-nudt15-im")
    assert rule_of(card) == "azathioprine-nudt15-intermediate"
    assert card["indicator"] == "warning"
    assert "30–80%" in card["summary"] and "*1/*3" in card["detail"]
    (kind, update), = actions(card)
    assert kind == "update" and "30–80%" in update["resource"]["dosageInstruction"][0]["text"]


def test_tpmt_poor_all_mercaptopurine_gets_the_malignancy_reduction(client: Any) -> None:
    card = only_card(client, "deng-hao-all-tpmt-pm")
    assert rule_of(card) == "thiopurine-tpmt-poor-malignancy"
    assert card["indicator"] == "warning"
    assert "10-fold" in card["summary"] and "thrice weekly" in card["summary"]
    assert [t for t, _ in actions(card)] == ["update"]


def test_untested_thiopurine_start_suggests_tpmt_and_nudt15(client: Any) -> None:
    card = only_card(client, "yang-lin-colitis-thiopurine-untested")
    assert rule_of(card) == "thiopurine-test-recommended"
    assert card["indicator"] == "info"
    assert sorted(a["resource"]["code"]["text"] for _, a in actions(card)) == ["NUDT15 genotyping", "TPMT genotyping"]


def test_dpyd_activity_score_1_capecitabine_halves_the_starting_dose(client: Any) -> None:
    card = only_card(client, "qian-wei-colon-cancer-dpyd-im")
    assert rule_of(card) == "fluoropyrimidine-dpyd-activity-1"
    assert card["indicator"] == "warning"
    assert "activity score 1" in card["summary"] and "50%" in card["summary"]
    assert "CPIC Strong" in card["detail"]
    (kind, update), = actions(card)
    assert kind == "update" and "50% of the usual starting dose" in update["resource"]["dosageInstruction"][0]["text"]


def test_dpyd_untested_capecitabine_requires_genotyping_first(client: Any) -> None:
    card = only_card(client, "song-jia-rectal-cancer-dpyd-untested")
    assert rule_of(card) == "fluoropyrimidine-dpyd-test-before-first-dose"
    assert card["indicator"] == "warning"
    assert [a["resource"]["code"]["text"] for _, a in actions(card)] == ["DPYD genotyping"]


def test_slco1b1_decreased_simvastatin_40mg_offers_cancel_or_lower_dose(client: Any) -> None:
    card = only_card(client, "feng-bo-hypercholesterolaemia-slco1b1-decreased")
    assert rule_of(card) == "simvastatin-slco1b1-decreased-function"
    assert card["indicator"] == "warning"
    assert "Decreased Function" in card["summary"] and "<20 mg/day" in card["summary"]
    assert sorted(t for t, _ in actions(card)) == ["delete", "update"]
    assert card["selectionBehavior"] == "at-most-one"


def test_cyp2d6_ultrarapid_codeine_is_avoided(client: Any) -> None:
    card = only_card(client, "tang-yu-acute-pain-cyp2d6-um")
    assert rule_of(card) == "codeine-cyp2d6-ultrarapid"
    assert card["indicator"] == "warning"
    assert "Ultrarapid Metabolizer" in card["summary"] and "avoid codeine" in card["summary"]
    assert "non-tramadol opioid" in card["detail"]
    assert [t for t, _ in actions(card)] == ["delete"]


def test_cyp2d6_poor_tramadol_is_avoided(client: Any) -> None:
    card = only_card(client, "luo-fang-back-pain-cyp2d6-pm")
    assert rule_of(card) == "tramadol-cyp2d6-poor"
    assert card["indicator"] == "warning"
    assert "avoid tramadol" in card["summary"] and "diminished analgesia" in card["summary"]
    assert "non-codeine opioid" in card["detail"]


@pytest.mark.parametrize(
    ("slug", "text"),
    [
        ("lin-xiao-epilepsy-hla-b1502-positive", "不要开始使用卡马西平"),
        ("xu-ting-crohn-nudt15-im", "中间代谢型"),
        ("tang-yu-acute-pain-cyp2d6-um", "超快代谢型"),
    ],
)
def test_pgx_cards_in_simplified_chinese(client: Any, slug: str, text: str) -> None:
    card = only_card(client, slug, lang="zh-CN")
    assert text in card["summary"]
