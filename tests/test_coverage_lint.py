"""`precision-cds lint` on formulary files and on rules that use the coverage grammar.

Formulary staff edit knowledge/formularies/*.yaml; a mistake must be refused
with the file and line, and the service must keep refusing the broken set.
"""

from __future__ import annotations

import shutil
import textwrap
from datetime import date
from pathlib import Path

import pytest
from click.testing import CliRunner

from service.cli import main
from service.config import PROJECT_ROOT
from service.engine.ruleset import build_ruleset, load_ruleset
from service.errors import PackError
from service.knowledge import load_knowledge
from service.packtest import build_request, order_from_spec
from service.pipeline import run_hook
from tests.conftest import example_patient

EMPLOYEE = "formularies/cn-urban-employee-demo.yaml"


def knowledge_copy(tmp_path: Path) -> Path:
    target = tmp_path / "knowledge"
    shutil.copytree(PROJECT_ROOT / "knowledge", target)
    return target


def edit(root: Path, rel: str, old: str, new: str) -> str:
    path = root / rel
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    text = text.replace(old, new, 1)
    path.write_text(text, encoding="utf-8")
    return text


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def lint_with(knowledge: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["lint", str(PROJECT_ROOT / "rules"), "--knowledge", str(knowledge)])
    return result.exit_code, result.output


def test_shipped_formularies_and_cdx_tables_load() -> None:
    knowledge = load_knowledge(PROJECT_ROOT / "knowledge")
    assert set(knowledge.formularies.plans) == {"cn-urban-employee-demo", "cn-urban-rural-resident-demo", "us-commercial-demo"}
    assert knowledge.formularies.default_plan == "cn-urban-employee-demo"
    assert len({t.drug for ts in knowledge.cdx.therapies.values() for t in ts}) >= 15
    for plan in knowledge.formularies.plans.values():
        assert "emonstration" in plan.notice["en"] and "演示" in plan.notice["zh-CN"]


def test_unknown_drug_code_is_refused_with_file_and_line(tmp_path: Path) -> None:
    root = knowledge_copy(tmp_path)
    text = edit(root, EMPLOYEE, "- drug: rxnorm:32968              # clopidogrel", "- drug: rxnorm:99999999")
    code, out = lint_with(root)
    assert code == 1
    assert f"knowledge/{EMPLOYEE}:{line_of(text, 'rxnorm:99999999')}:" in out
    assert "unknown drug code rxnorm:99999999" in out


def test_alternative_not_in_the_plan_is_refused(tmp_path: Path) -> None:
    root = knowledge_copy(tmp_path)
    text = edit(root, EMPLOYEE, "members: [rxnorm:283742, rxnorm:7646, rxnorm:40790]",
                "members: [rxnorm:283742, rxnorm:7646, rxnorm:40790, rxnorm:114979]")
    code, out = lint_with(root)
    assert code == 1
    assert f"knowledge/{EMPLOYEE}:{line_of(text, 'rxnorm:114979')}:" in out
    assert "alternative rxnorm:114979 in group 'ppi' is not in this plan's items" in out


def test_restriction_with_unknown_value_set_is_refused(tmp_path: Path) -> None:
    root = knowledge_copy(tmp_path)
    text = edit(root, EMPLOYEE, "valueset: type-2-diabetes", "valueset: type-2-diabetis")
    code, out = lint_with(root)
    assert code == 1
    assert f"knowledge/{EMPLOYEE}:{line_of(text, 'type-2-diabetis')}:" in out
    assert "unknown value set 'type-2-diabetis'" in out


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        ("biomarker: ras-wild-type", "biomarker: ras-wildtype", "unknown biomarker 'ras-wildtype'"),
        ("demonstration: true", "demonstration: false", "must say 'demonstration: true'"),
        ("    tier: category-a\n    price: {amount: 0.15", "    tier: category-c\n    price: {amount: 0.15", "tier 'category-c' is not one of this plan's tiers"),
        ("    status: covered\n    tier: category-a\n    price: {amount: 0.15", "    status: free\n    tier: category-a\n    price: {amount: 0.15", "'status' must be one of"),
        ("preferred: [rxnorm:617311]", "preferred: [rxnorm:617320]", "preferred drug rxnorm:617320 is not covered"),
        ("quantity_limit: {quantity: 30, days: 30, max_daily: 1}", "quantity_limit: {quantity: 30}", "'quantity_limit' needs"),
    ],
)
def test_other_formulary_mistakes_are_refused(tmp_path: Path, old: str, new: str, reason: str) -> None:
    root = knowledge_copy(tmp_path)
    edit(root, EMPLOYEE, old, new)
    code, out = lint_with(root)
    assert code == 1, out
    assert f"knowledge/{EMPLOYEE}:" in out and reason in out


def test_unknown_default_plan_is_refused(tmp_path: Path) -> None:
    root = knowledge_copy(tmp_path)
    edit(root, "formularies/settings.yaml", "default_plan: cn-urban-employee-demo", "default_plan: cn-employee")
    code, out = lint_with(root)
    assert code == 1 and "knowledge/formularies/settings.yaml:" in out and "default plan 'cn-employee'" in out


def test_service_refuses_a_broken_formulary(tmp_path: Path) -> None:
    root = knowledge_copy(tmp_path)
    edit(root, EMPLOYEE, "- drug: rxnorm:32968              # clopidogrel", "- drug: rxnorm:99999999")
    with pytest.raises(PackError) as caught:
        load_ruleset(PROJECT_ROOT / "rules", root)
    assert any(p.file.endswith(EMPLOYEE) and p.line > 1 for p in caught.value.problems)


def test_cdx_table_mistakes_are_refused(tmp_path: Path) -> None:
    root = knowledge_copy(tmp_path)
    text = edit(root, "cdx/companion-diagnostics.yaml", "{drug: atc:L01EB03, biomarkers: [egfr-sensitising]",
                "{drug: atc:L01EB03, biomarkers: [egfr-sensitizing]")
    code, out = lint_with(root)
    assert code == 1
    assert f"knowledge/cdx/companion-diagnostics.yaml:{line_of(text, 'egfr-sensitizing')}:" in out
    assert "unknown biomarker 'egfr-sensitizing'" in out


def test_no_default_plan_means_no_coverage_cards_without_coverage(tmp_path: Path) -> None:
    root = knowledge_copy(tmp_path)
    edit(root, "formularies/settings.yaml", "default_plan: cn-urban-employee-demo", "default_plan: null")
    ruleset = load_ruleset(PROJECT_ROOT / "rules", root, today=date(2026, 11, 22))
    patient = "ma-jun-hyperlipidaemia-lipitor"
    resources = [r for r in example_patient(patient) if r["resourceType"] != "Coverage"]
    order = order_from_spec({"medication": "rxnorm:617320", "quantity": 30}, patient, ruleset.knowledge, 0)
    result = run_hook(ruleset, build_request("order-sign", patient, [order]), resources, "en", date(2026, 11, 22))
    assert result.response == {"cards": []}
    with_coverage = run_hook(ruleset, build_request("order-sign", patient, [order]), example_patient(patient), "en", date(2026, 11, 22))
    assert [f.rule.id for f, _ in with_coverage.cards] == ["formulary-not-covered-alternatives"]


# -- the rule grammar -------------------------------------------------------------------------------

HEADER = """
pack:
  id: test-coverage
  title: Test
  version: 1.0.0
  status: active
  publisher: tests
  effective: 2024-01-01
  sources: [{id: s, label: Test source, url: "https://example.org/source"}]
rules:
"""


def lint_rule(tmp_path: Path, rule: str) -> tuple[int, str, str]:
    text = textwrap.dedent(HEADER) + textwrap.indent(textwrap.dedent(rule), "  ")
    pack = tmp_path / "rules" / "pack.yaml"
    pack.parent.mkdir(parents=True, exist_ok=True)
    pack.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(main, ["lint", str(pack.parent)])
    return result.exit_code, result.output, text


CARD = """\
card:
  indicator: {indicator}
  category: {category}
  summary: {{en: "{summary}", zh-CN: "{summary}"}}
  source: s
  strength: Test
"""


def rule(when: str, indicator: str = "warning", category: str = "coverage", summary: str = "x", extra: str = "") -> str:
    return f"- id: r1\n  trigger: {{any_medication: true}}\n  when: {when}\n" + textwrap.indent(
        CARD.format(indicator=indicator, category=category, summary=summary) + extra, "  ")


def test_coverage_grammar_lints_clean(tmp_path: Path) -> None:
    code, out, _ = lint_rule(tmp_path, rule("{formulary: {status: [not-covered], has_alternative: true, plan: [us-commercial-demo]}}",
                                            summary="{{formulary.drug}}: {{formulary.patient_cost}}",
                                            extra="  suggestions:\n    - label: {en: 'To {{alternative.drug}}', zh-CN: '改用{{alternative.drug}}'}\n      formulary_alternatives: true\n"))
    assert code == 0, out


@pytest.mark.parametrize(
    ("when", "extra", "indicator", "reason"),
    [
        ("{formulary: {plan: [no-such-plan]}}", "", "warning", "unknown plan 'no-such-plan'"),
        ("{companion_diagnostic: {biomarker: [egfr]}}", "", "warning", "unknown biomarker 'egfr'"),
        ("{formulary: {restriction_met: true, missing: [bmi]}}", "", "warning", "can never hold"),
        ("{companion_diagnostic: {result: [missing]}}",
         "  suggestions:\n    - label: {en: Switch, zh-CN: 替换}\n      formulary_alternatives: true\n", "warning",
         "suggestion 'formulary_alternatives' needs a formulary condition"),
        ("{formulary: {status: [not-covered]}}", "", "critical", "a coverage card is at most 'warning'"),
        ("{test_order: {within_days: 30}}", "", "warning", "test_order needs"),
    ],
)
def test_coverage_grammar_mistakes_are_refused(tmp_path: Path, when: str, extra: str, indicator: str, reason: str) -> None:
    code, out, _ = lint_rule(tmp_path, rule(when, indicator=indicator, extra=extra))
    assert code == 1 and reason in out, out
    assert "pack.yaml:" in out


def test_coverage_variables_need_the_condition(tmp_path: Path) -> None:
    code, out, text = lint_rule(tmp_path, rule("{age: {gte: 18}}", summary="{{formulary.tier}}", category="clinical"))
    assert code == 1
    assert f"pack.yaml:{line_of(text, 'formulary.tier')}:" in out and "'{{formulary.tier}}' is not bound" in out


def test_ruleset_builds_with_the_shipped_knowledge_and_copy(tmp_path: Path) -> None:
    knowledge = load_knowledge(knowledge_copy(tmp_path))
    ruleset, problems = build_ruleset([PROJECT_ROOT / "rules"], knowledge, {"warfarin_iwpc"}, include_draft=True)
    assert ruleset is not None, [p.format() for p in problems]
