"""`precision-cds test` and `evaluate`, and every shipped pack's own test cases."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

from click.testing import CliRunner

from service.cli import main
from service.config import PROJECT_ROOT
from service.packtest import run_pack_tests, find_test_files

RULES = PROJECT_ROOT / "rules"


def test_every_shipped_pack_passes_its_own_test_cases() -> None:
    report = run_pack_tests([RULES], RULES, PROJECT_ROOT / "knowledge", PROJECT_ROOT / "examples")
    assert report.ok, report.table()


def test_every_shipped_pack_has_a_test_file_with_cases_for_each_rule() -> None:
    from service.engine.ruleset import pack_files
    from service.yamlsrc import load_yaml, plain

    tested: set[str] = set()
    for path in find_test_files([RULES]):
        doc = plain(load_yaml(path))
        for case in doc["cases"]:
            for item in case.get("expect", {}).get("fire", []):
                tested.add(item if isinstance(item, str) else item["rule"])
    for pack in pack_files([RULES]):
        assert pack.with_name(pack.stem + ".test.yaml").exists(), f"{pack} has no test file beside it"
        doc = plain(load_yaml(pack))
        for rule in doc["rules"]:
            assert rule["id"] in tested, f"rule {rule['id']} has no must-fire test case"


def test_test_command_prints_a_table_and_writes_junit(tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    result = CliRunner().invoke(main, ["test", str(RULES / "pgx" / "clopidogrel-cyp2c19.test.yaml"), "--junit-xml", str(junit)])
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output and "passed, 0 failed" in result.output
    suite = ET.parse(junit).getroot()
    assert suite.tag == "testsuite" and int(suite.get("tests", "0")) > 20 and suite.get("failures") == "0"


def test_test_command_fails_on_a_wrong_expectation(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    case_file = rules / "pgx" / "clopidogrel-cyp2c19.test.yaml"
    text = case_file.read_text(encoding="utf-8")
    case_file.write_text(text.replace("- CPIC Strong", "- CPIC Weak", 1), encoding="utf-8")
    result = CliRunner().invoke(main, ["test", str(case_file), "--rules", str(rules)])
    assert result.exit_code == 1
    assert "FAIL" in result.output and "does not contain 'CPIC Weak'" in result.output


def test_evaluate_shows_cards_and_trace() -> None:
    patient = PROJECT_ROOT / "examples" / "patients" / "zhang-wei-acs-cyp2c19-pm.json"
    result = CliRunner().invoke(main, ["evaluate", "--patient", str(patient), "--order", "rxnorm:309362", "--today", "2026-11-22"])
    assert result.exit_code == 0, result.output
    assert "WARNING: CYP2C19 Poor Metabolizer: avoid clopidogrel" in result.output
    assert "Replace clopidogrel with ticagrelor" in result.output
    assert "FIRED  clopidogrel-cyp2c19-acs-pci-poor" in result.output
    assert "✗ genotype: CYP2C19 phenotype is Poor Metabolizer" in result.output  # why the IM rule did not fire


def test_evaluate_json_and_chinese() -> None:
    patient = PROJECT_ROOT / "examples" / "requests" / "zhang-wei-acs-cyp2c19-pm.order-sign.json"
    result = CliRunner().invoke(main, ["evaluate", "--patient", str(patient), "--order", "rxnorm:309362", "--lang", "zh-CN", "--json", "--today", "2026-11-22"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.output)
    assert "慢代谢型" in body["cards"][0]["summary"]


def test_evaluate_with_an_order_file(tmp_path: Path) -> None:
    request = json.loads((PROJECT_ROOT / "examples" / "requests" / "zhang-wei-acs-cyp2c19-pm.order-sign.json").read_text(encoding="utf-8"))
    order = request["context"]["draftOrders"]["entry"][0]["resource"]
    path = tmp_path / "order.json"
    path.write_text(json.dumps(order), encoding="utf-8")
    patient = PROJECT_ROOT / "examples" / "patients" / "zhang-wei-acs-cyp2c19-pm.json"
    result = CliRunner().invoke(main, ["evaluate", "--patient", str(patient), "--order", str(path), "--json", "--today", "2026-11-22"])
    assert result.exit_code == 0, result.output
    card = json.loads(result.output)["cards"][0]
    assert card["suggestions"][0]["actions"][0]["resourceId"] == f"MedicationRequest/{order['id']}"


def test_serve_refuses_to_start_on_a_broken_pack(tmp_path: Path) -> None:
    rules = tmp_path / "rules"
    shutil.copytree(RULES, rules)
    pack = rules / "pgx" / "clopidogrel-cyp2c19.yaml"
    pack.write_text(pack.read_text(encoding="utf-8").replace("indicator: warning", "indicator: loud", 1), encoding="utf-8")
    result = CliRunner().invoke(main, ["serve", "--rules", str(rules), "--port", "0"])
    assert result.exit_code == 2
    assert "clopidogrel-cyp2c19.yaml:" in result.output
