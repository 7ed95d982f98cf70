"""`precision-cds lint`: each check reports file:line:column and a reason a pharmacist can act on."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from service.cli import main
from service.config import PROJECT_ROOT

GOOD = (PROJECT_ROOT / "rules" / "pgx" / "clopidogrel-cyp2c19.yaml").read_text(encoding="utf-8")


def lint(tmp_path: Path, text: str, *extra: str) -> tuple[int, str]:
    pack = tmp_path / "rules" / "pack.yaml"
    pack.parent.mkdir(parents=True, exist_ok=True)
    pack.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(main, ["lint", str(pack.parent), *extra])
    return result.exit_code, result.output


def line_of(text: str, needle: str, occurrence: int = 1) -> int:
    lines = text.splitlines()
    seen = 0
    for i, line in enumerate(lines, 1):
        if needle in line:
            seen += 1
            if seen == occurrence:
                return i
    raise AssertionError(f"{needle!r} not in text")


def test_shipped_packs_lint_clean() -> None:
    result = CliRunner().invoke(main, ["lint", str(PROJECT_ROOT / "rules")])
    assert result.exit_code == 0, result.output


def test_clean_copy_lints_clean(tmp_path: Path) -> None:
    code, out = lint(tmp_path, GOOD)
    assert code == 0, out


def test_yaml_syntax_error_points_at_the_line(tmp_path: Path) -> None:
    broken = GOOD.replace("  priority: 50", "  priority: [50")
    code, out = lint(tmp_path, broken)
    assert code == 1
    assert "pack.yaml:" in out and "invalid YAML" in out


def test_unknown_condition_key_names_line_and_fix(tmp_path: Path) -> None:
    broken = GOOD.replace("- genotype: {gene: CYP2C19, phenotype: [Poor Metabolizer, Likely Poor Metabolizer]}",
                          "- genotyp: {gene: CYP2C19, phenotype: [Poor Metabolizer, Likely Poor Metabolizer]}", 1)
    code, out = lint(tmp_path, broken)
    assert code == 1
    line = line_of(broken, "- genotyp:")
    assert f"pack.yaml:{line}:" in out
    assert "not a valid condition" in out


def test_duplicate_rule_id(tmp_path: Path) -> None:
    broken = GOOD.replace("id: clopidogrel-cyp2c19-acs-pci-intermediate", "id: clopidogrel-cyp2c19-acs-pci-poor")
    code, out = lint(tmp_path, broken)
    assert code == 1
    line = line_of(broken, "id: clopidogrel-cyp2c19-acs-pci-poor", 2)
    assert f"pack.yaml:{line}:" in out and "duplicate rule id 'clopidogrel-cyp2c19-acs-pci-poor'" in out


def test_unknown_value_set(tmp_path: Path) -> None:
    broken = GOOD.replace("diagnosis: {valueset: neurovascular, active: true}", "diagnosis: {valueset: neurovasculr, active: true}", 1)
    code, out = lint(tmp_path, broken)
    assert code == 1
    assert f"pack.yaml:{line_of(broken, 'neurovasculr')}:" in out
    assert "unknown value set 'neurovasculr'" in out


def test_unknown_calculator(tmp_path: Path) -> None:
    broken = GOOD.replace("- genotype: {gene: CYP2C19, phenotype: [Poor Metabolizer, Likely Poor Metabolizer]}",
                          "- calculator: {name: warfarin_gage}", 1)
    code, out = lint(tmp_path, broken)
    assert code == 1
    assert "unknown calculator 'warfarin_gage'" in out


def test_malformed_codes_for_their_system(tmp_path: Path) -> None:
    broken = GOOD.replace("trigger: {medication: [rxnorm:32968]}", "trigger: {medication: [rxnorm:clopidogrel]}", 1)
    code, out = lint(tmp_path, broken)
    assert code == 1
    assert f"pack.yaml:{line_of(broken, 'rxnorm:clopidogrel')}:" in out
    assert "'rxnorm:clopidogrel' is not a valid rxnorm code" in out


def test_unknown_phenotype_for_gene(tmp_path: Path) -> None:
    broken = GOOD.replace("phenotype: [Poor Metabolizer, Likely Poor Metabolizer]", "phenotype: [Poor Metaboliser, Likely Poor Metabolizer]", 1)
    code, out = lint(tmp_path, broken)
    assert code == 1
    assert "'Poor Metaboliser' is not a CYP2C19 phenotype" in out


def test_summary_too_long_after_templating(tmp_path: Path) -> None:
    long = "CYP2C19 {{CYP2C19.phenotype}}: avoid clopidogrel after ACS/PCI" + " because the active metabolite is reduced" * 2
    broken = GOOD.replace('en: "CYP2C19 {{CYP2C19.phenotype}}: avoid clopidogrel after ACS/PCI"', f'en: "{long}"', 1)
    code, out = lint(tmp_path, broken)
    assert code == 1
    assert "summary is" in out and "under 140" in out
    assert f"pack.yaml:{line_of(broken, long[:40])}:" in out


def test_missing_translation(tmp_path: Path) -> None:
    broken = GOOD.replace("        zh-CN: \"CYP2C19 {{CYP2C19.phenotype}}：ACS/PCI 后避免使用氯吡格雷\"\n", "", 1)
    code, out = lint(tmp_path, broken)
    assert code == 1
    assert "missing zh-CN translation" in out


def test_missing_source_url_and_unknown_source(tmp_path: Path) -> None:
    broken = GOOD.replace("      url: https://cpicpgx.org/guidelines/guideline-for-clopidogrel-and-cyp2c19/\n", "", 1)
    code, out = lint(tmp_path, broken)
    assert code == 1
    assert "'url' is a required property" in out
    broken = GOOD.replace("      source: cpic-clopidogrel-2022\n", "      source: cpic-2013\n", 1)
    code, out = lint(tmp_path, broken)
    assert code == 1
    assert "source 'cpic-2013' is not listed" in out


def test_condition_that_can_never_hold(tmp_path: Path) -> None:
    broken = GOOD.replace("- age: {gte: 75}", "- age: {gte: 75, lt: 18}", 1)
    code, out = lint(tmp_path, broken)
    assert code == 1
    assert "can never hold" in out
    assert f"pack.yaml:{line_of(broken, 'age: {gte: 75, lt: 18}')}:" in out


def test_unbound_template_variable(tmp_path: Path) -> None:
    broken = GOOD.replace("CYP2C19 {{CYP2C19.phenotype}}: avoid clopidogrel for stroke/TIA", "CYP2C9 {{CYP2C9.phenotype}}: avoid clopidogrel for stroke/TIA", 1)
    code, out = lint(tmp_path, broken)
    assert code == 1
    assert "'{{CYP2C9.phenotype}}' is not bound" in out


def test_json_format(tmp_path: Path) -> None:
    broken = GOOD.replace("trigger: {medication: [rxnorm:32968]}", "trigger: {medication: [rxnorm:x]}", 1)
    code, out = lint(tmp_path, broken, "--format", "json")
    assert code == 1
    data = json.loads(out)
    assert data["ok"] is False
    problem = data["problems"][0]
    assert problem["file"].endswith("pack.yaml") and problem["line"] == line_of(broken, "rxnorm:x") and problem["check"] == "code"


def test_duplicate_key_in_yaml(tmp_path: Path) -> None:
    broken = GOOD.replace("  priority: 50\n", "  priority: 50\n  priority: 60\n", 1)
    code, out = lint(tmp_path, broken)
    assert code == 1
    assert "duplicate key 'priority'" in out
    assert f"pack.yaml:{line_of(broken, 'priority: 60')}:" in out


def test_broken_knowledge_file_is_reported_with_file_and_line(tmp_path: Path) -> None:
    knowledge = tmp_path / "knowledge"
    shutil.copytree(PROJECT_ROOT / "knowledge", knowledge)
    vs = knowledge / "valuesets" / "cardiovascular.yaml"
    text = vs.read_text(encoding="utf-8").replace("icd10:I63*", "icd10:63*")
    vs.write_text(text, encoding="utf-8")
    result = CliRunner().invoke(main, ["lint", "--knowledge", str(knowledge), str(PROJECT_ROOT / "rules")])
    assert result.exit_code == 1
    assert f"cardiovascular.yaml:{line_of(text, 'icd10:63*')}:" in result.output


@pytest.mark.parametrize("status", ["draft", "retired"])
def test_draft_and_retired_packs_are_linted_too(tmp_path: Path, status: str) -> None:
    broken = GOOD.replace("  status: active", f"  status: {status}").replace("rxnorm:32968]}", "rxnorm:x]}", 1)
    code, out = lint(tmp_path, broken)
    assert code == 1
