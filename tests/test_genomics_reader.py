"""Tests for service.facts.genomics: FHIR R4 genomic Observations -> GenomicResult.

Every encoding listed in design.md §5 is written out as real FHIR JSON
(modelled on HL7 Genomics Reporting IG examples Pgx-geno-1001 / TxImp01 and
the team fact sheet §5). Expected phenotypes are CPIC literals.
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.facts.genomics import (
    GenomicSummary,
    disagreements,
    latest_by_gene,
    parse_fhir_datetime,
    read_genomic_results,
    summarise,
)
from service.facts.model import GenomicResult
from service.facts.pgx import PgxTables, load_pgx_tables

PGX_DIR = Path(__file__).resolve().parent.parent / "knowledge" / "pgx"
LOINC = "http://loinc.org"
TBD = "http://hl7.org/fhir/uv/genomics-reporting/CodeSystem/tbd-codes-cs"
CATEGORIES = [
    {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]},
    {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "GE"}]},
]
HGNC = {"CYP2C19": "HGNC:2621", "CYP2C9": "HGNC:2623", "VKORC1": "HGNC:23663", "HLA-B": "HGNC:4932"}


@pytest.fixture(scope="module")
def tables() -> PgxTables:
    return load_pgx_tables(PGX_DIR)


def gene_component(gene: str, *, code: bool = True, display: bool = True) -> dict[str, Any]:
    coding: dict[str, Any] = {"system": "http://www.genenames.org"}
    if code:
        coding["code"] = HGNC[gene]
    if display:
        coding["display"] = gene
    return {
        "code": {"coding": [{"system": LOINC, "code": "48018-6", "display": "Gene studied [ID]"}]},
        "valueCodeableConcept": {"coding": [coding]},
    }


def genotype_obs(
    oid: str,
    value: dict[str, Any],
    gene: str | None = None,
    *,
    when: str = "2024-03-01",
    status: str = "final",
    code: str = "84413-4",
) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": oid,
        "meta": {"profile": ["http://hl7.org/fhir/uv/genomics-reporting/StructureDefinition/genotype"]},
        "status": status,
        "category": copy.deepcopy(CATEGORIES),
        "code": {"coding": [{"system": LOINC, "code": code, "display": "Genotype display name"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": when,
        **value,
    }
    if gene:
        obs["component"] = [gene_component(gene)]
    return obs


def text_value(text: str) -> dict[str, Any]:
    return {"valueCodeableConcept": {"text": text}}


def implication_obs(
    oid: str,
    answer: dict[str, Any],
    *,
    derived_from: str | None = None,
    gene: str | None = None,
    code: tuple[str, str] = (TBD, "therapeutic-implication"),
    when: str = "2024-03-02",
    status: str = "final",
) -> dict[str, Any]:
    """IG STU3 TherapeuticImplication: phenotype in a therapeutic-implication component."""
    components: list[dict[str, Any]] = [
        {"code": {"coding": [{"system": code[0], "code": code[1]}]}, "valueCodeableConcept": answer},
        {
            "code": {"coding": [{"system": LOINC, "code": "51963-7", "display": "Medication assessed [ID]"}]},
            "valueCodeableConcept": {
                "coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "32968", "display": "clopidogrel"}]
            },
        },
    ]
    if gene:
        components.append(gene_component(gene))
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": oid,
        "status": status,
        "category": copy.deepcopy(CATEGORIES),
        "code": {"coding": [{"system": code[0], "code": code[1]}]},
        "subject": {"reference": "Patient/p1"},
        "issued": f"{when}T09:00:00Z",
        "component": components,
    }
    if derived_from:
        obs["derivedFrom"] = [{"reference": f"Observation/{derived_from}"}]
    return obs


POOR = {"coding": [{"system": LOINC, "code": "LA9657-3", "display": "Poor metabolizer"}]}


# --- genotype encodings -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "gene", "diplotype", "phenotype", "score"),
    [
        (text_value("CYP2C19 *2/*2"), "CYP2C19", "*2/*2", "Poor Metabolizer", None),
        (text_value("*1/*17"), "CYP2C19", "*1/*17", "Rapid Metabolizer", None),
        (text_value("*17/*2"), "CYP2C19", "*2/*17", "Intermediate Metabolizer", None),
        (text_value("CYP2C9 *1/*3"), "CYP2C9", "*1/*3", "Intermediate Metabolizer", 1.0),
        ({"valueString": "CYP2C9*2/*3"}, "CYP2C9", "*2/*3", "Poor Metabolizer", 0.5),
        (
            {"valueCodeableConcept": {"coding": [{"system": "http://www.ncbi.nlm.nih.gov/clinvar", "code": "638797", "display": "CYP2C19*2/*2"}]}},
            "CYP2C19",
            "*2/*2",
            "Poor Metabolizer",
            None,
        ),
        (text_value("CYP2C19 *1/*12"), "CYP2C19", "*1/*12", "Indeterminate", None),
        (text_value("CYP2C19 *1/*42"), "CYP2C19", "*1/*42", "Indeterminate", None),
    ],
)
@pytest.mark.parametrize("with_component", [True, False])
def test_star_allele_genotypes(
    tables: PgxTables,
    value: dict[str, Any],
    gene: str,
    diplotype: str,
    phenotype: str,
    score: float | None,
    with_component: bool,
) -> None:
    obs = genotype_obs("g1", value, gene if with_component else None)
    results = read_genomic_results([obs], tables)
    if not with_component and gene not in str(value):
        assert results == [], "a bare diplotype needs the gene component"
        return
    [result] = results
    assert result == GenomicResult(
        gene=gene,
        kind="genotype",
        diplotype=diplotype,
        phenotype=phenotype,
        activity_score=score,
        when=datetime(2024, 3, 1, tzinfo=timezone.utc),
        source_id="g1",
    )


def test_gene_from_hgnc_code_only_or_display_only(tables: PgxTables) -> None:
    by_code = genotype_obs("a", text_value("*2/*2"))
    by_code["component"] = [gene_component("CYP2C19", display=False)]
    by_display = genotype_obs("b", text_value("*2/*2"))
    by_display["component"] = [gene_component("CYP2C19", code=False)]
    results = read_genomic_results([by_code, by_display], tables)
    assert [(r.gene, r.phenotype) for r in results] == [("CYP2C19", "Poor Metabolizer")] * 2


def test_haplotype_code_is_accepted(tables: PgxTables) -> None:
    [result] = read_genomic_results([genotype_obs("h", text_value("CYP2C19 *1/*2"), code="84414-2")], tables)
    assert result.phenotype == "Intermediate Metabolizer"


def test_component_and_value_naming_different_genes_is_skipped(tables: PgxTables) -> None:
    obs = genotype_obs("x", text_value("CYP2C9 *1/*3"), "CYP2C19")
    assert read_genomic_results([obs], tables) == []


def test_bare_diplotype_without_gene_is_skipped(tables: PgxTables) -> None:
    assert read_genomic_results([genotype_obs("x", text_value("*1/*2"))], tables) == []


@pytest.mark.parametrize(
    ("text", "gene", "diplotype", "label"),
    [
        ("VKORC1 rs9923231 C/T", "VKORC1", "rs9923231 C/T", "-1639 AG"),
        ("VKORC1 -1639G>A A/G", "VKORC1", "rs9923231 C/T", "-1639 AG"),
        ("VKORC1 -1639G>A G/G", "VKORC1", "rs9923231 C/C", "-1639 GG"),
        ("VKORC1 rs9923231 T/T", "VKORC1", "rs9923231 T/T", "-1639 AA"),
        ("CYP4F2 rs2108622 C/T", "CYP4F2", "rs2108622 C/T", "rs2108622 T carrier"),
    ],
)
def test_snp_genotypes(tables: PgxTables, text: str, gene: str, diplotype: str, label: str) -> None:
    [result] = read_genomic_results([genotype_obs("s", text_value(text))], tables)
    assert (result.gene, result.kind, result.diplotype, result.phenotype) == (gene, "genotype", diplotype, label)
    assert result.variant == diplotype.split()[0]


def test_vkorc1_with_gene_component_and_bare_letters(tables: PgxTables) -> None:
    [result] = read_genomic_results([genotype_obs("s", text_value("A/G"), "VKORC1")], tables)
    assert (result.diplotype, result.phenotype) == ("rs9923231 C/T", "-1639 AG")


@pytest.mark.parametrize(
    ("text", "allele", "status"),
    [
        ("HLA-B*15:02 positive", "HLA-B*15:02", "positive"),
        ("HLA-B*15:02 negative", "HLA-B*15:02", "negative"),
        ("HLA-B*58:01 present", "HLA-B*58:01", "positive"),
        ("HLA-B*58:01 not detected", "HLA-B*58:01", "negative"),
    ],
)
def test_hla_text_on_a_genotype_observation(tables: PgxTables, text: str, allele: str, status: str) -> None:
    [result] = read_genomic_results([genotype_obs("hla", text_value(text))], tables)
    assert (result.gene, result.kind, result.allele, result.status) == ("HLA-B", "allele", allele, status)
    assert result.source_id == "hla"


def test_hla_two_allele_typing_answers_each_tracked_allele(tables: PgxTables) -> None:
    results = read_genomic_results([genotype_obs("t", text_value("*15:02/*40:01"), "HLA-B")], tables)
    assert {(r.allele, r.status) for r in results} == {
        ("HLA-B*15:02", "positive"),
        ("HLA-B*57:01", "negative"),
        ("HLA-B*58:01", "negative"),
        ("HLA-B*40:01", "positive"),
    }


@pytest.mark.parametrize(
    ("value", "status"),
    [
        ({"valueCodeableConcept": {"coding": [{"system": LOINC, "code": "LA6576-8", "display": "Positive"}]}}, "positive"),
        ({"valueCodeableConcept": {"text": "Negative"}}, "negative"),
        ({"valueString": "not detected"}, "negative"),
    ],
)
def test_hla_loinc_57979_7(tables: PgxTables, value: dict[str, Any], status: str) -> None:
    obs = {
        "resourceType": "Observation",
        "id": "hla-1502",
        "status": "final",
        "code": {"coding": [{"system": LOINC, "code": "57979-7", "display": "HLA-B*15:02 [Presence] in Blood or Tissue by Probe w/amp"}]},
        "effectiveDateTime": "2023-05-05",
        **value,
    }
    [result] = read_genomic_results([obs], tables)
    assert (result.allele, result.status, result.kind) == ("HLA-B*15:02", status, "allele")


def test_hla_allele_named_only_in_code_display(tables: PgxTables) -> None:
    obs = {
        "resourceType": "Observation",
        "id": "hla-5801",
        "status": "final",
        "code": {"text": "HLA-B*58:01 [Presence] in Blood or Tissue"},
        "valueCodeableConcept": {"text": "Present"},
    }
    [result] = read_genomic_results([obs], tables)
    assert (result.allele, result.status) == ("HLA-B*58:01", "positive")


# --- reported phenotypes --------------------------------------------------------------------


def test_stu3_genotype_and_therapeutic_implication_pair(tables: PgxTables) -> None:
    """The fact sheet's minimal STU3 example: the implication names its gene only via derivedFrom."""
    geno = genotype_obs("cyp2c19-gt", text_value("CYP2C19 *2/*2"), "CYP2C19")
    imp = implication_obs("cyp2c19-clop", POOR, derived_from="cyp2c19-gt")
    results = read_genomic_results([imp, geno], tables)
    assert [(r.kind, r.gene, r.phenotype, r.source_id) for r in results] == [
        ("phenotype", "CYP2C19", "Poor Metabolizer", "cyp2c19-clop"),
        ("genotype", "CYP2C19", "Poor Metabolizer", "cyp2c19-gt"),
    ]
    assert results[0].when == datetime(2024, 3, 2, 9, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ({"coding": [{"system": LOINC, "code": "LA10315-2", "display": "Ultrarapid metabolizer"}]}, "Ultrarapid Metabolizer"),
        ({"coding": [{"system": LOINC, "code": "LA25390-8"}]}, "Rapid Metabolizer"),
        ({"coding": [{"system": LOINC, "code": "LA25391-6"}]}, "Normal Metabolizer"),
        ({"coding": [{"system": LOINC, "code": "LA10317-8"}]}, "Intermediate Metabolizer"),
        ({"coding": [{"system": LOINC, "code": "LA9657-3"}]}, "Poor Metabolizer"),
        ({"coding": [{"system": LOINC, "code": "LA9657-3", "display": "Poor metabolizer"}], "text": "Likely Poor Metabolizer"}, "Likely Poor Metabolizer"),
        ({"text": "CYP2C19 likely intermediate metaboliser"}, "Likely Intermediate Metabolizer"),
        ({"text": "Indeterminate"}, "Indeterminate"),
    ],
)
@pytest.mark.parametrize(
    "code", [(TBD, "therapeutic-implication"), (TBD, "predicted-therapeutic-implication"), (LOINC, "53040-2")]
)
def test_reported_phenotype_encodings(tables: PgxTables, answer: dict[str, Any], expected: str, code: tuple[str, str]) -> None:
    obs = implication_obs("imp", answer, gene="CYP2C19", code=code)
    [result] = read_genomic_results([obs], tables)
    assert (result.gene, result.kind, result.phenotype) == ("CYP2C19", "phenotype", expected)


def test_ig_v1_top_level_53040_2(tables: PgxTables) -> None:
    obs = {
        "resourceType": "Observation",
        "id": "v1",
        "status": "amended",
        "code": {"coding": [{"system": LOINC, "code": "53040-2", "display": "Genetic variation's effect on drug metabolism"}]},
        "valueCodeableConcept": {"coding": [{"system": LOINC, "code": "LA10317-8", "display": "Intermediate metabolizer"}]},
        "component": [gene_component("CYP2C9")],
        "effectiveDateTime": "2021-06-01T08:30:00+08:00",
    }
    [result] = read_genomic_results([obs], tables)
    assert (result.gene, result.phenotype) == ("CYP2C9", "Intermediate Metabolizer")
    assert result.when == datetime(2021, 6, 1, 0, 30, tzinfo=timezone.utc)


def test_metabolic_activity_interpretation_code_with_gene_in_display(tables: PgxTables) -> None:
    """FHIR R4 core example style (LOINC 79716-7): the gene is named only in the code display."""
    obs = {
        "resourceType": "Observation",
        "id": "example-phenotype",
        "status": "final",
        "code": {
            "coding": [
                {"system": LOINC, "code": "79716-7", "display": "CYP2C9 gene product metabolic activity interpretation in Blood or Tissue by Genotyping"}
            ]
        },
        "valueCodeableConcept": {"coding": [{"system": LOINC, "code": "LA10317-8", "display": "Intermediate metabolizer"}]},
        "issued": "2013-04-03T15:30:10+01:00",
    }
    [result] = read_genomic_results([obs], tables)
    assert (result.gene, result.kind, result.phenotype) == ("CYP2C9", "phenotype", "Intermediate Metabolizer")


def test_reported_phenotype_that_the_gene_cannot_have_is_skipped(tables: PgxTables) -> None:
    obs = implication_obs("imp", {"text": "Poor Function"}, gene="CYP2C19")
    assert read_genomic_results([obs], tables) == []


def test_phenotype_without_any_gene_is_skipped(tables: PgxTables) -> None:
    assert read_genomic_results([implication_obs("imp", POOR)], tables) == []


# --- status, time, robustness ------------------------------------------------------------------


@pytest.mark.parametrize("status", ["preliminary", "registered", "cancelled", "entered-in-error", "unknown", "", None, 3])
def test_non_final_observations_are_skipped(tables: PgxTables, status: Any) -> None:
    obs = genotype_obs("g", text_value("CYP2C19 *2/*2"))
    obs["status"] = status
    assert read_genomic_results([obs], tables) == []


@pytest.mark.parametrize("status", ["final", "amended", "corrected", "FINAL"])
def test_final_amended_corrected_count(tables: PgxTables, status: str) -> None:
    obs = genotype_obs("g", text_value("CYP2C19 *2/*2"))
    obs["status"] = status
    assert len(read_genomic_results([obs], tables)) == 1


def test_other_resource_types_are_skipped(tables: PgxTables) -> None:
    obs = genotype_obs("g", text_value("CYP2C19 *2/*2"))
    obs["resourceType"] = "DiagnosticReport"
    assert read_genomic_results([obs], tables) == []


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"effectiveDateTime": "2024-03-01T10:00:00Z"}, datetime(2024, 3, 1, 10, tzinfo=timezone.utc)),
        ({"effectiveDateTime": "2024-03-01T10:00:00+08:00"}, datetime(2024, 3, 1, 2, tzinfo=timezone.utc)),
        ({"effectiveDateTime": "2024-03-01T10:00:00"}, datetime(2024, 3, 1, 10, tzinfo=timezone.utc)),
        ({"effectiveDateTime": "2024-03"}, datetime(2024, 3, 1, tzinfo=timezone.utc)),
        ({"effectiveDateTime": "2024"}, datetime(2024, 1, 1, tzinfo=timezone.utc)),
        ({"effectiveDateTime": "garbage", "issued": "2022-01-02T03:04:05.678Z"}, datetime(2022, 1, 2, 3, 4, 5, 678000, tzinfo=timezone.utc)),
        ({"effectivePeriod": {"start": "2020-02-02"}}, datetime(2020, 2, 2, tzinfo=timezone.utc)),
        ({"effectiveDateTime": 20240301}, None),
    ],
)
def test_when_is_timezone_aware(tables: PgxTables, fields: dict[str, Any], expected: datetime | None) -> None:
    obs = genotype_obs("g", text_value("CYP2C19 *2/*2"))
    del obs["effectiveDateTime"]
    obs.update(fields)
    [result] = read_genomic_results([obs], tables)
    assert result.when == expected
    if result.when is not None:
        assert result.when.tzinfo is not None


def test_parse_fhir_datetime_rejects_nonsense() -> None:
    assert parse_fhir_datetime("2024-13-45") is None
    assert parse_fhir_datetime(None) is None
    assert parse_fhir_datetime(["2024"]) is None


JUNK: list[Any] = [
    None,
    5,
    "Observation",
    [],
    {},
    {"resourceType": "Observation"},
    {"resourceType": "Observation", "status": "final"},
    {"resourceType": "Observation", "status": "final", "code": "84413-4"},
    {"resourceType": "Observation", "status": "final", "code": {"coding": "84413-4"}},
    {"resourceType": "Observation", "status": "final", "code": {"coding": [None, 7, {"code": 84413}]}},
    {"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": LOINC, "code": "84413-4"}]}},
    {"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": LOINC, "code": "84413-4"}]}, "valueString": 42},
    {"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": LOINC, "code": "84413-4"}]}, "valueCodeableConcept": "CYP2C19 *2/*2"},
    {"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": LOINC, "code": "84413-4"}]}, "component": {"code": 1}, "valueCodeableConcept": {"text": 5, "coding": {"display": "x"}}},
    {"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": LOINC, "code": "84413-4"}]}, "component": [None, {"code": None}, {"code": {"coding": [{"code": "48018-6"}]}, "valueCodeableConcept": {"coding": [{"code": None, "display": 9}]}}], "valueCodeableConcept": {"text": "*1/*2"}},
    {"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": TBD, "code": "therapeutic-implication"}]}, "derivedFrom": "Observation/x", "component": [{"code": {"coding": [{"system": TBD, "code": "therapeutic-implication"}]}, "valueCodeableConcept": None}]},
    {"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": TBD, "code": "therapeutic-implication"}]}, "derivedFrom": [None, {"reference": 5}, {"reference": "Observation/"}]},
    {"resourceType": "Observation", "status": "final", "code": {"coding": [{"system": LOINC, "code": "57979-7"}]}, "valueCodeableConcept": {"coding": [{"display": None}]}},
    {"resourceType": "Observation", "id": ["not", "a", "string"], "status": "final", "code": {"coding": [{"system": LOINC, "code": "84413-4"}]}, "valueString": "CYP2C19 *2/*2", "effectiveDateTime": {"x": 1}, "issued": 3.5},
]


def test_wrong_types_never_raise(tables: PgxTables) -> None:
    results = read_genomic_results(JUNK, tables)
    # Only the last entry is readable; its bad id and dates are dropped, not fatal.
    assert [(r.gene, r.diplotype, r.source_id, r.when) for r in results] == [("CYP2C19", "*2/*2", None, None)]


@pytest.mark.parametrize("observations", [None, 5, "abc", {"resourceType": "Bundle"}])
def test_observations_that_are_not_a_list_give_nothing(tables: PgxTables, observations: Any) -> None:
    assert read_genomic_results(observations, tables) == []


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=12,
)
_VALID = [
    genotype_obs("g", text_value("CYP2C19 *2/*2"), "CYP2C19"),
    implication_obs("i", POOR, derived_from="g"),
    genotype_obs("v", text_value("VKORC1 -1639G>A A/G")),
    genotype_obs("h", text_value("HLA-B*15:02 positive")),
]
_PATHS = [
    ("status",), ("code",), ("code", "coding"), ("component",), ("valueCodeableConcept",),
    ("valueCodeableConcept", "text"), ("effectiveDateTime",), ("derivedFrom",), ("id",), ("issued",),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.integers(0, len(_VALID) - 1), path=st.sampled_from(_PATHS), junk=_json)
def test_fuzzed_observations_never_raise(tables: PgxTables, which: int, path: tuple[str, ...], junk: Any) -> None:
    obs = copy.deepcopy(_VALID[which])
    target: Any = obs
    for step in path[:-1]:
        target = target.setdefault(step, {}) if isinstance(target, dict) else {}
    if isinstance(target, dict):
        target[path[-1]] = junk
    results = read_genomic_results([obs, junk], tables)
    assert all(isinstance(r, GenomicResult) for r in results)


# --- one result per gene ---------------------------------------------------------------------


def _result(gene: str, kind: str, phenotype: str | None, days: int | None, **extra: Any) -> GenomicResult:
    when = None if days is None else datetime(2024, 1, 1, tzinfo=timezone.utc) + timedelta(days=days)
    return GenomicResult(gene=gene, kind=kind, phenotype=phenotype, when=when, **extra)


def test_latest_genotype_wins(tables: PgxTables) -> None:
    old = genotype_obs("old", text_value("CYP2C19 *1/*1"), when="2019-01-01")
    new = genotype_obs("new", text_value("CYP2C19 *1/*2"), when="2024-01-01")
    chosen = latest_by_gene(read_genomic_results([new, old], tables))
    assert chosen["CYP2C19"].source_id == "new"
    assert chosen["CYP2C19"].phenotype == "Intermediate Metabolizer"


def test_newer_indeterminate_genotype_is_not_overridden_by_older_normal(tables: PgxTables) -> None:
    old = genotype_obs("old", text_value("CYP2C19 *1/*1"), when="2019-01-01")
    new = genotype_obs("new", text_value("CYP2C19 *1/*42"), when="2024-01-01")
    chosen = latest_by_gene(read_genomic_results([old, new], tables))["CYP2C19"]
    assert (chosen.source_id, chosen.phenotype) == ("new", "Indeterminate")


def test_computed_phenotype_beats_newer_reported_phenotype_and_disagreement_is_recorded(tables: PgxTables) -> None:
    geno = genotype_obs("gt", text_value("CYP2C19 *2/*2"), when="2020-01-01")
    report = implication_obs("rep", {"coding": [{"system": LOINC, "code": "LA25391-6", "display": "Normal metabolizer"}]}, gene="CYP2C19", when="2024-01-01")
    summary = summarise(read_genomic_results([geno, report], tables))
    assert isinstance(summary, GenomicSummary)
    assert summary.by_gene["CYP2C19"].source_id == "gt"
    assert summary.by_gene["CYP2C19"].phenotype == "Poor Metabolizer"
    [conflict] = summary.disagreements
    assert conflict.gene == "CYP2C19"
    assert (conflict.computed.phenotype, conflict.reported.phenotype) == ("Poor Metabolizer", "Normal Metabolizer")
    assert conflict.reported.source_id == "rep"


def test_coded_base_term_agrees_with_likely_phenotype(tables: PgxTables) -> None:
    geno = genotype_obs("gt", text_value("CYP2C19 *2/*9"))
    report = implication_obs("rep", POOR, derived_from="gt")
    results = read_genomic_results([geno, report], tables)
    assert latest_by_gene(results)["CYP2C19"].phenotype == "Likely Poor Metabolizer"
    assert disagreements(results) == []


def test_reported_phenotype_is_used_when_no_interpretable_genotype() -> None:
    results = [
        _result("CYP2C19", "genotype", "Indeterminate", 10, diplotype="*1/*42"),
        _result("CYP2C19", "phenotype", "Intermediate Metabolizer", 1),
        _result("CYP2C19", "phenotype", "Poor Metabolizer", 5),
    ]
    assert latest_by_gene(results)["CYP2C19"].phenotype == "Poor Metabolizer"
    assert disagreements(results) == []


def test_indeterminate_genotype_is_kept_when_nothing_else_exists() -> None:
    only = _result("CYP2C9", "genotype", "Indeterminate", 1, diplotype="*1/*7")
    assert latest_by_gene([only]) == {"CYP2C9": only}


def test_results_without_time_count_as_oldest() -> None:
    undated = _result("CYP2C9", "genotype", "Normal Metabolizer", None, diplotype="*1/*1")
    dated = _result("CYP2C9", "genotype", "Intermediate Metabolizer", 0, diplotype="*1/*2")
    assert latest_by_gene([dated, undated])["CYP2C9"] is dated


def test_hla_results_are_keyed_by_allele(tables: PgxTables) -> None:
    obs = [
        genotype_obs("a", text_value("HLA-B*15:02 negative"), when="2020-01-01"),
        genotype_obs("b", text_value("HLA-B*15:02 positive"), when="2023-01-01"),
        genotype_obs("c", text_value("HLA-B*58:01 not detected"), when="2021-01-01"),
        genotype_obs("d", text_value("CYP2C19 *1/*1")),
    ]
    chosen = latest_by_gene(read_genomic_results(obs, tables))
    assert set(chosen) == {"HLA-B*15:02", "HLA-B*58:01", "CYP2C19"}
    assert chosen["HLA-B*15:02"].status == "positive"
    assert chosen["HLA-B*58:01"].status == "negative"
