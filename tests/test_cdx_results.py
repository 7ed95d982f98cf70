"""Companion-diagnostic results: every accepted FHIR encoding, read into missing / negative / positive.

Accepted (rules/coverage-and-cdx.md): a variant Observation (LOINC 69548-6,
Present LA9633-4 / Absent LA9634-2) naming the gene in component 48018-6
(HGNC coding or symbol) with the change in 48005-3 or exon-level text; or a
biomarker-specific LOINC answered Positive (LA6576-8) / Negative (LA6577-6),
with an IHC score, or a percentage.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest

from service.config import PROJECT_ROOT
from service.engine.coverage import read_biomarker, therapies_applicable
from service.facts.builder import build_patient_facts
from service.formulary import normalise_variant
from service.knowledge import load_knowledge

KNOWLEDGE = load_knowledge(PROJECT_ROOT / "knowledge")
LOINC = "http://loinc.org"
TODAY = date(2026, 11, 22)


def variant(gene: str, change: str | None, present: bool = True, hgnc: str | None = None, status: str = "final") -> dict[str, Any]:
    gene_value: dict[str, Any] = {"coding": [{"system": "http://www.genenames.org", "code": hgnc, "display": gene}]} if hgnc else {"text": gene}
    comps: list[dict[str, Any]] = [{"code": {"coding": [{"system": LOINC, "code": "48018-6"}]}, "valueCodeableConcept": gene_value}]
    if change:
        comps.append({"code": {"coding": [{"system": LOINC, "code": "48005-3"}]}, "valueCodeableConcept": {"text": change}})
    return {"resourceType": "Observation", "id": "v", "status": status, "code": {"coding": [{"system": LOINC, "code": "69548-6"}]},
            "effectiveDateTime": "2026-11-01",
            "valueCodeableConcept": {"coding": [{"system": LOINC, "code": "LA9633-4" if present else "LA9634-2"}]},
            "component": comps}


def result(code: str, **value: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": code, "status": "final", "code": {"coding": [{"system": LOINC, "code": code}]},
            "effectiveDateTime": "2026-11-01", **value}


POS = {"valueCodeableConcept": {"coding": [{"system": LOINC, "code": "LA6576-8", "display": "Positive"}]}}
NEG = {"valueCodeableConcept": {"coding": [{"system": LOINC, "code": "LA6577-6", "display": "Negative"}]}}


def status(marker: str, *observations: dict[str, Any], percent_min: float | None = None) -> str:
    facts = build_patient_facts(list(observations), KNOWLEDGE, TODAY)
    return read_biomarker(KNOWLEDGE.cdx.biomarkers[marker], facts, percent_min).status


@pytest.mark.parametrize(
    ("marker", "observations", "expected"),
    [
        ("egfr-sensitising", [], "missing"),
        ("egfr-sensitising", [variant("EGFR", "p.Leu858Arg", hgnc="HGNC:3236")], "positive"),
        ("egfr-sensitising", [variant("EGFR", "p.(Leu858Arg)")], "positive"),
        ("egfr-sensitising", [variant("EGFR", "L858R")], "positive"),
        ("egfr-sensitising", [variant("EGFR", "Exon 19 deletion")], "positive"),
        ("egfr-sensitising", [variant("EGFR", "19外显子缺失")], "positive"),
        ("egfr-sensitising", [variant("EGFR", None, present=False)], "negative"),
        ("egfr-sensitising", [variant("EGFR", "exon 20 insertion")], "negative"),
        ("egfr-sensitising", [variant("EGFR", "p.Thr790Met")], "negative"),
        ("egfr-sensitising", [variant("EGFR", None)], "missing"),  # a variant present but not named
        ("egfr-sensitising", [variant("KRAS", "p.Leu858Arg", hgnc="HGNC:6407")], "missing"),  # another gene
        ("egfr-sensitising", [{**variant("", "p.Leu858Arg"), "component": [
            {"code": {"coding": [{"system": LOINC, "code": "48018-6"}]},
             "valueCodeableConcept": {"coding": [{"system": "http://www.genenames.org/geneId", "code": "HGNC:3236"}]}},
            {"code": {"coding": [{"system": LOINC, "code": "48005-3"}]},
             "valueCodeableConcept": {"coding": [{"system": "http://varnomen.hgvs.org", "code": "NM_005228.5:p.Leu858Arg"}]}}]}],
         "positive"),  # HGNC id under another system URL, no display; HGVS as a coding
        ("egfr-sensitising", [variant("EGFR", "p.Leu858Arg", status="entered-in-error")], "missing"),
        ("egfr-sensitising", [result("55766-0", **POS)], "positive"),
        ("egfr-sensitising", [result("55766-0", **NEG)], "missing"),  # L858R absent says nothing about exon 19
        ("egfr-sensitising", [result("55766-0", **NEG), result("55764-5", **NEG)], "negative"),
        ("egfr-sensitising", [result("21665-5", valueString="L858R detected")], "positive"),
        ("egfr-sensitising", [result("21665-5", valueString="No mutation detected")], "negative"),
        ("egfr-t790m", [result("85383-8", valueString="Positive")], "positive"),
        ("alk-fusion", [result("78205-2", **POS)], "positive"),
        ("alk-fusion", [result("78205-2", **NEG)], "negative"),
        ("alk-fusion", [variant("ALK", "EML4::ALK fusion", hgnc="HGNC:427")], "positive"),
        ("her2-positive", [result("85319-2", valueString="3+")], "positive"),
        ("her2-positive", [result("85319-2", valueString="IHC 2+")], "missing"),
        ("her2-positive", [result("85319-2", valueString="0")], "negative"),
        ("her2-positive", [result("85319-2", valueString="2+"), result("85318-4", valueString="Not amplified")], "negative"),
        ("pd-l1-tps", [result("83053-9", valueQuantity={"value": 1, "unit": "%", "code": "%"})], "positive"),
        ("pd-l1-tps", [result("83053-9", valueQuantity={"value": 0.5, "unit": "%", "code": "%"})], "negative"),
        ("pd-l1-tps", [result("83052-1", **POS)], "positive"),
        ("ras-wild-type", [result("81420-2", **NEG)], "positive"),
        ("ras-wild-type", [variant("KRAS", None, present=False), variant("NRAS", None, present=False)], "positive"),
        ("ras-wild-type", [variant("KRAS", None, present=False)], "missing"),
        ("ras-wild-type", [variant("NRAS", "p.Gln61Arg", hgnc="HGNC:7989")], "negative"),
        ("brca-deleterious", [variant("BRCA2", None, hgnc="HGNC:1101")], "positive"),
        ("brca-deleterious", [result("21636-6", **POS)], "positive"),
        ("kras-g12c", [variant("KRAS", "p.Gly12Cys")], "positive"),
        ("kras-g12c", [variant("KRAS", "p.Gly12Asp")], "negative"),
        ("met-exon14", [variant("MET", "METex14 skipping")], "positive"),
        ("flt3-mutation", [variant("FLT3", "internal tandem duplication")], "positive"),
        ("flt3-mutation", [variant("FLT3", "p.Asp835Tyr")], "positive"),
    ],
)
def test_accepted_result_encodings(marker: str, observations: list[dict[str, Any]], expected: str) -> None:
    assert status(marker, *observations) == expected


def test_therapy_specific_percentage_threshold() -> None:
    tps20 = result("83053-9", valueQuantity={"value": 20, "unit": "%", "code": "%"})
    assert status("pd-l1-tps", tps20) == "positive"
    assert status("pd-l1-tps", tps20, percent_min=50) == "negative"


def test_variant_text_normalisation() -> None:
    assert normalise_variant("p.(Leu858Arg)") == "leu858arg"
    assert normalise_variant("Exon 19 deletion") == "exon19deletion"


def test_indication_specific_entries_apply_only_with_the_diagnosis() -> None:
    melanoma = {"resourceType": "Condition", "id": "m", "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10", "code": "C43.9"}]}}
    dabrafenib = KNOWLEDGE.expand_codes({"rxnorm:1424911"})
    none = therapies_applicable(KNOWLEDGE.cdx, dabrafenib, build_patient_facts([], KNOWLEDGE, TODAY))
    with_melanoma = therapies_applicable(KNOWLEDGE.cdx, dabrafenib, build_patient_facts([melanoma], KNOWLEDGE, TODAY))
    assert none == []
    assert [t.biomarkers for t in with_melanoma] == [("braf-v600",)]
    osimertinib = KNOWLEDGE.expand_codes({"rxnorm:1721560"})
    assert [t.biomarkers for t in therapies_applicable(KNOWLEDGE.cdx, osimertinib, build_patient_facts([], KNOWLEDGE, TODAY))] == [
        ("egfr-sensitising", "egfr-t790m")]
