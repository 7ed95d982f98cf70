"""Genomic results from FHIR R4 Observations -> `GenomicResult` facts.

Reads plain Observation dicts (never FHIR models) defensively: any field may
be missing or of the wrong type, and an Observation that cannot be read is
skipped, never raised on. Encodings accepted (HL7 Genomics Reporting IG
v1.0.x, STU2 2.0.0 and STU3 3.0.0; see `shared/reference` and design.md §5):

* Genotype: code LOINC 84413-4 "Genotype display name" (or 84414-2
  "Haplotype name"); the gene from component 48018-6 "Gene studied [ID]"
  (HGNC coding such as HGNC:2621, or its display symbol) or from the value
  text prefix ("CYP2C9*1/*3", "VKORC1 rs9923231 C/T", "HLA-B*15:02 positive").
  Star-allele diplotypes become kind="genotype" with the phenotype computed by
  `PgxTables`; SNP genotypes (VKORC1, CYP4F2) keep "rs... C/T" as diplotype
  and the table's label as phenotype; HLA text becomes kind="allele".
* Reported phenotype: LOINC 53040-2 (IG v1), or tbd-codes-cs
  `therapeutic-implication` / `predicted-therapeutic-implication` (STU3/STU2),
  as the Observation code or a component; also "metabolic activity
  interpretation"-style codes (FHIR R4 example LOINC 79716-7) whose display
  names the gene. Values: LOINC answers (LA9657-3 Poor metabolizer ...) or
  text; a CPIC string in the text ("Likely Poor Metabolizer") wins over the
  coded base term, because LOINC has no "Likely" answers. The gene may also
  come from `derivedFrom` -> a genotype Observation in the same batch.
* HLA allele presence: LOINC 57979-7 (HLA-B*15:02) or any code whose display
  names an HLA-B allele; value positive/negative (or present/absent ...).

Only status final, amended or corrected counts. `when` is effectiveDateTime
(or effectiveInstant / effectivePeriod.start), else issued; times without a
zone are taken as UTC, partial dates as their first day.

Which result a rule sees (`latest_by_gene`, `summarise`):

1. Allele results (HLA) are keyed by allele ("HLA-B*15:02"); the most recent wins.
2. For a gene, the most recent genotype is the patient's genotype (a newer,
   broader test supersedes an older one). If the phenotype our CPIC tables
   compute from it is interpretable (not Indeterminate), that result wins over
   any phenotype a lab reported.
3. A reported phenotype is used only when no interpretable genotype exists
   (most recent report wins); failing that, the most recent result of any kind
   (e.g. an Indeterminate genotype), so a card can say so. An older
   interpretable genotype never overrides a newer Indeterminate one: that
   would turn "unknown" back into "Normal".
4. When the chosen genotype-derived phenotype and a reported phenotype for
   the same gene disagree, the pair is returned in `summarise().disagreements`
   so a card can mention it. "Likely"/"Possible" prefixes are ignored in the
   comparison (LOINC answers cannot carry them; CPIC gives them the same
   recommendations).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

from .model import GenomicResult
from .dates import parse_fhir_datetime
from .pgx import INDETERMINATE, PgxTables

log = logging.getLogger(__name__)

LOINC = "http://loinc.org"
HGNC_SYSTEM = "http://www.genenames.org"
TBD_CODES = "http://hl7.org/fhir/uv/genomics-reporting/CodeSystem/tbd-codes-cs"

ACCEPTED_STATUSES = frozenset({"final", "amended", "corrected"})
GENOTYPE_CODES = frozenset({(LOINC, "84413-4"), (LOINC, "84414-2")})
GENE_STUDIED = (LOINC, "48018-6")
PHENOTYPE_CODES = frozenset(
    {(LOINC, "53040-2"), (TBD_CODES, "therapeutic-implication"), (TBD_CODES, "predicted-therapeutic-implication")}
)
#: LOINC codes that name one HLA allele (presence tests). Others are recognised by display text.
HLA_ALLELE_CODES: dict[tuple[str, str], tuple[str, str]] = {(LOINC, "57979-7"): ("HLA-B", "HLA-B*15:02")}
#: LOINC answer list for drug-metabolism phenotypes (IG GeneticTherapeuticImplicationsVS, LL3856-3)
#: -> the CPIC term. There are no LOINC answers for "Likely ..." or "Indeterminate".
LOINC_PHENOTYPE_ANSWERS: dict[str, str] = {
    "LA10315-2": "Ultrarapid Metabolizer",
    "LA25390-8": "Rapid Metabolizer",
    "LA25391-6": "Normal Metabolizer",
    "LA10317-8": "Intermediate Metabolizer",
    "LA9657-3": "Poor Metabolizer",
}
_PHENOTYPE_DISPLAY_HINTS = ("metabolic activity", "metabolizer", "metaboliser", "phenotype")
#: Code values that make an Observation genomic whatever its system; and words that may (HLA or phenotype names).
_GENOMIC_CODE_VALUES = frozenset(c for _, c in (*GENOTYPE_CODES, *PHENOTYPE_CODES, *HLA_ALLELE_CODES))
_GENOMIC_NAME = re.compile("hla|" + "|".join(re.escape(h) for h in _PHENOTYPE_DISPLAY_HINTS), re.IGNORECASE)


def _may_be_genomic(obs: dict[str, Any], code: Any) -> bool:
    """A cheap superset test run before any parsing (the readers below decide for real)."""
    cc = code if isinstance(code, dict) else {}
    for coding in _list(cc.get("coding")):
        if isinstance(coding, dict):
            if coding.get("code") in _GENOMIC_CODE_VALUES:
                return True
            display = coding.get("display")
            if isinstance(display, str) and _GENOMIC_NAME.search(display):
                return True
    text = cc.get("text")
    if isinstance(text, str) and _GENOMIC_NAME.search(text):
        return True
    for comp in _list(obs.get("component")):
        comp_code = comp.get("code") if isinstance(comp, dict) else None
        for coding in _list(comp_code.get("coding") if isinstance(comp_code, dict) else None):
            if isinstance(coding, dict) and coding.get("code") in _GENOMIC_CODE_VALUES:
                return True
    return False
_QUALIFIERS = ("likely ", "possible ")


# --------------------------------------------------------------------------
# Small defensive readers
# --------------------------------------------------------------------------


def _dict(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _text(value: Any) -> str | None:
    if isinstance(value, str):
        stripped = value.strip()
        return stripped or None
    return None


def _system(value: Any) -> str | None:
    text = _text(value)
    return text.rstrip("/") if text else None


def _codings(concept: Any) -> list[tuple[str | None, str | None, str | None]]:
    """(system, code, display) of each well-formed coding of a CodeableConcept."""
    cc = _dict(concept)
    if cc is None:
        return []
    out = []
    for coding in _list(cc.get("coding")):
        c = _dict(coding)
        if c is not None:
            out.append((_system(c.get("system")), _text(c.get("code")), _text(c.get("display"))))
    return out


def _has_code(concept: Any, codes: Iterable[tuple[str, str]]) -> bool:
    wanted = set(codes)
    for system, code, _ in _codings(concept):
        if code is None:
            continue
        # A LOINC code sent without a system is still recognisable by its form.
        if (system, code) in wanted or (system is None and any(code == c for _, c in wanted)):
            return True
    return False


def _concept_texts(concept: Any) -> list[str]:
    cc = _dict(concept)
    if cc is None:
        return []
    texts = [t for t in [_text(cc.get("text"))] if t]
    texts += [display for _, _, display in _codings(cc) if display]
    return texts


def _value_texts(holder: dict[str, Any]) -> list[str]:
    """Candidate value texts, most specific first: CC.text, valueString, coding displays, coding codes."""
    out: list[str] = []
    cc = _dict(holder.get("valueCodeableConcept"))
    if cc is not None and _text(cc.get("text")):
        out.append(_text(cc.get("text")) or "")
    if _text(holder.get("valueString")):
        out.append(_text(holder.get("valueString")) or "")
    for _, code, display in _codings(cc):
        if display:
            out.append(display)
    for _, code, _display in _codings(cc):
        if code and code not in out:
            out.append(code)
    return out


def _components(obs: dict[str, Any]) -> list[dict[str, Any]]:
    return [c for c in _list(obs.get("component")) if isinstance(c, dict)]


def _when(obs: dict[str, Any]) -> datetime | None:
    period = _dict(obs.get("effectivePeriod")) or {}
    for candidate in (obs.get("effectiveDateTime"), obs.get("effectiveInstant"), period.get("start"), obs.get("issued")):
        parsed = parse_fhir_datetime(candidate)
        if parsed is not None:
            return parsed
    return None


# --------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------


_CONFLICT = "<conflict>"


def _gene_from_components(obs: dict[str, Any], tables: PgxTables) -> str | None:
    """Gene named by component 48018-6; _CONFLICT if two different genes are named."""
    found: set[str] = set()
    for comp in _components(obs):
        if not _has_code(comp.get("code"), [GENE_STUDIED]):
            continue
        value = comp.get("valueCodeableConcept")
        for system, code, display in _codings(value):
            gene = None
            if code and (system in (HGNC_SYSTEM, None) or code.upper().startswith("HGNC:")):
                gene = tables.gene_symbol(code)
            gene = gene or tables.gene_symbol(display)
            if gene:
                found.add(gene)
        for text in _concept_texts(value)[:1]:
            gene = tables.gene_symbol(text)
            if gene:
                found.add(gene)
        gene = tables.gene_symbol(comp.get("valueString"))
        if gene:
            found.add(gene)
    if len(found) > 1:
        return _CONFLICT
    return next(iter(found), None)


def _reference_id(reference: Any) -> str | None:
    ref = _dict(reference)
    target = _text(ref.get("reference")) if ref else None
    if not target:
        return None
    return target.rstrip("/").split("/")[-1]


class _Reader:
    def __init__(self, tables: PgxTables) -> None:
        self.tables = tables
        self.gene_by_id: dict[str, str] = {}

    # -- entry ---------------------------------------------------------------
    def remember_gene(self, obs: dict[str, Any]) -> None:
        """First pass: genes of genotype Observations, for phenotypes that only point to them."""
        sid = _text(obs.get("id"))
        if sid is None or not _has_code(obs.get("code"), GENOTYPE_CODES):
            return
        gene = _gene_from_components(obs, self.tables)
        if gene is None:
            for text in _value_texts(obs):
                gene, _ = self.tables.split_gene_prefix(text)
                if gene:
                    break
        if gene and gene != _CONFLICT:
            self.gene_by_id[sid] = gene

    def read(self, obs: dict[str, Any]) -> list[GenomicResult]:
        if obs.get("resourceType", "Observation") != "Observation":
            return []
        status = _text(obs.get("status"))
        if status is None or status.lower() not in ACCEPTED_STATUSES:
            return []
        code = obs.get("code")
        if not _may_be_genomic(obs, code):
            return []  # most Observations are ordinary labs: one cheap look at their codes and names
        if _has_code(code, HLA_ALLELE_CODES) or self._hla_in_code(code):
            reader = self._allele_observation
        elif _has_code(code, GENOTYPE_CODES):
            reader = self._genotype
        elif (_has_code(code, PHENOTYPE_CODES) or any(_has_code(c.get("code"), PHENOTYPE_CODES) for c in _components(obs))
              or self._phenotype_display_gene(code)):
            reader = self._phenotype
        else:
            return []  # most Observations are ordinary labs: classified before any parsing
        base = {"when": _when(obs), "source_id": _text(obs.get("id"))}
        return reader(obs, base)

    # -- genotype ------------------------------------------------------------
    def _genotype(self, obs: dict[str, Any], base: dict[str, Any]) -> list[GenomicResult]:
        component_gene = _gene_from_components(obs, self.tables)
        if component_gene == _CONFLICT:
            return []
        for text in _value_texts(obs):
            prefix_gene, rest = self.tables.split_gene_prefix(text)
            if component_gene and prefix_gene and component_gene != prefix_gene:
                continue  # the value names another gene than the component: not trustworthy
            gene = component_gene or prefix_gene
            if gene is None:
                continue
            results = self._interpret_genotype(gene, text, rest, base)
            if results:
                return results
        return []

    def _interpret_genotype(self, gene: str, text: str, rest: str, base: dict[str, Any]) -> list[GenomicResult]:
        method = self.tables.method(gene)
        if method == "allele-presence":
            return [
                GenomicResult(gene=gene, kind="allele", allele=allele, status=status, **base)
                for allele, status in self.tables.allele_statuses(gene, text)
            ]
        if method == "snp-genotype":
            snp = self.tables.snp_genotype(gene, rest)
            if snp is None:
                return []
            return [
                GenomicResult(
                    gene=gene,
                    kind="genotype",
                    diplotype=f"{snp.rsid} {snp.genotype}",
                    phenotype=snp.label,
                    variant=snp.rsid,
                    **base,
                )
            ]
        diplotype = self.tables.normalise_diplotype(gene, rest)
        if diplotype is None:
            return []
        call = self.tables.phenotype(gene, diplotype)
        return [
            GenomicResult(
                gene=gene,
                kind="genotype",
                diplotype=diplotype,
                phenotype=call.phenotype,
                activity_score=call.activity_score,
                **base,
            )
        ]

    # -- reported phenotype ---------------------------------------------------
    def _phenotype_display_gene(self, code: Any) -> str | None:
        for text in _concept_texts(code):
            lowered = text.lower()
            if any(hint in lowered for hint in _PHENOTYPE_DISPLAY_HINTS):
                gene = self.tables.find_gene_in_text(text)
                if gene:
                    return gene
        return None

    def _phenotype(self, obs: dict[str, Any], base: dict[str, Any]) -> list[GenomicResult]:
        holders: list[dict[str, Any]] = []
        code = obs.get("code")
        if _has_code(code, PHENOTYPE_CODES) or self._phenotype_display_gene(code):
            holders.append(obs)
        holders += [c for c in _components(obs) if _has_code(c.get("code"), PHENOTYPE_CODES)]
        texts = [t for h in holders for t in _value_texts(h)]
        codes = [c for h in holders for _, c, _ in _codings(h.get("valueCodeableConcept")) if c]
        gene = self._phenotype_gene(obs, code, texts)
        if gene is None:
            return []
        phenotype = self._match_phenotype(gene, texts, codes)
        if phenotype is None:
            return []
        return [GenomicResult(gene=gene, kind="phenotype", phenotype=phenotype, **base)]

    def _phenotype_gene(self, obs: dict[str, Any], code: Any, texts: list[str]) -> str | None:
        gene = _gene_from_components(obs, self.tables)
        if gene == _CONFLICT:
            return None
        if gene:
            return gene
        gene = self._phenotype_display_gene(code)
        if gene:
            return gene
        for text in texts:
            prefix_gene, _ = self.tables.split_gene_prefix(text)
            if prefix_gene:
                return prefix_gene
        for reference in _list(obs.get("derivedFrom")):
            target = _reference_id(reference)
            if target and target in self.gene_by_id:
                return self.gene_by_id[target]
        return None

    def _match_phenotype(self, gene: str, texts: list[str], codes: list[str]) -> str | None:
        known = self.tables.possible_phenotypes(gene) or frozenset()
        for text in texts:
            found = match_phenotype_text(text, known)
            if found:
                return found
        for code in codes:
            mapped = LOINC_PHENOTYPE_ANSWERS.get(code)
            if mapped and mapped in known:
                return mapped
        return None

    # -- HLA allele presence ------------------------------------------------------
    def _hla_in_code(self, code: Any) -> bool:
        return any(self.tables.hla_allele(text) for text in _concept_texts(code))

    def _allele_observation(self, obs: dict[str, Any], base: dict[str, Any]) -> list[GenomicResult]:
        code = obs.get("code")
        gene_allele: tuple[str, str] | None = None
        for system, value, _ in _codings(code):
            if value and (system or LOINC, value) in HLA_ALLELE_CODES:
                gene_allele = HLA_ALLELE_CODES[(system or LOINC, value)]
        if gene_allele is None:
            for text in _concept_texts(code):
                allele = self.tables.hla_allele(text)
                if allele:
                    gene_allele = ("HLA-B", allele)
                    break
        if gene_allele is None or self.tables.table(gene_allele[0]) is None:
            return []
        gene, allele = gene_allele
        for text in _value_texts(obs):
            named = self.tables.allele_statuses(gene, text)
            if named:
                return [GenomicResult(gene=gene, kind="allele", allele=a, status=s, **base) for a, s in named]
            status = self.tables.presence_status(gene, text)
            if status:
                return [GenomicResult(gene=gene, kind="allele", allele=allele, status=status, **base)]
        return []


def match_phenotype_text(text: str, known: Iterable[str]) -> str | None:
    """The longest known phenotype named in `text` ('CYP2C19 likely poor metaboliser' -> 'Likely Poor Metabolizer')."""
    lowered = " ".join(text.lower().replace("metaboliser", "metabolizer").split())
    best: str | None = None
    for phenotype in known:
        pattern = rf"(?<![a-z]){re.escape(phenotype.lower())}(?![a-z])"
        if re.search(pattern, lowered) and (best is None or len(phenotype) > len(best)):
            best = phenotype
    return best


def read_genomic_results(observations: Any, tables: PgxTables) -> list[GenomicResult]:
    """Every readable genomic finding in `observations`, in input order. Never raises."""
    items = [o for o in observations if isinstance(o, dict)] if isinstance(observations, (list, tuple)) else []
    reader = _Reader(tables)
    for obs in items:
        try:
            reader.remember_gene(obs)
        except Exception:  # noqa: BLE001 - client data must never crash the request
            log.debug("skipped an unreadable genotype Observation while indexing", exc_info=True)
    results: list[GenomicResult] = []
    for index, obs in enumerate(items):
        try:
            results.extend(reader.read(obs))
        except Exception:  # noqa: BLE001 - client data must never crash the request
            log.debug("skipped unreadable Observation #%d", index, exc_info=True)
    return results


# --------------------------------------------------------------------------
# Choosing one result per gene
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Disagreement:
    """A genotype-derived phenotype and a lab-reported phenotype that differ."""

    gene: str
    computed: GenomicResult
    reported: GenomicResult


@dataclass(slots=True)
class GenomicSummary:
    """The result per gene (or per allele) that rules see, and any disagreements."""

    by_gene: dict[str, GenomicResult] = field(default_factory=dict)
    disagreements: list[Disagreement] = field(default_factory=list)


_EPOCH = datetime(1, 1, 1, tzinfo=timezone.utc)


def _latest(results: list[tuple[int, GenomicResult]]) -> GenomicResult | None:
    """Most recent by `when`; results without a time count as oldest; later input wins ties."""
    if not results:
        return None
    return max(results, key=lambda pair: (pair[1].when or _EPOCH, pair[0]))[1]


def _interpretable(result: GenomicResult) -> bool:
    return result.kind == "genotype" and bool(result.phenotype) and result.phenotype != INDETERMINATE


def _base_term(phenotype: str) -> str:
    lowered = phenotype.strip().lower()
    for qualifier in _QUALIFIERS:
        if lowered.startswith(qualifier):
            return lowered[len(qualifier) :]
    return lowered


def summarise(results: Iterable[GenomicResult]) -> GenomicSummary:
    """Apply the module's choice rule; see the module docstring."""
    indexed = [(i, r) for i, r in enumerate(results) if isinstance(r, GenomicResult)]
    summary = GenomicSummary()
    groups: dict[str, list[tuple[int, GenomicResult]]] = {}
    for i, r in indexed:
        key = r.allele if r.kind == "allele" and r.allele else r.gene
        groups.setdefault(key, []).append((i, r))
    for key, group in groups.items():
        genotype = _latest([(i, r) for i, r in group if r.kind == "genotype"])
        reported = [(i, r) for i, r in group if r.kind == "phenotype" and r.phenotype]
        if genotype is not None and _interpretable(genotype):
            chosen: GenomicResult | None = genotype
        else:
            chosen = _latest(reported) or genotype or _latest(group)
        if chosen is None:
            continue
        summary.by_gene[key] = chosen
        if _interpretable(chosen) and chosen.phenotype:
            latest_per_value: dict[str, GenomicResult] = {}
            for _, r in sorted(reported, key=lambda pair: (pair[1].when or _EPOCH, pair[0])):
                latest_per_value[_base_term(r.phenotype or "")] = r
            for base, r in latest_per_value.items():
                if base != _base_term(chosen.phenotype):
                    summary.disagreements.append(Disagreement(key, chosen, r))
    return summary


def latest_by_gene(results: Iterable[GenomicResult]) -> dict[str, GenomicResult]:
    """The one result per gene (HLA: per allele) that rules see; see the module docstring."""
    return summarise(results).by_gene


def disagreements(results: Iterable[GenomicResult]) -> list[Disagreement]:
    """Genotype-derived vs reported phenotype conflicts, for a card to mention."""
    return summarise(results).disagreements
