"""Pharmacogenomic knowledge tables: genotype text -> diplotype -> CPIC phenotype.

The facts live in `knowledge/pgx/<gene>.yaml` (one file per gene, each with its
source; see `knowledge/pgx/README.md`); this module only loads and interprets
them, in the manner of PharmCAT's `PhenotypeMap`/`GenePhenotype`
(PharmGKB/PharmCAT, `src/main/java/org/pharmgkb/pharmcat/phenotype/`):

* the loader is strict: a malformed file, an unknown key, a duplicate allele or
  a gene defined twice raises `PackError` naming file, line and reason;
* interpretation is honest: an allele the table does not know, or whose CPIC
  function is uncertain/unknown, gives "Indeterminate", never "Normal".

Four methods, named in each file's `method`:

* `function-pair` (CYP2C19, TPMT, NUDT15, SLCO1B1): the unordered pair of
  allele functions is looked up in the file's `phenotypes` table; pairs not
  listed are `unlisted_pairs` (Indeterminate).
* `activity-score` (CYP2C9, CYP2D6, DPYD): activity values are summed and the
  score looked up in the file's ranges; an allele without a value makes the
  diplotype Indeterminate. CYP2D6 `x≥3` alleles have a minimum value; such a
  score decides the phenotype only when it falls in an open-ended range.
* `snp-genotype` (VKORC1 rs9923231, CYP4F2 rs2108622): a biallelic genotype,
  accepted in genomic (dbSNP) or gene-strand notation, gives the file's label.
* `allele-presence` (HLA-B): a named allele is positive or negative.

This module does no IO except reading the knowledge folder in `load_pgx_tables`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from ..errors import PackError, Problem
from ..yamlsrc import load_yaml, locate

INDETERMINATE = "Indeterminate"
#: Function of an allele the table does not list (PharmCAT's wording).
UNASSIGNED = "Unassigned function"
METHODS = ("function-pair", "activity-score", "snp-genotype", "allele-presence")
#: CPIC allele clinical function terms (CPIC term standardisation, as used by PharmCAT).
FUNCTIONS = frozenset(
    {
        "Normal function",
        "Decreased function",
        "No function",
        "Increased function",
        "Uncertain function",
        "Unknown function",
    }
)
UNCERTAIN_FUNCTIONS = frozenset({"Uncertain function", "Unknown function"})
PRESENCE_STATUSES = ("positive", "negative")

_CHECK = "knowledge"
# Star allele: number, optional letter suffix (TPMT *3A), optional copy number (CYP2D6 *1x2, *2xN, *1x≥3).
_STAR = re.compile(r"\*(\d+)([A-Za-z]*?)(?:[xX](\d+|[Nn]|≥\s*\d+|>=\s*\d+))?")
_STAR_AT_END = re.compile(r"(\*\d+[A-Za-z]*?(?:[xX](?:\d+|[Nn]|≥\s*\d+|>=\s*\d+))?)\s*$")
_STAR_AT_START = re.compile(r"^(\*\d+[A-Za-z]*?(?:[xX](?:\d+|[Nn]|≥\s*\d+|>=\s*\d+))?)(?=$|[\s(,;])")
_HGVS = re.compile(r"^c\.[^\s/]+$")
_HLA_TOKEN = re.compile(
    r"(?:HLA[-_ ]?)?(?P<locus>[A-Z]{1,4}[0-9]?)?\s*\*\s*(?P<f1>\d{2,3})(?::(?P<f2>\d{2,4})(?::\d{2,4})*|(?P<f2b>\d{2}))(?![\d:])",
    re.IGNORECASE,
)
#: A biallelic genotype written "A/G", "A|G" or "AG", standing alone (not inside "G>A").
_GENOTYPE_LETTERS = re.compile(r"(?<![A-Za-z0-9>.])([ACGT])(?:\s*[/|]\s*)?([ACGT])(?![A-Za-z0-9>])")


# --------------------------------------------------------------------------
# Public value objects
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PhenotypeCall:
    """A phenotype computed from a diplotype by the CPIC tables.

    `functions` are the two alleles' CPIC functions (for snp-genotype genes, the
    two genomic alleles). `activity_score_is_minimum` marks a score built from a
    `x≥3` duplication, which is a lower bound.
    """

    phenotype: str
    activity_score: float | None
    functions: tuple[str, str]
    activity_score_is_minimum: bool = False


@dataclass(frozen=True, slots=True)
class SnpCall:
    """A biallelic SNP genotype in canonical genomic form (reference allele first)."""

    gene: str
    rsid: str
    genotype: str
    label: str
    variant_alleles: int
    notation: str | None = None  # e.g. "-1639G>A A/G" for VKORC1


@dataclass(frozen=True, slots=True)
class AlleleInfo:
    name: str
    function: str
    activity: float | None = None
    activity_is_minimum: bool = False
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ScoreRange:
    low: float
    high: float | None  # None: open-ended
    phenotype: str

    def contains(self, score: float) -> bool:
        return self.low <= score and (self.high is None or score <= self.high)


@dataclass(frozen=True, slots=True)
class SnpSpec:
    rsid: str
    reference: str
    alternate: str
    genotypes: dict[str, tuple[str, int, str | None]]  # "C/T" -> (label, variant count, notation genotype)
    notation_name: str | None = None
    notation_aliases: tuple[str, ...] = ()
    notation_alleles: dict[str, str] = field(default_factory=dict)  # genomic -> notation


@dataclass(slots=True)
class GeneTable:
    """Everything one knowledge file says about one gene."""

    gene: str
    hgnc: str
    method: str
    file: str
    source: dict[str, Any]
    alleles: dict[str, AlleleInfo] = field(default_factory=dict)
    lookup: dict[str, str] = field(default_factory=dict)  # normalised spelling -> canonical name
    order: dict[str, int] = field(default_factory=dict)
    pair_rules: dict[tuple[str, str], str] = field(default_factory=dict)
    unlisted: str = INDETERMINATE
    ranges: tuple[ScoreRange, ...] = ()
    copy_number: bool = False
    snp: SnpSpec | None = None
    presence_alleles: tuple[str, ...] = ()
    status_terms: tuple[tuple[str, str], ...] = ()  # (term, status), longest term first

    def possible_phenotypes(self) -> frozenset[str]:
        if self.method == "function-pair":
            return frozenset({*self.pair_rules.values(), self.unlisted, INDETERMINATE})
        if self.method == "activity-score":
            return frozenset({*(r.phenotype for r in self.ranges), self.unlisted, INDETERMINATE})
        if self.method == "snp-genotype" and self.snp is not None:
            return frozenset(label for label, _, _ in self.snp.genotypes.values())
        return frozenset()


# --------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------


def _key(text: str) -> str:
    """Spelling-insensitive lookup key: case and runs of spaces do not matter."""
    return " ".join(text.split()).lower()


def _indeterminate(functions: tuple[str, str] = (UNASSIGNED, UNASSIGNED)) -> PhenotypeCall:
    return PhenotypeCall(INDETERMINATE, None, functions)


class PgxTables:
    """All gene tables, read-only after loading. Interprets; holds no clinical facts itself."""

    def __init__(self, tables: Iterable[GeneTable]) -> None:
        self._tables: dict[str, GeneTable] = {t.gene: t for t in tables}
        self._by_key: dict[str, str] = {}
        for t in self._tables.values():
            self._by_key[t.gene.lower()] = t.gene
            self._by_key[t.gene.replace("-", "_").lower()] = t.gene
            self._by_key[t.hgnc.lower()] = t.gene
        self.hgnc_to_gene: dict[str, str] = {t.hgnc: t.gene for t in self._tables.values()}
        # Longest symbol first so a prefix match never picks a shorter symbol.
        self._symbols = sorted(self._tables, key=len, reverse=True)

    # -- gene lookups ------------------------------------------------------
    @property
    def genes(self) -> list[str]:
        return sorted(self._tables)

    def table(self, gene: str) -> GeneTable | None:
        canonical = self.gene_symbol(gene)
        return self._tables.get(canonical) if canonical else None

    def method(self, gene: str) -> str | None:
        t = self.table(gene)
        return t.method if t else None

    def gene_symbol(self, text: object) -> str | None:
        """'cyp2c19', 'HGNC:2621', 'HLA_B' -> canonical symbol; None if not a gene we have."""
        if not isinstance(text, str):
            return None
        return self._by_key.get(text.strip().lower())

    def possible_phenotypes(self, gene: str) -> frozenset[str] | None:
        """Phenotype strings a gene's table can produce (None: no table), for rule linting."""
        t = self.table(gene)
        return t.possible_phenotypes() if t else None

    def split_gene_prefix(self, text: str) -> tuple[str | None, str]:
        """'CYP2C9*1/*3' -> ('CYP2C9', '*1/*3'); text without a known gene prefix is returned whole."""
        stripped = text.strip()
        upper = stripped.upper()
        for symbol in self._symbols:
            for spelling in {symbol, symbol.replace("-", "_"), symbol.replace("-", "")}:
                if upper.startswith(spelling.upper()):
                    rest = stripped[len(spelling) :]
                    if rest == "" or rest[0] in " \t*:;,=(":
                        return symbol, rest.lstrip(" \t:;,=")
        return None, stripped

    def find_gene_in_text(self, text: str) -> str | None:
        """A gene symbol appearing as a word in free text (e.g. a LOINC display)."""
        for symbol in self._symbols:
            if re.search(rf"(?<![A-Za-z0-9]){re.escape(symbol)}(?![A-Za-z0-9])", text, re.IGNORECASE):
                return symbol
        return None

    # -- diplotypes --------------------------------------------------------
    def normalise_diplotype(self, gene: str, text: object) -> str | None:
        """Canonical diplotype: '*17/*2' -> '*2/*17'; None if the text is not a diplotype.

        Alleles are ordered by star number then suffix (then copy number); named
        variants (DPYD) by their order in the knowledge file, 'Reference' first.
        Unknown but well-formed alleles are kept (they give Indeterminate later).
        """
        t = self.table(gene)
        if t is None or not isinstance(text, str):
            return None
        _, body = self.split_gene_prefix(text)
        parts = body.split("/")
        if len(parts) != 2:
            return None
        first = self._allele_name(t, parts[0], at_end=True)
        second = self._allele_name(t, parts[1], at_end=False)
        if first is None or second is None:
            return None
        a, b = sorted((first, second), key=lambda name: _sort_key(t, name))
        return f"{a}/{b}"

    def _allele_name(self, t: GeneTable, raw: str, *, at_end: bool) -> str | None:
        _, side = self.split_gene_prefix(raw)
        side = side.strip()
        if not side:
            return None
        known = t.lookup.get(_key(side))
        if known:
            return known
        if t.method == "allele-presence":
            return _hla_name(side)
        match = (_STAR_AT_END.search(side) if at_end else _STAR_AT_START.match(side))
        if match:
            star = _canonical_star(match.group(1))
            return t.lookup.get(_key(star), star)
        if _HGVS.match(side):
            return side
        if side.lower() == "reference":
            return "Reference"
        return None

    def phenotype(self, gene: str, diplotype: object) -> PhenotypeCall:
        """CPIC phenotype for a diplotype; anything unknown or uncertain gives Indeterminate."""
        t = self.table(gene)
        if t is None or not isinstance(diplotype, str):
            return _indeterminate()
        if t.method == "snp-genotype":
            call = self.snp_genotype(t.gene, diplotype)
            if call is None:
                return _indeterminate()
            a, b = call.genotype.split("/")
            return PhenotypeCall(call.label, None, (a, b))
        if t.method == "allele-presence":
            return _indeterminate()  # use allele_statuses(): HLA results are per allele
        canonical = self.normalise_diplotype(t.gene, diplotype)
        if canonical is None:
            return _indeterminate()
        first, second = canonical.split("/")
        options_a = _resolve_allele(t, first)
        options_b = _resolve_allele(t, second)
        if not options_a or not options_b:
            functions = (
                options_a[0].function if options_a else UNASSIGNED,
                options_b[0].function if options_b else UNASSIGNED,
            )
            return _indeterminate(functions)
        calls = [_call(t, a, b) for a in options_a for b in options_b]
        if len(calls) == 1:
            return calls[0]
        # An 'xN' duplication of unknown copy number: decided only if every reading agrees.
        phenotypes = {c.phenotype for c in calls}
        if len(phenotypes) != 1 or INDETERMINATE in phenotypes:
            return _indeterminate(calls[0].functions)
        scores = [c.activity_score for c in calls if c.activity_score is not None]
        return PhenotypeCall(calls[0].phenotype, min(scores) if scores else None, calls[0].functions, True)

    # -- SNP genotypes -------------------------------------------------------
    def snp_genotype(self, gene: str, text: object) -> SnpCall | None:
        """'rs9923231 C/T', '-1639G>A A/G', 'C/T', 'GA' -> canonical genomic genotype + label.

        Letters are read as genomic unless the text names the gene-strand notation,
        or the letters only make sense in it (VKORC1: C/T genomic, G/A gene strand).
        """
        t = self.table(gene)
        if t is None or t.snp is None or not isinstance(text, str):
            return None
        spec = t.snp
        _, body = self.split_gene_prefix(text)
        lowered = body.lower()
        forced: str | None = None
        if spec.rsid.lower() in lowered:
            forced = "genomic"
            body = re.sub(re.escape(spec.rsid), " ", body, flags=re.IGNORECASE)
        else:
            for alias in sorted(spec.notation_aliases, key=len, reverse=True):
                if alias.lower() in body.lower():
                    forced = "notation"
                    body = re.sub(re.escape(alias), " ", body, flags=re.IGNORECASE)
                    break
        if re.search(r"rs\d+|\d\s*[ACGT]\s*>\s*[ACGT]", body, re.IGNORECASE):
            return None  # names another variant (e.g. VKORC1 1173C>T): not this table's SNP
        found = _GENOTYPE_LETTERS.search(body.upper())
        if not found:
            return None
        x, y = found.group(1), found.group(2)
        genomic_alphabet = {spec.reference, spec.alternate}
        back = {v: k for k, v in spec.notation_alleles.items()}
        if forced == "genomic" or (forced is None and {x, y} <= genomic_alphabet):
            if not {x, y} <= genomic_alphabet:
                return None
        elif back and (forced == "notation" or {x, y} <= set(back)):
            if not {x, y} <= set(back):
                return None
            x, y = back[x], back[y]
        else:
            return None
        a, b = sorted((x, y), key=lambda allele: allele != spec.reference)
        genotype = f"{a}/{b}"
        entry = spec.genotypes.get(genotype)
        if entry is None:
            return None
        label, count, notation = entry
        shown = f"{spec.notation_name} {notation}" if spec.notation_name and notation else None
        return SnpCall(t.gene, spec.rsid, genotype, label, count, shown)

    # -- allele presence (HLA) ---------------------------------------------
    def hla_allele(self, text: object, gene: str = "HLA-B") -> str | None:
        """'HLA-B*15:02:01', 'B*1502', '*15:02' -> 'HLA-B*15:02' (two fields)."""
        t = self.table(gene)
        if t is None or not isinstance(text, str):
            return None
        match = _HLA_TOKEN.search(text)
        if not match:
            return None
        locus = (match.group("locus") or "").upper()
        if locus and f"HLA-{locus}" != t.gene:
            return None
        name = _hla_from_match(match)
        return f"{t.gene}{name}"

    def presence_status(self, gene: str, text: object) -> str | None:
        """'Positive', 'present', 'not detected' ... -> 'positive' / 'negative' (None if neither)."""
        t = self.table(gene)
        if t is None or not isinstance(text, str):
            return None
        lowered = " ".join(text.lower().split())
        for term, status in t.status_terms:
            if re.search(rf"(?<![a-z]){re.escape(term)}(?![a-z])", lowered):
                return status
        return None

    def allele_statuses(self, gene: str, text: object) -> list[tuple[str, str]]:
        """Allele results in a text: 'HLA-B*15:02 positive' -> [('HLA-B*15:02', 'positive')].

        A two-allele typing ('HLA-B*15:02/*40:01') answers every allele the table
        tracks: present ones positive, the others negative. Unreadable text -> [].
        """
        t = self.table(gene)
        if t is None or t.method != "allele-presence" or not isinstance(text, str):
            return []
        tokens = [f"{t.gene}{_hla_from_match(m)}" for m in _HLA_TOKEN.finditer(text)
                  if not m.group("locus") or f"HLA-{m.group('locus').upper()}" == t.gene]
        status = self.presence_status(t.gene, text)
        if len(tokens) == 1 and status:
            return [(tokens[0], status)]
        if len(tokens) == 2 and status is None and "/" in text:
            typed = set(tokens)
            out = [(f"{t.gene}{name}", "positive" if f"{t.gene}{name}" in typed else "negative")
                   for name in t.presence_alleles]
            out += [(name, "positive") for name in sorted(typed) if name[len(t.gene):] not in t.presence_alleles]
            return out
        return []


# --------------------------------------------------------------------------
# Interpretation helpers
# --------------------------------------------------------------------------


def _canonical_star(token: str) -> str:
    m = _STAR.fullmatch(token.strip())
    if not m:
        return token.strip()
    number, suffix, copies = int(m.group(1)), m.group(2).upper(), m.group(3)
    name = f"*{number}{suffix}"
    if copies:
        copies = copies.replace(" ", "")
        if copies in ("N", "n"):
            copies = "N"
        elif copies.startswith(">="):
            copies = "≥" + copies[2:]
        name += f"x{copies}"
    return name


def _hla_from_match(m: re.Match[str]) -> str:
    first = int(m.group("f1"))
    second = m.group("f2") or m.group("f2b") or "0"
    return f"*{first:02d}:{int(second):02d}"


def _hla_name(text: str) -> str | None:
    m = _HLA_TOKEN.search(text)
    return _hla_from_match(m) if m else None


def _sort_key(t: GeneTable, name: str) -> tuple[int, int, str, int, str]:
    if name.lower() == "reference":
        return (0, 0, "", 0, name)
    star = _STAR.fullmatch(name)
    if star:
        copies_text = star.group(3) or "1"
        copies = 99 if copies_text in ("N", "n") else int(re.sub(r"\D", "", copies_text) or 1)
        return (1, int(star.group(1)), star.group(2), copies, name)
    hla = re.fullmatch(r"\*(\d+):(\d+)", name)
    if hla:
        return (1, int(hla.group(1)), f"{int(hla.group(2)):05d}", 0, name)
    if name in t.order:
        return (2, t.order[name], "", 0, name)
    return (3, 0, "", 0, name)


def _resolve_allele(t: GeneTable, name: str) -> list[AlleleInfo]:
    """The table entries an allele name stands for ([] if unknown).

    Only CYP2D6-style tables (`copy_number: true`) read copy numbers: '*1x3'
    means the listed '*1x≥3'; '*1xN' (unknown N ≥ 2) means '*1x2' or '*1x≥3'.
    Nothing is derived that the table does not list.
    """
    info = t.alleles.get(name)
    if info is not None:
        return [info]
    if not t.copy_number:
        return []
    m = _STAR.fullmatch(name)
    if not m or not m.group(3):
        return []
    base = f"*{m.group(1)}{m.group(2)}"
    copies = m.group(3)
    if copies == "N":
        # Both readings must be listed, or the unlisted one could change the phenotype.
        readings = (f"{base}x2", f"{base}x≥3")
        return [t.alleles[n] for n in readings] if all(n in t.alleles for n in readings) else []
    digits = re.sub(r"\D", "", copies)
    if digits and int(digits) >= 3 and f"{base}x≥3" in t.alleles:
        return [t.alleles[f"{base}x≥3"]]
    return []


def _call(t: GeneTable, a: AlleleInfo, b: AlleleInfo) -> PhenotypeCall:
    functions = (a.function, b.function)
    if t.method == "function-pair":
        return PhenotypeCall(t.pair_rules.get(_pair(a.function, b.function), t.unlisted), None, functions)
    if a.activity is None or b.activity is None:
        return PhenotypeCall(INDETERMINATE, None, functions)
    score = round(a.activity + b.activity, 4)
    minimum = a.activity_is_minimum or b.activity_is_minimum
    for r in t.ranges:
        if r.contains(score):
            if minimum and r.high is not None:
                break  # the true score may lie above this range
            return PhenotypeCall(r.phenotype, score, functions, minimum)
    return PhenotypeCall(t.unlisted, score, functions, minimum)


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


# --------------------------------------------------------------------------
# Loading (strict)
# --------------------------------------------------------------------------

_TOP_KEYS = {
    "function-pair": {"gene", "hgnc", "source", "method", "alleles", "phenotypes", "unlisted_pairs"},
    "activity-score": {"gene", "hgnc", "source", "method", "alleles", "phenotypes", "unlisted_scores", "copy_number"},
    "snp-genotype": {"gene", "hgnc", "source", "method", "variant", "genotypes"},
    "allele-presence": {"gene", "hgnc", "source", "method", "alleles", "status_terms"},
}
_REQUIRED = {
    "function-pair": ("alleles", "phenotypes"),
    "activity-score": ("alleles", "phenotypes"),
    "snp-genotype": ("variant", "genotypes"),
    "allele-presence": ("alleles", "status_terms"),
}


class _File:
    """Collects problems for one knowledge file, each with its line and column."""

    def __init__(self, name: str, doc: Any, problems: list[Problem]) -> None:
        self.name = name
        self.doc = doc
        self.problems = problems
        self.ok = True

    def error(self, path: list[str | int], reason: str) -> None:
        line, col = locate(self.doc, path)
        self.problems.append(Problem(self.name, line, col, reason, check=_CHECK))
        self.ok = False

    def text(self, value: Any, path: list[str | int], what: str) -> str | None:
        if isinstance(value, str) and value.strip():
            return value.strip()
        self.error(path, f"{what} must be a non-empty string")
        return None

    def mapping(self, value: Any, path: list[str | int], what: str) -> dict[str, Any] | None:
        if isinstance(value, dict) and value:
            return value
        self.error(path, f"{what} must be a non-empty mapping")
        return None

    def number(self, value: Any, path: list[str | int], what: str) -> float | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
            self.error(path, f"{what} must be a number")
            return None
        return float(value)

    def only(self, mapping: dict[str, Any], allowed: set[str], path: list[str | int]) -> None:
        for key in mapping:
            if key not in allowed:
                self.error([*path, key], f"unknown key '{key}' (allowed: {', '.join(sorted(allowed))})")


def load_pgx_tables(folder: Path) -> PgxTables:
    """Load every `*.yaml` in `folder`; raise PackError listing every problem found."""
    folder = Path(folder)
    problems: list[Problem] = []
    if not folder.is_dir():
        raise PackError([Problem(str(folder), 1, 1, "pgx knowledge folder not found", check=_CHECK)])
    tables: list[GeneTable] = []
    seen_gene: dict[str, str] = {}
    seen_hgnc: dict[str, str] = {}
    paths = sorted(folder.glob("*.yaml"))
    if not paths:
        problems.append(Problem(str(folder), 1, 1, "no gene files (*.yaml) in the pgx folder", check=_CHECK))
    for path in paths:
        name = _display_name(path, folder)
        try:
            doc = load_yaml(path, name)
        except PackError as exc:
            problems.extend(Problem(p.file, p.line, p.column, p.reason, p.severity, _CHECK) for p in exc.problems)
            continue
        f = _File(name, doc, problems)
        table = _parse_file(f)
        if table is None or not f.ok:
            continue
        if table.gene in seen_gene:
            f.error(["gene"], f"gene {table.gene} is already defined in {seen_gene[table.gene]}")
            continue
        if table.hgnc in seen_hgnc:
            f.error(["hgnc"], f"{table.hgnc} is already used by {seen_hgnc[table.hgnc]}")
            continue
        seen_gene[table.gene] = name
        seen_hgnc[table.hgnc] = table.gene
        tables.append(table)
    if problems:
        raise PackError(problems)
    return PgxTables(tables)


def _display_name(path: Path, folder: Path) -> str:
    try:
        return str(path.relative_to(folder.parent.parent))
    except ValueError:
        return str(path)


def _parse_file(f: _File) -> GeneTable | None:
    doc = f.doc
    if not isinstance(doc, dict):
        f.error([], "a pgx knowledge file must be a mapping with gene, hgnc, source, method")
        return None
    gene = f.text(doc.get("gene"), ["gene"], "gene")
    if gene is not None and not re.fullmatch(r"[A-Z][A-Z0-9]*(-[A-Z0-9]+)?", gene):
        f.error(["gene"], f"gene '{gene}' is not an HGNC symbol (upper case letters, digits, one hyphen)")
    raw_hgnc = doc.get("hgnc")
    hgnc = raw_hgnc.strip() if isinstance(raw_hgnc, str) else None
    if hgnc is None or not re.fullmatch(r"HGNC:\d+", hgnc):
        f.error(["hgnc"], f"hgnc {raw_hgnc!r} must look like HGNC:2621 (the gene's HGNC id)")
        hgnc = None
    _check_source(f, doc.get("source"))
    method = doc.get("method")
    if method not in METHODS:
        f.error(["method"], f"method must be one of {', '.join(METHODS)}")
        return None
    f.only(doc, _TOP_KEYS[method], [])
    for key in _REQUIRED[method]:
        if key not in doc:
            f.error([], f"'{key}' is required for method {method}")
    if not f.ok or gene is None or hgnc is None:
        return None
    table = GeneTable(gene=gene, hgnc=hgnc, method=method, file=f.name, source=dict(doc["source"]))
    if method in ("function-pair", "activity-score"):
        _parse_alleles(f, table, doc["alleles"], with_activity=method == "activity-score")
        if method == "function-pair":
            _parse_pairs(f, table, doc["phenotypes"], doc.get("unlisted_pairs", INDETERMINATE))
        else:
            _parse_ranges(f, table, doc["phenotypes"], doc.get("unlisted_scores", INDETERMINATE))
            copy_number = doc.get("copy_number", False)
            if not isinstance(copy_number, bool):
                f.error(["copy_number"], "copy_number must be true or false")
            table.copy_number = copy_number is True
    elif method == "snp-genotype":
        _parse_snp(f, table, doc["variant"], doc["genotypes"])
    else:
        _parse_presence(f, table, doc["alleles"], doc["status_terms"])
    return table


def _check_source(f: _File, source: Any) -> None:
    src = f.mapping(source, ["source"], "source")
    if src is None:
        return
    f.only(src, {"title", "url", "version", "accessed", "notes", "also"}, ["source"])
    for key in ("title", "url", "version", "accessed"):
        if key not in src:
            f.error(["source"], f"source.{key} is required")
    if "title" in src:
        f.text(src["title"], ["source", "title"], "source.title")
    if "version" in src:
        f.text(src["version"], ["source", "version"], "source.version")
    url = src.get("url")
    if "url" in src and not (isinstance(url, str) and url.startswith(("https://", "http://"))):
        f.error(["source", "url"], "source.url must be an http(s) URL")
    accessed = src.get("accessed")
    if "accessed" in src and not (isinstance(accessed, str) and re.fullmatch(r"\d{4}-\d{2}-\d{2}", accessed)):
        f.error(["source", "accessed"], "source.accessed must be a date YYYY-MM-DD")
    also = src.get("also", [])
    if not isinstance(also, list):
        f.error(["source", "also"], "source.also must be a list of {title, url}")
        return
    for i, item in enumerate(also):
        if not isinstance(item, dict) or not isinstance(item.get("title"), str) or not str(item.get("url", "")).startswith("http"):
            f.error(["source", "also", i], "each source.also entry needs a title and an http(s) url")


def _register_name(f: _File, table: GeneTable, spelling: str, canonical: str, path: list[str | int]) -> None:
    key = _key(spelling)
    other = table.lookup.get(key)
    if other is not None and other != canonical:
        f.error(path, f"'{spelling}' names both {other} and {canonical}")
        return
    table.lookup[key] = canonical


def _parse_alleles(f: _File, table: GeneTable, raw: Any, *, with_activity: bool) -> None:
    alleles = f.mapping(raw, ["alleles"], "alleles")
    if alleles is None:
        return
    allowed = {"function", "aliases", "activity", "activity_is_minimum"} if with_activity else {"function", "aliases"}
    for index, (name, spec) in enumerate(alleles.items()):
        path: list[str | int] = ["alleles", name]
        if not isinstance(name, str) or not name.strip():
            f.error(path, "allele names must be non-empty strings")
            continue
        if not isinstance(spec, dict):
            f.error(path, f"allele {name} must be a mapping with a function")
            continue
        f.only(spec, allowed, path)
        function = spec.get("function")
        if function not in FUNCTIONS:
            f.error([*path, "function"], f"allele {name}: function must be one of {', '.join(sorted(FUNCTIONS))}")
            continue
        activity: float | None = None
        minimum = False
        if with_activity:
            if "activity" not in spec:
                f.error(path, f"allele {name}: activity is required (null if CPIC gives none)")
                continue
            if spec["activity"] is not None:
                activity = f.number(spec["activity"], [*path, "activity"], f"allele {name}: activity")
                if activity is not None and activity < 0:
                    f.error([*path, "activity"], f"allele {name}: activity must not be negative")
            if (activity is None) != (function in UNCERTAIN_FUNCTIONS):
                f.error([*path, "activity"], f"allele {name}: an activity value is given exactly when the function is certain")
            minimum = spec.get("activity_is_minimum", False)
            if not isinstance(minimum, bool):
                f.error([*path, "activity_is_minimum"], "activity_is_minimum must be true or false")
                minimum = False
        aliases_raw = spec.get("aliases", [])
        if not isinstance(aliases_raw, list) or not all(isinstance(a, str) and a.strip() for a in aliases_raw):
            f.error([*path, "aliases"], f"allele {name}: aliases must be a list of strings")
            aliases_raw = []
        info = AlleleInfo(name, function, activity, minimum, tuple(a.strip() for a in aliases_raw))
        table.alleles[name] = info
        table.order[name] = index
        _register_name(f, table, name, name, path)
        for alias in info.aliases:
            _register_name(f, table, alias, name, [*path, "aliases"])


def _parse_pairs(f: _File, table: GeneTable, raw: Any, unlisted: Any) -> None:
    if not isinstance(raw, list) or not raw:
        f.error(["phenotypes"], "phenotypes must be a non-empty list of {functions: [a, b], phenotype}")
        return
    for i, rule in enumerate(raw):
        path: list[str | int] = ["phenotypes", i]
        if not isinstance(rule, dict):
            f.error(path, "each phenotype rule must be a mapping")
            continue
        f.only(rule, {"functions", "phenotype"}, path)
        functions = rule.get("functions")
        phenotype = f.text(rule.get("phenotype"), [*path, "phenotype"], "phenotype")
        if not isinstance(functions, list) or len(functions) != 2 or not all(x in FUNCTIONS for x in functions):
            f.error([*path, "functions"], f"functions must be two of: {', '.join(sorted(FUNCTIONS))}")
            continue
        key = _pair(functions[0], functions[1])
        if key in table.pair_rules:
            f.error(path, f"the pair {key[0]} + {key[1]} is listed twice")
            continue
        if phenotype is not None:
            table.pair_rules[key] = phenotype
    table.unlisted = f.text(unlisted, ["unlisted_pairs"], "unlisted_pairs") or INDETERMINATE


def _parse_ranges(f: _File, table: GeneTable, raw: Any, unlisted: Any) -> None:
    if not isinstance(raw, list) or not raw:
        f.error(["phenotypes"], "phenotypes must be a non-empty list of {min, max, phenotype}")
        return
    ranges: list[tuple[ScoreRange, int]] = []
    for i, rule in enumerate(raw):
        path: list[str | int] = ["phenotypes", i]
        if not isinstance(rule, dict):
            f.error(path, "each score range must be a mapping")
            continue
        f.only(rule, {"min", "max", "phenotype"}, path)
        low = f.number(rule.get("min"), [*path, "min"], "min")
        high = None if rule.get("max") is None else f.number(rule.get("max"), [*path, "max"], "max")
        phenotype = f.text(rule.get("phenotype"), [*path, "phenotype"], "phenotype")
        if "max" not in rule:
            f.error(path, "max is required (null for an open-ended range)")
            continue
        if low is None or phenotype is None:
            continue
        if high is not None and high < low:
            f.error(path, f"min {low} is above max {high}")
            continue
        ranges.append((ScoreRange(low, high, phenotype), i))
    ordered = sorted(ranges, key=lambda pair: pair[0].low)
    for (a, _), (b, index) in zip(ordered, ordered[1:]):
        if a.high is None or b.low <= a.high:
            f.error(["phenotypes", index], f"score range starting at {b.low} overlaps the one starting at {a.low}")
    table.ranges = tuple(r for r, _ in ordered)
    table.unlisted = f.text(unlisted, ["unlisted_scores"], "unlisted_scores") or INDETERMINATE


def _parse_snp(f: _File, table: GeneTable, raw_variant: Any, raw_genotypes: Any) -> None:
    variant = f.mapping(raw_variant, ["variant"], "variant")
    genotypes = f.mapping(raw_genotypes, ["genotypes"], "genotypes")
    if variant is None or genotypes is None:
        return
    f.only(variant, {"rsid", "reference", "alternate", "notation"}, ["variant"])
    rsid = f.text(variant.get("rsid"), ["variant", "rsid"], "variant.rsid")
    if rsid is not None and not re.fullmatch(r"rs\d+", rsid):
        f.error(["variant", "rsid"], "variant.rsid must look like rs9923231")
    bases = []
    for key in ("reference", "alternate"):
        value = variant.get(key)
        if value not in ("A", "C", "G", "T"):
            f.error(["variant", key], f"variant.{key} must be one of A, C, G, T")
        bases.append(value)
    ref, alt = bases
    notation_name = None
    aliases: tuple[str, ...] = ()
    allele_map: dict[str, str] = {}
    if "notation" in variant:
        notation = f.mapping(variant["notation"], ["variant", "notation"], "variant.notation")
        if notation is not None:
            f.only(notation, {"name", "aliases", "alleles"}, ["variant", "notation"])
            notation_name = f.text(notation.get("name"), ["variant", "notation", "name"], "notation.name")
            raw_aliases = notation.get("aliases", [])
            if not isinstance(raw_aliases, list) or not all(isinstance(a, str) and a.strip() for a in raw_aliases):
                f.error(["variant", "notation", "aliases"], "notation.aliases must be a list of strings")
                raw_aliases = []
            aliases = tuple(a.strip() for a in raw_aliases)
            mapping = notation.get("alleles")
            if not isinstance(mapping, dict) or set(mapping) != {ref, alt} or not all(
                v in ("A", "C", "G", "T") for v in mapping.values()
            ) or len(set(mapping.values())) != 2:
                f.error(["variant", "notation", "alleles"], "notation.alleles must map the reference and alternate bases to two distinct bases")
            else:
                allele_map = {str(k): str(v) for k, v in mapping.items()}
                if set(allele_map.values()) & {ref, alt}:
                    f.error(["variant", "notation", "alleles"], "notation bases must differ from genomic bases, or input would be ambiguous")
    expected = {f"{ref}/{ref}": 0, f"{ref}/{alt}": 1, f"{alt}/{alt}": 2}
    parsed: dict[str, tuple[str, int, str | None]] = {}
    for genotype, spec in genotypes.items():
        path: list[str | int] = ["genotypes", genotype]
        if genotype not in expected:
            f.error(path, f"genotype '{genotype}' must be one of {', '.join(expected)} (reference allele first)")
            continue
        if not isinstance(spec, dict):
            f.error(path, "each genotype needs label and variant_alleles")
            continue
        f.only(spec, {"label", "variant_alleles", "notation"}, path)
        label = f.text(spec.get("label"), [*path, "label"], "label")
        count = spec.get("variant_alleles")
        if count != expected[genotype] or isinstance(count, bool):
            f.error([*path, "variant_alleles"], f"variant_alleles for {genotype} must be {expected[genotype]}")
        shown = spec.get("notation")
        if allele_map and shown is not None:
            a, b = genotype.split("/")
            if not isinstance(shown, str) or sorted(shown.split("/")) != sorted((allele_map[a], allele_map[b])):
                f.error([*path, "notation"], f"notation for {genotype} must be the gene-strand bases {allele_map[a]}/{allele_map[b]}")
        if label is not None:
            parsed[genotype] = (label, expected[genotype], shown if isinstance(shown, str) else None)
    for genotype in expected:
        if genotype not in parsed and genotype not in genotypes:
            f.error(["genotypes"], f"genotype {genotype} is missing")
    if rsid is not None and ref and alt:
        table.snp = SnpSpec(rsid, str(ref), str(alt), parsed, notation_name, aliases, allele_map)


def _parse_presence(f: _File, table: GeneTable, raw_alleles: Any, raw_terms: Any) -> None:
    alleles = f.mapping(raw_alleles, ["alleles"], "alleles")
    terms = f.mapping(raw_terms, ["status_terms"], "status_terms")
    names: list[str] = []
    for name, spec in (alleles or {}).items():
        path: list[str | int] = ["alleles", name]
        if not re.fullmatch(r"\*\d{2,3}:\d{2,4}", str(name)):
            f.error(path, f"allele '{name}' must be a two-field HLA name such as *15:02")
            continue
        if spec is not None and not isinstance(spec, dict):
            f.error(path, f"allele {name} must be a mapping (e.g. {{note: ...}})")
            continue
        f.only(spec or {}, {"note"}, path)
        names.append(str(name))
        table.lookup[_key(str(name))] = str(name)
    table.presence_alleles = tuple(names)
    pairs: list[tuple[str, str]] = []
    if terms is not None:
        f.only(terms, set(PRESENCE_STATUSES), ["status_terms"])
        seen: dict[str, str] = {}
        for status in PRESENCE_STATUSES:
            words = terms.get(status)
            if not isinstance(words, list) or not words or not all(isinstance(w, str) and w.strip() for w in words):
                f.error(["status_terms", status], f"status_terms.{status} must be a non-empty list of words")
                continue
            for word in words:
                key = _key(word)
                if key in seen and seen[key] != status:
                    f.error(["status_terms", status], f"'{word}' is listed as both {seen[key]} and {status}")
                seen[key] = status
                pairs.append((key, status))
    table.status_terms = tuple(sorted(set(pairs), key=lambda p: (-len(p[0]), p[0])))
