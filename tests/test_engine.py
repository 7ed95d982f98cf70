"""Engine semantics on small inline packs: every condition kind, ordering, lifecycle, dedup."""

from __future__ import annotations

import textwrap
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from service.config import PROJECT_ROOT
from service.engine.ruleset import build_ruleset
from service.knowledge import load_knowledge
from service.packtest import build_request, order_from_spec
from service.pipeline import run_hook
from tests.conftest import example_patient, example_request

TODAY = date(2026, 11, 22)
KNOWLEDGE = load_knowledge(PROJECT_ROOT / "knowledge")

HEADER = """
pack:
  id: test-pack
  title: Test pack
  version: 1.0.0
  status: {status}
  publisher: tests
  effective: {effective}
  {expires}
  priority: {priority}
  sources: [{{id: s, label: Test source, url: "https://example.org/source"}}]
rules:
"""


def make_rule(rid: str, when: str | None, indicator: str = "info", trigger: str = "{medication: [rxnorm:32968]}", extra: str = "") -> str:
    when_block = f"    when: {when}\n" if when else ""
    return (
        f"  - id: {rid}\n    trigger: {trigger}\n{when_block}{extra}"
        f"    card:\n      indicator: {indicator}\n      summary: {{en: \"{rid}\", zh-CN: \"{rid}\"}}\n"
        f"      source: s\n      strength: Test\n"
    )


def build(tmp_path: Path, rules: list[str], status: str = "active", effective: str = "2024-01-01",
          expires: str | None = None, priority: int = 0, name: str = "pack.yaml", include_draft: bool = False) -> Any:
    folder = tmp_path / "rules"
    folder.mkdir(exist_ok=True)
    text = HEADER.format(status=status, effective=effective, expires=f"expires: {expires}" if expires else "", priority=priority)
    text = text.replace("id: test-pack", f"id: test-{name.split('.')[0]}")
    (folder / name).write_text(textwrap.dedent(text) + "".join(rules), encoding="utf-8")
    ruleset, problems = build_ruleset([folder], KNOWLEDGE, {"warfarin_iwpc"}, include_draft=include_draft, today=TODAY)
    assert ruleset is not None, [p.format() for p in problems]
    return ruleset


def fired(ruleset: Any, patient: str = "zhang-wei-acs-cyp2c19-pm", orders: list[dict[str, Any]] | None = None,
          hook: str = "order-sign", resources: list[dict[str, Any]] | None = None) -> list[str]:
    res = example_patient(patient) if resources is None else resources
    drafts = [order_from_spec(o, patient, KNOWLEDGE, i) for i, o in enumerate(orders or [{"medication": "rxnorm:309362"}])]
    result = run_hook(ruleset, build_request(hook, patient, drafts), res, "en", TODAY)
    return [f.rule.id for f, _ in result.cards]


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("{age: {gte: 60}}", True),                       # born 1964 -> 62
        ("{age: {lt: 60}}", False),
        ("{sex: male}", True),
        ("{sex: female}", False),
        ("{diagnosis: {codes: [icd10:I21*]}}", True),
        ("{diagnosis: {codes: ['icd10:I21.0']}}", True),
        ("{diagnosis: {codes: [icd10:I63*]}}", False),
        ("{diagnosis: {codes: [icd10:I21*], within_days: 30}}", True),
        ("{procedure: {codes: [snomed:415070008]}}", True),
        ("{medication: {codes: [atc:C10AA*], active: true}}", True),   # atorvastatin -> C10AA05 (knowledge/drugs/statins.yaml)
        ("{medication: {codes: [atc:C09*], active: true}}", False),    # no angiotensin agent on file
        ("{medication: {codes: [rxnorm:617311]}}", True),
        ("{lab: {code: loinc:22748-8, value: {gt: 3.0}}}", True),
        ("{lab: {code: loinc:22748-8, value: {gt: 5.0}}}", False),
        ("{lab: {code: loinc:22748-8, within_days: 1}}", False),
        ("{lab: {code: loinc:22748-8, within_days: 30}}", True),
        ("{lab: {code: loinc:2345-7, missing: true}}", True),
        ("{genotype: {gene: CYP2C19, diplotype: ['*2/*3']}}", True),
        ("{genotype: {gene: CYP2C19, on_file: true}}", True),
        ("{genotype: {gene: CYP2C9, on_file: false}}", True),
        ("{coverage: {plan: [cn-urban-employee-demo]}}", True),
        ("{coverage: {on_file: false}}", False),
        ("{order: {priority: [stat]}}", False),
        ("{order: {codes: [atc:B01AC*]}}", True),
        ("{not: {sex: male}}", False),
        ("{any: [{sex: female}, {age: {gte: 18}}]}", True),
        ("{fhirpath: \"entry.resource.where(resourceType='Procedure').exists()\"}", True),
        ("{fhirpath: \"entry.resource.where(resourceType='AllergyIntolerance').exists()\"}", False),
    ],
)
def test_condition_kinds(tmp_path: Path, when: str, expected: bool) -> None:
    ruleset = build(tmp_path, [make_rule("r1", when)])
    assert (fired(ruleset) == ["r1"]) is expected


def test_order_dose_and_priority_conditions(tmp_path: Path) -> None:
    ruleset = build(tmp_path, [make_rule("high-dose", "{order: {daily_dose_mg: {gt: 100}}}"), make_rule("stat", "{order: {priority: [stat, asap]}}")])
    assert fired(ruleset, orders=[{"medication": "rxnorm:309362", "dose_mg": 75, "per_day": 2}]) == ["high-dose"]
    assert fired(ruleset, orders=[{"medication": "rxnorm:309362", "dose_mg": 75, "per_day": 1, "priority": "stat"}]) == ["stat"]


def test_trigger_by_product_ingredient_and_atc_class(tmp_path: Path) -> None:
    ruleset = build(tmp_path, [
        make_rule("by-ingredient", None),
        make_rule("by-class", None, trigger="{medication: [atc:B01AC*]}"),
        make_rule("by-service", None, trigger="{service: [loinc:57132-3]}"),
    ])
    assert sorted(fired(ruleset, orders=[{"medication": "rxnorm:309362"}])) == ["by-class", "by-ingredient"]
    assert fired(ruleset, orders=[{"medication": "rxnorm:1116635"}]) == ["by-class"]  # ticagrelor product
    assert fired(ruleset, orders=[{"service": "loinc:57132-3"}]) == ["by-service"]
    assert fired(ruleset, orders=[{"medication": "rxnorm:11289"}]) == []


def test_cards_sorted_by_severity_then_pack_priority(tmp_path: Path) -> None:
    folder = tmp_path
    build(folder, [make_rule("a-info", None, "info"), make_rule("b-critical", None, "critical")], priority=1, name="low.yaml")
    ruleset = build(folder, [make_rule("c-info", None, "info"), make_rule("d-warning", None, "warning")], priority=9, name="high.yaml")
    assert fired(ruleset) == ["b-critical", "d-warning", "c-info", "a-info"]


def test_one_card_per_rule_per_draft_order(tmp_path: Path) -> None:
    ruleset = build(tmp_path, [make_rule("r1", None)])
    orders = [{"medication": "rxnorm:309362", "id": "d1"}, {"medication": "rxnorm:309362", "id": "d2"}]
    assert fired(ruleset, orders=orders) == ["r1", "r1"]


@pytest.mark.parametrize(
    ("kw", "served"),
    [
        ({"status": "active"}, True),
        ({"status": "draft"}, False),
        ({"status": "draft", "include_draft": True}, True),
        ({"status": "retired"}, False),
        ({"effective": "2027-01-01"}, False),
        ({"expires": "2026-01-01"}, False),
        ({"expires": "2027-01-01"}, True),
    ],
)
def test_pack_lifecycle(tmp_path: Path, kw: dict[str, Any], served: bool) -> None:
    ruleset = build(tmp_path, [make_rule("r1", None)], **kw)
    assert (fired(ruleset) == ["r1"]) is served


def test_suggestion_guards(tmp_path: Path) -> None:
    extra = (
        "    card:\n      indicator: warning\n      summary: {en: s, zh-CN: s}\n      source: s\n      strength: T\n"
        "      suggestions:\n"
        "        - {label: {en: a, zh-CN: a}, replace_order_with: 'rxnorm:1116632'}\n"
        "        - {label: {en: b, zh-CN: b}, replace_order_with: 'rxnorm:613391', unless: {age: {gte: 60}}}\n"
        "        - {label: {en: c, zh-CN: c}, add_test: CYP2C19, when: {genotype: {gene: CYP2C19, on_file: false}}}\n"
    )
    rule = "  - id: g1\n    trigger: {medication: [rxnorm:32968]}\n" + extra
    ruleset = build(tmp_path, [rule])
    result = run_hook(ruleset, build_request("order-sign", "zhang-wei-acs-cyp2c19-pm", [order_from_spec({"medication": "rxnorm:309362"}, "zhang-wei-acs-cyp2c19-pm", KNOWLEDGE, 0)]),
                      example_patient("zhang-wei-acs-cyp2c19-pm"), "en", TODAY)
    labels = [s["label"] for s in result.cards[0][1]["suggestions"]]
    assert labels == ["a"]


def test_calculator_binds_template_variables(tmp_path: Path) -> None:
    extra = (
        "    when: {calculator: {name: warfarin_iwpc, as: warfarin}}\n"
        "    card:\n      indicator: info\n      summary: {en: \"{{warfarin.weekly}} mg/week\", zh-CN: \"{{warfarin.weekly}} mg/周\"}\n"
        "      source: s\n      strength: T\n"
    )
    rule = "  - id: w1\n    trigger: {medication: [rxnorm:11289]}\n" + extra
    ruleset = build(tmp_path, [rule])
    patient = "robert-miller-warfarin-af"
    draft = order_from_spec({"medication": "rxnorm:11289"}, patient, KNOWLEDGE, 0)
    result = run_hook(ruleset, build_request("order-sign", patient, [draft]), example_patient(patient), "en", TODAY)
    summary = result.cards[0][1]["summary"]
    weekly = float(summary.split()[0])
    assert 10 < weekly < 30 and summary.endswith("mg/week")


def test_suppress_repeat_at_sign(settings: Any) -> None:
    from service.app import create_app

    app = create_app(replace(settings, suppress_repeat_at_sign=True))
    try:
        client = app.test_client()
        select = example_request("zhang-wei-acs-cyp2c19-pm.order-select")
        sign = example_request("zhang-wei-acs-cyp2c19-pm.order-sign")
        assert len(client.post("/cds-services/precision-cds-order-sign", json=sign).get_json()["cards"]) == 1
        assert len(client.post("/cds-services/precision-cds-order-select", json=select).get_json()["cards"]) == 1
        # the same draft order was already warned about at order-select
        assert client.post("/cds-services/precision-cds-order-sign", json=sign).get_json()["cards"] == []
    finally:
        app.extensions["precision_cds"].store.close()


def test_evaluation_does_not_touch_rules_for_other_drugs(tmp_path: Path) -> None:
    """The index: 2,000 rules on other drugs are never evaluated for a clopidogrel order."""
    other = [make_rule(f"other-{i}", "{fhirpath: \"1/0 = 1\"}", trigger="{medication: [rxnorm:11289]}") for i in range(2000)]
    ruleset = build(tmp_path, [make_rule("r1", None), *other])
    draft = order_from_spec({"medication": "rxnorm:309362"}, "p", KNOWLEDGE, 0)
    from service.facts.builder import build_draft_order

    assert [r.id for r in ruleset.candidates(build_draft_order(draft, KNOWLEDGE))] == ["r1"]
