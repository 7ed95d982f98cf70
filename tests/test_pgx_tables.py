"""Tests for service.facts.pgx and the knowledge/pgx tables.

Expected phenotypes are computed here from CPIC's rule *statements* (the
team's verified fact sheet, shared/reference/pharmacogenomics-cpic.md §1-2),
written independently of the implementation: CYP2C19 as a function-pair
rule, CYP2C9 as activity-score thresholds. Spot checks use literal values
from CPIC / PharmCAT's published diplotype lists.
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import pytest

from service.errors import PackError
from service.facts.pgx import PgxTables, load_pgx_tables

PGX_DIR = Path(__file__).resolve().parent.parent / "knowledge" / "pgx"

# --- CPIC facts restated from the fact sheet (not read from the YAML) --------------

#: Fact sheet §1.1: CYP2C19 allele clinical function (PharmCAT CPIC data).
CYP2C19_FUNCTION: dict[str, str] = {
    **{a: "Normal" for a in ("*1", "*11", "*13", "*15", "*18", "*28", "*38")},
    "*17": "Increased",
    **{a: "Decreased" for a in ("*9", "*10", "*16", "*19", "*25", "*26")},
    **{a: "No" for a in ("*2", "*3", "*4", "*5", "*6", "*7", "*8", "*22", "*24", "*35", "*36", "*37")},
    **{a: "Uncertain" for a in ("*12", "*14", "*23", "*29", "*30", "*31", "*32", "*33", "*34", "*39")},
}

#: Fact sheet §2.1: CYP2C9 activity values it states explicitly (None = n/a).
CYP2C9_STATED_VALUES: dict[str, float | None] = {
    "*1": 1.0, "*9": 1.0, "*2": 0.5, "*5": 0.5, "*8": 0.5, "*11": 0.5, "*12": 0.5,
    "*3": 0.0, "*6": 0.0, "*13": 0.0, "*7": None, "*10": None,
}


def cpic_cyp2c19(first: str | None, second: str | None) -> str:
    """Fact sheet §1.2 (CPIC 2022 Table 1), as a rule over the two functions."""
    functions = sorted([first or "Unknown", second or "Unknown"])
    if any(f in ("Uncertain", "Unknown") for f in functions):
        return "Indeterminate"
    a, b = functions  # sorted: Decreased < Increased < No < Normal
    if a == b == "Increased":
        return "Ultrarapid Metabolizer"
    if (a, b) == ("Increased", "Normal"):
        return "Rapid Metabolizer"
    if a == b == "Normal":
        return "Normal Metabolizer"
    if "No" in functions and ("Normal" in functions or "Increased" in functions):
        return "Intermediate Metabolizer"
    if a == b == "No":
        return "Poor Metabolizer"
    if "Decreased" in functions and "No" in functions:
        return "Likely Poor Metabolizer"
    if "Decreased" in functions:
        return "Likely Intermediate Metabolizer"
    raise AssertionError(f"rule does not cover {functions}")


def cpic_cyp2c9(score: float | None) -> str:
    """Fact sheet §2.1: AS 2 -> Normal; 1.5 or 1 -> Intermediate; 0.5 or 0 -> Poor; n/a -> Indeterminate."""
    if score is None:
        return "Indeterminate"
    if score == 2.0:
        return "Normal Metabolizer"
    if score in (1.0, 1.5):
        return "Intermediate Metabolizer"
    if score in (0.0, 0.5):
        return "Poor Metabolizer"
    raise AssertionError(f"unexpected CYP2C9 activity score {score}")


@pytest.fixture(scope="module")
def tables() -> PgxTables:
    return load_pgx_tables(PGX_DIR)


# --- the shipped tables --------------------------------------------------------------


def test_every_gene_file_loads_with_hgnc_ids(tables: PgxTables) -> None:
    assert tables.genes == sorted(
        ["CYP2C19", "CYP2C9", "CYP2D6", "CYP4F2", "DPYD", "HLA-B", "NUDT15", "SLCO1B1", "TPMT", "VKORC1"]
    )
    assert tables.hgnc_to_gene["HGNC:2621"] == "CYP2C19"
    assert tables.hgnc_to_gene["HGNC:2623"] == "CYP2C9"
    assert tables.hgnc_to_gene["HGNC:23663"] == "VKORC1"
    assert tables.gene_symbol("hgnc:2621") == "CYP2C19"
    assert tables.gene_symbol("cyp2c9") == "CYP2C9"
    assert tables.gene_symbol("HLA_B") == "HLA-B"
    assert tables.gene_symbol("CYP3A5") is None


def test_every_gene_file_names_its_source(tables: PgxTables) -> None:
    for gene in tables.genes:
        table = tables.table(gene)
        assert table is not None
        for key in ("title", "url", "version", "accessed"):
            assert table.source.get(key), f"{gene} source lacks {key}"


def test_cyp2c19_allele_functions_match_cpic(tables: PgxTables) -> None:
    table = tables.table("CYP2C19")
    assert table is not None
    shipped = {name: info.function.split()[0] for name, info in table.alleles.items()}
    assert shipped == CYP2C19_FUNCTION


def test_cyp2c9_activity_values_match_cpic(tables: PgxTables) -> None:
    table = tables.table("CYP2C9")
    assert table is not None
    for allele, value in CYP2C9_STATED_VALUES.items():
        assert table.alleles[allele].activity == value, allele


def test_every_cyp2c19_diplotype_follows_the_cpic_rule(tables: PgxTables) -> None:
    alleles = list(CYP2C19_FUNCTION)
    checked = 0
    for a, b in itertools.combinations_with_replacement(alleles, 2):
        expected = cpic_cyp2c19(CYP2C19_FUNCTION[a], CYP2C19_FUNCTION[b])
        for text in (f"{a}/{b}", f"{b}/{a}"):
            assert tables.phenotype("CYP2C19", text).phenotype == expected, text
        checked += 1
    assert checked == len(alleles) * (len(alleles) + 1) // 2 == 666


def test_every_cyp2c9_diplotype_follows_the_activity_score_rule(tables: PgxTables) -> None:
    table = tables.table("CYP2C9")
    assert table is not None
    values = {name: info.activity for name, info in table.alleles.items()}
    for a, b in itertools.combinations_with_replacement(values, 2):
        va, vb = values[a], values[b]
        score = None if va is None or vb is None else va + vb
        call = tables.phenotype("CYP2C9", f"{b}/{a}")
        assert call.phenotype == cpic_cyp2c9(score), f"{a}/{b}"
        assert call.activity_score == score, f"{a}/{b}"


@pytest.mark.parametrize(
    ("gene", "diplotype", "phenotype", "score"),
    [
        ("CYP2C19", "*1/*2", "Intermediate Metabolizer", None),
        ("CYP2C19", "*2/*2", "Poor Metabolizer", None),
        ("CYP2C19", "*2/*9", "Likely Poor Metabolizer", None),
        ("CYP2C19", "*1/*17", "Rapid Metabolizer", None),
        ("CYP2C19", "*17/*17", "Ultrarapid Metabolizer", None),
        ("CYP2C19", "*1/*12", "Indeterminate", None),
        ("CYP2C19", "*1/*1", "Normal Metabolizer", None),
        ("CYP2C19", "*2/*17", "Intermediate Metabolizer", None),
        ("CYP2C19", "*10/*17", "Likely Intermediate Metabolizer", None),
        ("CYP2C9", "*1/*3", "Intermediate Metabolizer", 1.0),
        ("CYP2C9", "*2/*3", "Poor Metabolizer", 0.5),
        ("CYP2C9", "*1/*1", "Normal Metabolizer", 2.0),
        ("CYP2C9", "*1/*2", "Intermediate Metabolizer", 1.5),
        ("CYP2C9", "*3/*3", "Poor Metabolizer", 0.0),
        ("CYP2C9", "*1/*7", "Indeterminate", None),
        # CYP2D6 (PharmCAT CPIC diplotype list, 2019 harmonised thresholds)
        ("CYP2D6", "*1/*3", "Intermediate Metabolizer", 1.0),
        ("CYP2D6", "*1/*9", "Normal Metabolizer", 1.25),
        ("CYP2D6", "*1/*1x2", "Ultrarapid Metabolizer", 3.0),
        ("CYP2D6", "*1x2/*41", "Normal Metabolizer", 2.25),
        ("CYP2D6", "*1x2/*41x2", "Ultrarapid Metabolizer", 2.5),
        ("CYP2D6", "*4/*4", "Poor Metabolizer", 0.0),
        ("CYP2D6", "*4/*10", "Intermediate Metabolizer", 0.25),
        ("CYP2D6", "*1/*22", "Indeterminate", None),
        # DPYD (CPIC 2017: AS 2 NM, 1-1.5 IM, 0-0.5 PM)
        ("DPYD", "Reference/Reference", "Normal Metabolizer", 2.0),
        ("DPYD", "Reference/c.1905+1G>A (*2A)", "Intermediate Metabolizer", 1.0),
        ("DPYD", "*2A/*1", "Intermediate Metabolizer", 1.0),
        ("DPYD", "Reference/HapB3", "Intermediate Metabolizer", 1.5),
        ("DPYD", "HapB3/c.2846A>T", "Intermediate Metabolizer", 1.0),
        ("DPYD", "*2A/HapB3", "Poor Metabolizer", 0.5),
        ("DPYD", "c.1679T>G/*2A", "Poor Metabolizer", 0.0),
        # TPMT / NUDT15 / SLCO1B1 (read off PharmCAT's CPIC diplotype lists)
        ("TPMT", "*1/*3A", "Intermediate Metabolizer", None),
        ("TPMT", "*3A/*3C", "Poor Metabolizer", None),
        ("TPMT", "*1/*5", "Indeterminate", None),
        ("TPMT", "*10/*11", "Possible Intermediate Metabolizer", None),
        ("TPMT", "*11/*30", "Possible Intermediate Metabolizer", None),
        ("TPMT", "*11/*29", "Poor Metabolizer", None),
        ("NUDT15", "*1/*3", "Intermediate Metabolizer", None),
        ("NUDT15", "*3/*3", "Poor Metabolizer", None),
        ("NUDT15", "*2/*4", "Possible Intermediate Metabolizer", None),
        ("NUDT15", "*1/*4", "Indeterminate", None),
        ("SLCO1B1", "*1/*1", "Normal Function", None),
        ("SLCO1B1", "*1/*5", "Decreased Function", None),
        ("SLCO1B1", "*1/*14", "Normal Function", None),
        ("SLCO1B1", "*14/*14", "Increased Function", None),
        ("SLCO1B1", "*14/*15", "Decreased Function", None),
        ("SLCO1B1", "*15/*15", "Poor Function", None),
        ("SLCO1B1", "*10/*15", "Possible Decreased Function", None),
        ("SLCO1B1", "*15/*43", "Possible Decreased Function", None),
        ("SLCO1B1", "*1/*2", "Indeterminate", None),
        ("SLCO1B1", "*14/*16", "Indeterminate", None),
    ],
)
def test_spot_check_phenotypes(tables: PgxTables, gene: str, diplotype: str, phenotype: str, score: float | None) -> None:
    call = tables.phenotype(gene, diplotype)
    assert call.phenotype == phenotype
    assert call.activity_score == score


def test_cyp2c19_functions_are_reported(tables: PgxTables) -> None:
    assert tables.phenotype("CYP2C19", "*17/*2").functions == ("No function", "Increased function")


@pytest.mark.parametrize("gene", ["CYP2C19", "CYP2C9", "CYP2D6", "TPMT", "NUDT15", "SLCO1B1"])
@pytest.mark.parametrize("other", ["*1", "*2", "*3"])
def test_unknown_allele_is_indeterminate_never_normal(tables: PgxTables, gene: str, other: str) -> None:
    for text in (f"{other}/*999", f"*999/{other}", f"*999/*999"):
        call = tables.phenotype(gene, text)
        assert call.phenotype == "Indeterminate", text
        assert call.activity_score is None
        assert "Unassigned function" in call.functions


@pytest.mark.parametrize("text", ["", "*1", "*1/*2/*3", "normal", "/", "*1/", "foo/bar", "rs9923231 C/T"])
def test_unreadable_diplotype_is_indeterminate(tables: PgxTables, text: str) -> None:
    assert tables.normalise_diplotype("CYP2C19", text) is None
    assert tables.phenotype("CYP2C19", text).phenotype == "Indeterminate"


@pytest.mark.parametrize("value", [None, 5, 2.0, ["*1", "*2"], {"a": 1}])
def test_wrong_types_are_indeterminate(tables: PgxTables, value: object) -> None:
    assert tables.normalise_diplotype("CYP2C19", value) is None
    assert tables.phenotype("CYP2C19", value).phenotype == "Indeterminate"
    assert tables.snp_genotype("VKORC1", value) is None
    assert tables.allele_statuses("HLA-B", value) == []


def test_unknown_gene_is_indeterminate(tables: PgxTables) -> None:
    assert tables.phenotype("CYP3A5", "*1/*1").phenotype == "Indeterminate"
    assert tables.normalise_diplotype("CYP3A5", "*1/*1") is None
    assert tables.possible_phenotypes("CYP3A5") is None


# --- normalisation ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gene", "text", "canonical"),
    [
        ("CYP2C19", "*17/*2", "*2/*17"),
        ("CYP2C19", "*2/*17", "*2/*17"),
        ("CYP2C19", "*17/*1", "*1/*17"),
        ("CYP2C19", " *1 / *17 ", "*1/*17"),
        ("CYP2C19", "CYP2C19 *2/*2", "*2/*2"),
        ("CYP2C19", "CYP2C19*1/CYP2C19*17", "*1/*17"),
        ("CYP2C19", "*1/*17 (Rapid Metabolizer)", "*1/*17"),
        ("CYP2C19", "*10/*9", "*9/*10"),
        ("CYP2C19", "*42/*1", "*1/*42"),
        ("CYP2C9", "CYP2C9*3/*1", "*1/*3"),
        ("TPMT", "*3C/*3a", "*3A/*3C"),
        ("CYP2D6", "*2x2/*1", "*1/*2x2"),
        ("CYP2D6", "*4XN/*1", "*1/*4xN"),
        ("CYP2D6", "*1x>=3/*4", "*1x≥3/*4"),
        ("DPYD", "c.1905+1G>A/Reference", "Reference/c.1905+1G>A (*2A)"),
        ("DPYD", "hapb3/*2A", "c.1129-5923C>G, c.1236G>A (HapB3)/c.1905+1G>A (*2A)"),
        ("HLA-B", "HLA-B*58:01/HLA-B*15:02", "*15:02/*58:01"),
        ("HLA-B", "*40:01/*15:02:01", "*15:02/*40:01"),
    ],
)
def test_normalise_diplotype(tables: PgxTables, gene: str, text: str, canonical: str) -> None:
    assert tables.normalise_diplotype(gene, text) == canonical


def test_normalisation_is_order_independent_for_every_listed_allele(tables: PgxTables) -> None:
    for gene in ("CYP2C19", "CYP2C9", "CYP2D6", "DPYD", "TPMT", "NUDT15", "SLCO1B1"):
        table = tables.table(gene)
        assert table is not None
        names = list(table.alleles)
        for a, b in itertools.combinations(names[:40], 2):
            forward = tables.normalise_diplotype(gene, f"{a}/{b}")
            backward = tables.normalise_diplotype(gene, f"{b}/{a}")
            assert forward == backward is not None, (gene, a, b)
            assert tables.phenotype(gene, f"{a}/{b}") == tables.phenotype(gene, f"{b}/{a}")


# --- CYP2D6 copy number ----------------------------------------------------------------


def test_cyp2d6_duplication_of_unknown_count_is_decided_only_when_both_readings_agree(tables: PgxTables) -> None:
    call = tables.phenotype("CYP2D6", "*1/*2xN")  # *2x2 gives 3.0, *2x≥3 gives ≥4.0: both UM
    assert call.phenotype == "Ultrarapid Metabolizer"
    assert call.activity_score == 3.0 and call.activity_score_is_minimum
    # *10x≥3 is not listed, so *10xN cannot be resolved
    assert tables.phenotype("CYP2D6", "*4/*10xN").phenotype == "Indeterminate"


def test_cyp2d6_three_copies_use_the_listed_minimum(tables: PgxTables) -> None:
    call = tables.phenotype("CYP2D6", "*1x3/*4")
    assert call.phenotype == "Ultrarapid Metabolizer"
    assert call.activity_score_is_minimum
    # a minimum score that lands in a closed range cannot be placed
    assert tables.phenotype("CYP2D6", "*10x3/*4").phenotype == "Indeterminate"


# --- SNP genotypes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "genotype", "label"),
    [
        ("rs9923231 C/C", "C/C", "-1639 GG"),
        ("rs9923231 C/T", "C/T", "-1639 AG"),
        ("rs9923231 T/C", "C/T", "-1639 AG"),
        ("rs9923231 T/T", "T/T", "-1639 AA"),
        ("VKORC1 rs9923231 C/T", "C/T", "-1639 AG"),
        ("-1639G>A G/G", "C/C", "-1639 GG"),
        ("-1639G>A A/G", "C/T", "-1639 AG"),
        ("-1639G>A G/A", "C/T", "-1639 AG"),
        ("VKORC1 -1639G>A A/A", "T/T", "-1639 AA"),
        ("c.-1639G>A AG", "C/T", "-1639 AG"),
        ("VKORC1 -1639 GG", "C/C", "-1639 GG"),
        ("C/T", "C/T", "-1639 AG"),
        ("CT", "C/T", "-1639 AG"),
        ("GA", "C/T", "-1639 AG"),
        ("AA", "T/T", "-1639 AA"),
        ("TT", "T/T", "-1639 AA"),
    ],
)
def test_vkorc1_both_notations(tables: PgxTables, text: str, genotype: str, label: str) -> None:
    call = tables.snp_genotype("VKORC1", text)
    assert call is not None, text
    assert (call.genotype, call.label, call.rsid) == (genotype, label, "rs9923231")
    assert call.variant_alleles == {"C/C": 0, "C/T": 1, "T/T": 2}[genotype]
    assert tables.phenotype("VKORC1", text).phenotype == label


def test_vkorc1_reports_gene_strand_notation(tables: PgxTables) -> None:
    call = tables.snp_genotype("VKORC1", "rs9923231 C/T")
    assert call is not None and call.notation == "-1639G>A A/G"


@pytest.mark.parametrize("text", ["rs9923231 G/A", "-1639G>A C/T", "C/G", "rs9923231", "", "rs12345 C/T x", "A"])
def test_vkorc1_refuses_mixed_or_impossible_genotypes(tables: PgxTables, text: str) -> None:
    assert tables.snp_genotype("VKORC1", text) is None


@pytest.mark.parametrize(
    ("text", "genotype", "count"),
    [("rs2108622 C/C", "C/C", 0), ("CYP4F2 rs2108622 C/T", "C/T", 1), ("rs2108622 TT", "T/T", 2), ("T/C", "C/T", 1)],
)
def test_cyp4f2_rs2108622(tables: PgxTables, text: str, genotype: str, count: int) -> None:
    call = tables.snp_genotype("CYP4F2", text)
    assert call is not None
    assert (call.genotype, call.variant_alleles) == (genotype, count)
    assert ("non-carrier" in call.label) == (count == 0)


def test_cyp4f2_gene_strand_letters_are_refused(tables: PgxTables) -> None:
    assert tables.snp_genotype("CYP4F2", "G/A") is None


# --- HLA ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("HLA-B*15:02 positive", [("HLA-B*15:02", "positive")]),
        ("HLA-B*15:02 negative", [("HLA-B*15:02", "negative")]),
        ("HLA-B*58:01 present", [("HLA-B*58:01", "positive")]),
        ("HLA-B*58:01 not detected", [("HLA-B*58:01", "negative")]),
        ("HLA-B*58:01 Not Present", [("HLA-B*58:01", "negative")]),
        ("HLA-B*1502 Positive", [("HLA-B*15:02", "positive")]),
        ("B*15:02:01 detected", [("HLA-B*15:02", "positive")]),
        ("HLA-B*15:02", []),
        ("HLA-A*31:01 positive", []),
        (
            "HLA-B*15:02/*40:01",
            [("HLA-B*15:02", "positive"), ("HLA-B*57:01", "negative"), ("HLA-B*58:01", "negative"), ("HLA-B*40:01", "positive")],
        ),
    ],
)
def test_hla_allele_statuses(tables: PgxTables, text: str, expected: list[tuple[str, str]]) -> None:
    assert tables.allele_statuses("HLA-B", text) == expected


def test_possible_phenotypes_for_rule_linting(tables: PgxTables) -> None:
    assert tables.possible_phenotypes("CYP2C19") == frozenset({
        "Ultrarapid Metabolizer", "Rapid Metabolizer", "Normal Metabolizer", "Intermediate Metabolizer",
        "Likely Intermediate Metabolizer", "Poor Metabolizer", "Likely Poor Metabolizer", "Indeterminate",
    })
    slco1b1 = tables.possible_phenotypes("SLCO1B1")
    assert slco1b1 is not None and slco1b1 >= {"Possible Decreased Function", "Poor Function"}
    assert tables.possible_phenotypes("VKORC1") == frozenset({"-1639 GG", "-1639 AG", "-1639 AA"})


# --- strict loading ------------------------------------------------------------------------


def _folder(tmp_path: Path, *names: str) -> Path:
    folder = tmp_path / "knowledge" / "pgx"
    folder.mkdir(parents=True)
    for name in names:
        shutil.copy(PGX_DIR / name, folder / name)
    return folder


def _problems(folder: Path) -> list[str]:
    with pytest.raises(PackError) as caught:
        load_pgx_tables(folder)
    assert all(p.check == "knowledge" for p in caught.value.problems)
    return [p.format() for p in caught.value.problems]


def test_loads_a_copy(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "cyp2c19.yaml", "vkorc1.yaml")
    assert load_pgx_tables(folder).genes == ["CYP2C19", "VKORC1"]


def test_gene_defined_twice_is_refused(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "cyp2c19.yaml")
    text = (folder / "cyp2c19.yaml").read_text().replace("hgnc: HGNC:2621", "hgnc: HGNC:999999")
    (folder / "zz-copy.yaml").write_text(text)
    problems = _problems(folder)
    assert len(problems) == 1
    assert problems[0].startswith("knowledge/pgx/zz-copy.yaml:")
    assert "already defined in knowledge/pgx/cyp2c19.yaml" in problems[0]


def test_malformed_yaml_names_file_and_line(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    (folder / "bad.yaml").write_text("gene: CYP2C19\nalleles: [unclosed\n")
    [problem] = _problems(folder)
    assert problem.startswith("knowledge/pgx/bad.yaml:")
    assert "invalid YAML" in problem


def test_unknown_function_points_at_the_allele_line(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "cyp2c19.yaml")
    path = folder / "cyp2c19.yaml"
    lines = path.read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith('  "*17":'))
    lines[index] = '  "*17": {function: Super function}'
    path.write_text("\n".join(lines) + "\n")
    [problem] = _problems(folder)
    assert problem.startswith(f"knowledge/pgx/cyp2c19.yaml:{index + 1}:")
    assert "*17" in problem and "function must be one of" in problem


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace('  "*2": {function: No function}\n', '  "*2": {function: No function}\n  "*2": {function: No function}\n'), "duplicate key"),
        (lambda t: t.replace("method: function-pair", "method: guesswork"), "method must be one of"),
        (lambda t: t.replace("hgnc: HGNC:2621", "hgnc: 2621"), "must look like HGNC:2621"),
        (lambda t: t.replace("gene: CYP2C19\n", "gene: CYP2C19\ncolour: blue\n"), "unknown key 'colour'"),
        (lambda t: t.replace('  url: "https://github.com', '  url: "ftp://github.com'), "source.url must be an http(s) URL"),
        (lambda t: t.replace('  accessed: "2026-11-22"\n', ""), "source.accessed is required"),
        (
            lambda t: t.replace("phenotype: Rapid Metabolizer}", "phenotype: Rapid Metabolizer}\n  - {functions: [Increased function, Normal function], phenotype: Normal Metabolizer}"),
            "listed twice",
        ),
        (lambda t: t.replace('"*38": {function: Normal function}', '"*38": {function: Normal function, aliases: ["*1"]}'), "names both"),
    ],
)
def test_malformed_cyp2c19_file_is_refused(tmp_path: Path, edit: object, message: str) -> None:
    folder = _folder(tmp_path, "cyp2c19.yaml")
    path = folder / "cyp2c19.yaml"
    original = path.read_text()
    changed = edit(original)  # type: ignore[operator]
    assert changed != original, "the edit did not apply"
    path.write_text(changed)
    problems = _problems(folder)
    assert any(message in p for p in problems), problems
    assert all(p.startswith("knowledge/pgx/cyp2c19.yaml:") for p in problems)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace('"*7": {function: Uncertain function, activity: null}', '"*7": {function: Uncertain function, activity: 0.5}'), "exactly when the function is certain"),
        (lambda t: t.replace("- {min: 1.0, max: 1.5,", "- {min: 1.0, max: 2.0,"), "overlaps"),
        (lambda t: t.replace('"*2": {function: Decreased function, activity: 0.5}', '"*2": {function: Decreased function}'), "activity is required"),
        (lambda t: t.replace("- {min: 2.0, max: 2.0,", "- {min: 2.0, max: 1.0,"), "is above max"),
    ],
)
def test_malformed_cyp2c9_file_is_refused(tmp_path: Path, edit: object, message: str) -> None:
    folder = _folder(tmp_path, "cyp2c9.yaml")
    path = folder / "cyp2c9.yaml"
    original = path.read_text()
    changed = edit(original)  # type: ignore[operator]
    assert changed != original, "the edit did not apply"
    path.write_text(changed)
    assert any(message in p for p in _problems(folder))


def test_snp_file_must_list_all_three_genotypes(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "vkorc1.yaml")
    path = folder / "vkorc1.yaml"
    path.write_text(path.read_text().replace('  "T/T": {label: "-1639 AA", notation: "A/A", variant_alleles: 2}\n', ""))
    assert any("genotype T/T is missing" in p for p in _problems(folder))


def test_empty_or_missing_folder_is_refused(tmp_path: Path) -> None:
    assert any("no gene files" in p for p in _problems(_folder(tmp_path)))
    with pytest.raises(PackError):
        load_pgx_tables(tmp_path / "nowhere")
