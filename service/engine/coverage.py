"""Coverage, companion-diagnostic and test-ordering conditions.

Three condition kinds, registered with `register_condition` so that
`service/engine/conditions.py` stays the single entry point:

* `formulary:` the ordered drug in the patient's plan (status, payment
  restriction met or not and what is missing, prior authorisation, quantity
  limit, covered alternatives). Binds `formulary.*`.
* `companion_diagnostic:` the biomarker result a targeted therapy requires:
  missing, negative or positive. Binds `cdx.*`.
* `test_order:` a test that should not be ordered: a germline result already
  on file, a somatic test repeated inside its window, a large panel or genome
  without a qualifying diagnosis. Binds `test.*`.

Pure: facts and knowledge in, a verdict and template bindings out. The
knowledge tables are `service/formulary.py`; how results are recognised is
documented in `rules/coverage-and-cdx.md`. Localised values are bound as
`{"en": ..., "zh-CN": ...}` and picked by the card renderer.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

from ..facts.builder import medication_codes
from ..facts.model import GenomicResult, LabResult, PatientFacts
from ..formulary import (
    Biomarker,
    CompanionDiagnostics,
    Criterion,
    FormularyItem,
    LocalText,
    Plan,
    Restriction,
    Therapy,
    allowed_quantity,
    item_for,
    normalise_variant,
)
from ..knowledge import Knowledge, Product
from .conditions import CompileError, Condition, EvalContext, _compare, register_condition

log = logging.getLogger(__name__)

LOCALES = ("en", "zh-CN")
VARIANT_OBS = "loinc:69548-6"
GENE_STUDIED = "loinc:48018-6"
GENOMIC_SOURCE = "loinc:48002-0"
POSITIVE_CODES = frozenset({"loinc:LA9633-4", "loinc:LA6576-8"})  # Present, Positive
NEGATIVE_CODES = frozenset({"loinc:LA9634-2", "loinc:LA6577-6"})  # Absent, Negative
DEFAULT_QUANTITY = 30.0
_EPOCH = datetime(1900, 1, 1, tzinfo=timezone.utc)

_NEGATIVE_WORDS = ("not detected", "no mutation", "no variant", "no mutations", "not amplified", "non-amplified",
                   "negative", "absent", "wild type", "wild-type", "wildtype", "阴性", "未检出", "未检测到", "野生型",
                   "无突变", "未扩增")
_POSITIVE_WORDS = ("positive", "detected", "present", "mutated", "amplified", "阳性", "检出", "突变型", "扩增")


def L(en: str, zh: str) -> LocalText:  # noqa: N802 - short constructor for bilingual text
    return {"en": en, "zh-CN": zh}


def _pick(text: LocalText | None, locale: str) -> str:
    if not text:
        return ""
    return text.get(locale) or text.get("en") or next(iter(text.values()))


def _join(items: Iterable[LocalText], sep: LocalText | None = None) -> LocalText:
    items = list(items)
    sep = sep or {"en": "; ", "zh-CN": "；"}
    return {loc: sep[loc].join(_pick(i, loc) for i in items) for loc in LOCALES}


def _fmt(template: LocalText, **values: Any) -> LocalText:
    """Fill `{name}` in both locales; localised values are picked per locale."""
    out: LocalText = {}
    for loc in LOCALES:
        filled = {k: (_pick(v, loc) if isinstance(v, dict) else v) for k, v in values.items()}
        out[loc] = template[loc].format(**filled)
    return out


def _date(when: datetime | None) -> str:
    return when.date().isoformat() if when else "?"


class _Guarded(Condition):
    """Client data of any shape must not turn into a 500: an unexpected error means "does not hold"."""

    def check(self, ctx: EvalContext) -> bool:
        try:
            return super().check(ctx)
        except Exception:  # noqa: BLE001 - logged without patient data; the rule simply does not fire
            log.exception("%s condition failed on this order's data; treated as not holding", self.label)
            return False


def _spec_bool(spec: dict[str, Any], key: str, path: list[str | int]) -> bool | None:
    value = spec.get(key)
    if value is not None and not isinstance(value, bool):
        raise CompileError([*path, key], f"'{key}' must be true or false")
    return value


# ===========================================================================
# Companion diagnostics: recognising results
# ===========================================================================


def _polarity(coded: frozenset[str], text: str | None) -> str | None:
    """'pos' / 'neg' from a LOINC answer code or words in the value text."""
    if coded & NEGATIVE_CODES:
        return "neg"
    if coded & POSITIVE_CODES:
        return "pos"
    lowered = (text or "").lower()
    if any(w in lowered for w in _NEGATIVE_WORDS):
        return "neg"
    if any(w in lowered for w in _POSITIVE_WORDS):
        return "pos"
    return None


_SCORE = re.compile(r"(?<![0-9])([0-3])\s*\+")


def _ihc_score(text: str | None) -> str | None:
    if not text:
        return None
    found = _SCORE.search(text)
    if found:
        return f"{found.group(1)}+"
    stripped = text.strip().lower().replace("ihc", "").replace("score", "").strip(" :")
    return "0" if stripped == "0" else None


def _genes(lab: LabResult, marker: Biomarker) -> set[str]:
    """Genes of `marker` named by the variant Observation's gene-studied component (HGNC id or symbol)."""
    found: set[str] = set()
    for comp in lab.components:
        if GENE_STUDIED not in comp.codes:
            continue
        for key in comp.coded_value:
            for hgnc_key, gene in marker.hgnc.items():
                hgnc_id = hgnc_key.split(":", 1)[1]  # "HGNC:3236"; any system URL, or the bare number
                if key == hgnc_key or key.upper().endswith(":" + hgnc_id.upper()) or (
                        "genenames" in key and key.endswith(":" + hgnc_id.split(":")[1])):
                    found.add(gene)
        texts = [comp.text or ""] + [c.rsplit(":", 1)[-1] for c in comp.coded_value]
        for gene in marker.genes:
            if any(t.strip().upper() == gene for t in texts):
                found.add(gene)
    return found


def _variant_texts(lab: LabResult) -> list[str]:
    texts: list[str] = []
    for comp in lab.components:
        if comp.codes & {GENE_STUDIED, GENOMIC_SOURCE}:
            continue
        if comp.text:
            texts.append(comp.text)
        texts.extend(sorted(comp.coded_value))
    return texts


@dataclass(slots=True)
class Finding:
    """One result on file, read for one biomarker."""

    status: str  # positive | negative | absent-variant | equivocal | unspecified | mutated | wild
    text: LocalText
    when: datetime | None
    variant: str | None = None
    gene: str | None = None


@dataclass(slots=True)
class BiomarkerResult:
    marker: Biomarker
    status: str  # positive | negative | missing
    findings: list[Finding] = field(default_factory=list)

    @property
    def latest(self) -> datetime | None:
        whens = [f.when for f in self.findings if f.when]
        return max(whens) if whens else None

    def describe(self) -> LocalText:
        relevant = [f for f in self.findings if f.status != "unspecified"] or self.findings
        if not relevant:
            return L(f"no {self.marker.name['en']} result on file", f"无{_pick(self.marker.name, 'zh-CN')}检测结果")
        relevant = sorted(relevant, key=lambda f: f.when or _EPOCH, reverse=True)[:3]
        return _join(_fmt(L("{t} ({d})", "{t}（{d}）"), t=f.text, d=_date(f.when)) for f in relevant)


def _matched_variants(marker: Biomarker, texts: list[str]) -> list[str]:
    normal = [normalise_variant(t) for t in texts]
    return [v.id for v in marker.variants if any(m and m in n for m in v.match for n in normal)]


def _variant_label(marker: Biomarker, vid: str) -> LocalText:
    found = next((v for v in marker.variants if v.id == vid), None)
    return found.label if found else L(vid, vid)


def _significance_ok(marker: Biomarker, texts: list[str]) -> bool | None:
    """None when the record says nothing about clinical significance."""
    if not marker.significance:
        return True
    lowered = " ".join(texts).lower()
    if any(w in lowered for w in ("benign", "uncertain", "vus", "意义未明", "良性")):
        return False
    if any(w in lowered for w in marker.significance) or "致病" in lowered:
        return True
    return None


def read_biomarker(marker: Biomarker, patient: PatientFacts, percent_min: float | None = None) -> BiomarkerResult:
    """Classify every result on file for `marker`; see rules/coverage-and-cdx.md §Accepted results."""
    findings: list[Finding] = []
    variant_codes = {code: v.id for v in marker.variants for code in v.codes}
    threshold = percent_min if percent_min is not None else marker.percent_min
    gene_label = "/".join(marker.genes)
    for lab in patient.labs:
        if VARIANT_OBS in lab.codes:
            genes = _genes(lab, marker)
            if not genes:
                continue
            gene = "/".join(sorted(genes))
            polarity = _polarity(lab.coded_value, lab.text)
            texts = _variant_texts(lab)
            shown = next((t for t in texts if not t.startswith(("http", "loinc:"))), None)
            if polarity == "pos":
                matched = _matched_variants(marker, texts)
                significant = _significance_ok(marker, texts)
                if marker.mode == "wild-type":
                    findings.append(Finding("mutated", L(f"{gene} {shown or 'variant'} present", f"{gene} {shown or '变异'} 阳性"), lab.when, gene=gene))
                elif matched and significant is not False:
                    for vid in matched:
                        label = _variant_label(marker, vid)
                        findings.append(Finding("positive", _fmt(L("{g} {v} present", "{g} {v} 阳性"), g=gene, v=label), lab.when, vid, gene))
                elif marker.any_alteration and significant:
                    findings.append(Finding("positive", L(f"{gene} {shown or 'alteration'} present", f"{gene} {shown or '变异'} 阳性"), lab.when, gene=gene))
                elif marker.any_alteration and significant is None and not texts:
                    findings.append(Finding("positive", L(f"{gene} alteration present", f"{gene} 变异阳性"), lab.when, gene=gene))
                elif not texts or significant is None:
                    findings.append(Finding("unspecified", L(f"{gene} variant present (not specified)", f"{gene} 变异阳性（未注明具体变异）"), lab.when, gene=gene))
                else:
                    findings.append(Finding("negative", L(f"{gene} {shown} present (does not qualify)", f"{gene} {shown} 阳性（不符合要求）"), lab.when, gene=gene))
            elif polarity == "neg":
                matched = _matched_variants(marker, texts)
                if marker.mode == "wild-type" and not texts:
                    findings.append(Finding("wild", L(f"{gene}: no variant detected", f"{gene}：未检出变异"), lab.when, gene=gene))
                elif not texts:
                    findings.append(Finding("negative", L(f"{gene}: no variant detected", f"{gene}：未检出变异"), lab.when, gene=gene))
                for vid in matched:
                    findings.append(Finding("absent-variant", _fmt(L("{g} {v} not detected", "{g} {v} 未检出"), g=gene, v=_variant_label(marker, vid)), lab.when, vid, gene))
            continue
        codes = lab.codes
        if not (codes & (marker.result_codes | marker.percent_codes | set(variant_codes))):
            continue
        name = marker.name
        if lab.value is not None and (codes & marker.percent_codes or (lab.unit or "").strip() == "%") and threshold is not None:
            status = "positive" if lab.value >= threshold else "negative"
            findings.append(Finding(status, _fmt(L("{n}: {x:g}% (threshold {t:g}%)", "{n}：{x:g}%（阈值 {t:g}%）"), n=name, x=lab.value, t=threshold), lab.when))
            continue
        score = _ihc_score(lab.text) if marker.scores else None
        if score is not None:
            status = next((k for k, v in marker.scores.items() if score in v), "unspecified")
            status = {"positive": "positive", "negative": "negative", "equivocal": "equivocal"}.get(status, "unspecified")
            findings.append(Finding(status, _fmt(L("{n}: IHC {s}", "{n}：IHC {s}"), n=name, s=score), lab.when))
            continue
        polarity = _polarity(lab.coded_value, lab.text)
        shown = lab.text or ""
        specific = [variant_codes[c] for c in codes if c in variant_codes]
        if specific:
            for vid in specific:
                label = _variant_label(marker, vid)
                if polarity == "pos":
                    findings.append(Finding("positive", _fmt(L("{v}: positive", "{v}：阳性"), v=label), lab.when, vid))
                elif polarity == "neg":
                    findings.append(Finding("absent-variant", _fmt(L("{v}: negative", "{v}：阴性"), v=label), lab.when, vid))
            continue
        matched = _matched_variants(marker, [shown]) if shown else []
        if marker.mode == "wild-type":
            if polarity == "pos" or (shown and polarity is None):
                findings.append(Finding("mutated", L(f"{gene_label}: {shown or 'mutation detected'}", f"{gene_label}：{shown or '检出突变'}"), lab.when))
            elif polarity == "neg":
                findings.append(Finding("wild", L(f"{gene_label}: no mutation detected", f"{gene_label}：未检出突变"), lab.when, gene="*"))
        elif polarity == "neg" and not matched:
            findings.append(Finding("negative", _fmt(L("{n}: {s}", "{n}：{s}"), n=name, s=shown or "negative"), lab.when))
        elif matched:
            for vid in matched:
                findings.append(Finding("positive" if polarity != "neg" else "absent-variant",
                                        _fmt(L("{n}: {s}", "{n}：{s}"), n=name, s=shown), lab.when, vid))
        elif polarity == "pos":
            # A positive answer that does not name the variant: the laboratory reports the biomarker as present.
            findings.append(Finding("positive", _fmt(L("{n}: {s}", "{n}：{s}"), n=name, s=shown or "positive"), lab.when))
        elif shown:
            findings.append(Finding("negative" if marker.variants and not marker.any_alteration else "unspecified",
                                    _fmt(L("{n}: {s}", "{n}：{s}"), n=name, s=shown), lab.when))
    return BiomarkerResult(marker, _status(marker, findings), findings)


def _status(marker: Biomarker, findings: list[Finding]) -> str:
    if marker.mode == "wild-type":
        if any(f.status == "mutated" for f in findings):
            return "negative"
        wild = {f.gene for f in findings if f.status == "wild"}
        if "*" in wild or (wild and set(marker.genes) <= wild):
            return "positive"
        return "missing"
    if any(f.status == "positive" for f in findings):
        return "positive"
    if any(f.status == "negative" for f in findings):
        return "negative"
    absent = {f.variant for f in findings if f.status == "absent-variant"}
    if marker.variants and absent >= {v.id for v in marker.variants}:
        return "negative"
    return "missing"


def therapies_applicable(cdx: CompanionDiagnostics, concepts: frozenset[str], patient: PatientFacts) -> list[Therapy]:
    """Entries for the ordered drug: those whose indication the patient has, plus those without one."""
    entries = cdx.therapies_for(concepts)
    out = []
    for therapy in entries:
        if therapy.indication is None:
            out.append(therapy)
        elif any(therapy.indication.any(c.codes) for c in patient.conditions):
            out.append(therapy)
    return out


@dataclass(slots=True)
class CdxAssessment:
    status: str  # missing | negative | positive
    therapies: list[Therapy]
    results: list[BiomarkerResult]

    def tests(self) -> list[tuple[str, LocalText]]:
        out: list[tuple[str, LocalText]] = []
        for r in self.results:
            if r.status == "missing":
                for test in r.marker.tests:
                    if test[0] not in [t[0] for t in out]:
                        out.append(test)
        if not out:
            for r in self.results:
                for test in r.marker.tests:
                    if test[0] not in [t[0] for t in out]:
                        out.append(test)
        return out


def assess_cdx(ctx: EvalContext) -> CdxAssessment | None:
    cdx: CompanionDiagnostics | None = ctx.knowledge.cdx
    if cdx is None or ctx.order.resource_type != "MedicationRequest":
        return None
    therapies = therapies_applicable(cdx, ctx.order.concepts, ctx.patient)
    if not therapies:
        return None
    results: list[BiomarkerResult] = []
    seen: set[str] = set()
    for therapy in therapies:
        for bid in therapy.biomarkers:
            if bid in seen:
                continue
            seen.add(bid)
            results.append(read_biomarker(cdx.biomarkers[bid], ctx.patient, therapy.percent_min))
    statuses = {r.status for r in results}
    status = "positive" if "positive" in statuses else "negative" if statuses == {"negative"} else "missing"
    return CdxAssessment(status, therapies, results)


class CompanionDiagnostic(_Guarded):
    """`companion_diagnostic: {result: [missing|negative|positive], biomarker: [...]}`."""

    label = "companion_diagnostic"
    patient_only = False

    def __init__(self, spec: dict[str, Any], knowledge: Knowledge, path: list[str | int]) -> None:
        self.results = frozenset(spec.get("result", ("missing", "negative", "positive")))
        self.biomarkers = frozenset(spec.get("biomarker", ()))
        cdx = knowledge.cdx
        for i, bid in enumerate(sorted(self.biomarkers)):
            if cdx is None or bid not in cdx.biomarkers:
                raise CompileError([*path, "biomarker", i], f"unknown biomarker '{bid}' (knowledge/cdx)")
        if cdx is None:
            raise CompileError(path, "no companion-diagnostic table: add knowledge/cdx/*.yaml")

    def holds(self, ctx: EvalContext) -> bool:
        found = assess_cdx(ctx)
        if found is None:
            ctx.note(self.label, False, "no companion-diagnostic requirement for this drug and indication")
            return False
        if self.biomarkers and not any(r.marker.id in self.biomarkers for r in found.results):
            ctx.note(self.label, False, "required biomarker not in the list")
            return False
        if found.status not in self.results:
            ctx.note(self.label, False, f"companion diagnostic is {found.status}")
            return False
        markers = [r.marker for r in found.results]
        therapy = found.therapies[0]
        tests = found.tests()
        source = ctx.knowledge.cdx.sources.get(therapy.source, {})
        ctx.bindings.update({
            "cdx.status": {"missing": L("no qualifying result on file", "无符合要求的检测结果"),
                           "negative": L("negative", "阴性"), "positive": L("positive", "阳性")}[found.status],
            "cdx.biomarker": _join((m.name for m in markers), L(" or ", " 或 ")),
            "cdx.test": _join((t[1] for t in tests), L(" and ", " 及 ")),
            "cdx.test_code": ", ".join("LOINC " + code.split(":", 1)[1] for code, _ in tests),
            "cdx.result": _join(r.describe() for r in found.results),
            "cdx.indication": next((_fmt(L(" in {x}", "的{x}"), x=t.indication_label) for t in found.therapies if t.indication_label), L("", "")),
            "cdx.note": next((t.note for t in found.therapies if t.note), L("", "")),
            "cdx.source": source.get("label", therapy.source),
            "_cdx_tests": tests,
        })
        ctx.note(self.label, True, f"companion diagnostic is {found.status}")
        return True

    def bound_names(self) -> set[str]:
        return {"cdx.*"}


# ===========================================================================
# Formulary
# ===========================================================================


@dataclass(slots=True)
class CriterionOutcome:
    criterion: Criterion
    met: bool | None  # None: cannot be checked from the record (a reminder)
    missing: LocalText | None = None
    satisfy: LocalText | None = None
    tests: list[tuple[str, LocalText]] = field(default_factory=list)


@dataclass(slots=True)
class Alternative:
    key: str
    name: LocalText
    product: Product
    item: FormularyItem
    cost: float | None
    preferred: bool
    same_ingredient: bool


@dataclass(slots=True)
class Assessment:
    plan: Plan
    plan_source: str
    item: FormularyItem
    quantity: float
    quantity_given: bool
    outcomes: list[CriterionOutcome]
    restriction_met: bool
    continuing: bool
    cost: float | None
    covered_cost: float | None
    full_price: float | None
    alternatives: list[Alternative]
    prior_auth: bool
    over_limit: bool
    allowed: float | None
    step_drug: str | None

    @property
    def missing_kinds(self) -> set[str]:
        return {o.criterion.kind for o in self.outcomes if o.met is False}


def _ingredients(knowledge: Knowledge, concepts: frozenset[str]) -> set[str]:
    return {c for c in concepts if c in knowledge.drugs}


def _on_file(patient: PatientFacts, keys: set[str], days: int) -> bool:
    since = patient.today.toordinal() - days
    for med in patient.medications:
        if med.concepts & keys and (med.active or (med.when is not None and med.when.toordinal() >= since)):
            return True
    return False


def _bmi(patient: PatientFacts) -> float | None:
    if patient.height_cm and patient.weight_kg and patient.height_cm > 0:
        return patient.weight_kg / (patient.height_cm / 100.0) ** 2
    return None


def _requester_codes(ctx: EvalContext) -> frozenset[str] | None:
    """Qualification / specialty codes of the ordering practitioner, when the record holds them."""
    from ..facts.builder import concept_codes

    ref = (ctx.order.resource.get("requester") or {}).get("reference") if isinstance(ctx.order.resource.get("requester"), dict) else None
    if not isinstance(ref, str) or "/" not in ref:
        return None
    rtype, rid = ref.rsplit("/", 2)[-2:]
    for res in ctx.patient.resources:
        if res.get("resourceType") == rtype and res.get("id") == rid:
            found: set[str] = set()
            for spec in res.get("specialty", []) or []:
                found |= concept_codes(spec)
            for qual in res.get("qualification", []) or []:
                if isinstance(qual, dict):
                    found |= concept_codes(qual.get("code"))
            return frozenset(found)
    return None


def _evaluate_criterion(ctx: EvalContext, plan: Plan, c: Criterion, continuing: bool) -> CriterionOutcome:
    patient, knowledge = ctx.patient, ctx.knowledge
    if c.kind == "diagnosis":
        label = c.label or L(", ".join(c.keys[:4]), "、".join(c.keys[:4]))
        assert c.matcher is not None
        met = any(e.active and c.matcher.any(e.codes) for e in patient.conditions)
        return CriterionOutcome(c, met, _fmt(L("a diagnosis of {x}", "{x}诊断"), x=label),
                                _fmt(L("a documented diagnosis of {x}", "记录{x}诊断"), x=label))
    if c.kind == "biomarker":
        cdx = knowledge.cdx
        results = [read_biomarker(cdx.biomarkers[b], patient) for b in c.biomarkers if cdx and b in cdx.biomarkers]
        names = _join((r.marker.name for r in results), L(" or ", " 或 "))
        if any(r.status == "positive" for r in results):
            return CriterionOutcome(c, True)
        tests = [t for r in results for t in r.marker.tests]
        unique = list({code: (code, d) for code, d in tests}.values())
        test_names = _join((t[1] for t in unique), L(" and ", " 及 "))
        if results and all(r.status == "negative" for r in results):
            return CriterionOutcome(c, False, _fmt(L("{n} positive (on file: {r})", "{n}阳性结果（现有结果：{r}）"),
                                                   n=names, r=_join(r.describe() for r in results)),
                                    _fmt(L("{n} positive", "{n}阳性结果"), n=names), unique)
        return CriterionOutcome(c, False, _fmt(L("{n}: no result on file", "{n}检测结果（暂无）"), n=names),
                                _fmt(L("{n} positive on {t}", "{t}显示{n}阳性"), n=names, t=test_names), unique)
    if c.kind == "prior_therapy":
        label = c.label or L(", ".join(c.keys[:4]), "、".join(c.keys[:4]))
        if c.new_starts_only and continuing:
            return CriterionOutcome(c, True)
        assert c.matcher is not None
        since = patient.today.toordinal() - (c.within_days or 36500)
        met = any(c.matcher.any(m.concepts) and (m.active or (m.when is not None and m.when.toordinal() >= since))
                  for m in patient.medications)
        days = c.within_days or 0
        return CriterionOutcome(
            c, met,
            _fmt(L("prior treatment with {x} in the last {d} days", "近 {d} 天内使用{x}的记录"), x=label, d=days),
            _fmt(L("documented treatment with {x} within {d} days (or its documented failure or intolerance)",
                   "{d} 天内使用{x}的记录（或其疗效不佳、不耐受的记录）"), x=label, d=days))
    if c.kind == "bmi":
        bmi = _bmi(patient)
        need = " ".join(f"{ {'gt': '>', 'gte': '≥', 'lt': '<', 'lte': '≤'}[k]} {v:g}" for k, v in (c.compare or {}).items())
        if bmi is None:
            return CriterionOutcome(c, False, L(f"a recorded BMI {need} (no height and weight on file)", f"BMI {need}（无身高体重记录）"),
                                    L(f"height and weight showing BMI {need}", f"身高体重记录显示 BMI {need}"))
        met = _compare(c.compare or {}, bmi)
        return CriterionOutcome(c, met, L(f"BMI {need} (BMI on file {bmi:.1f})", f"BMI {need}（现有 BMI {bmi:.1f}）"),
                                L(f"BMI {need}", f"BMI {need}"))
    # prescriber
    if c.new_starts_only and continuing:
        return CriterionOutcome(c, True)
    held = _requester_codes(ctx)
    if c.matcher is None or held is None:
        return CriterionOutcome(c, None, c.label, c.label)
    return CriterionOutcome(c, c.matcher.any(held), c.label, c.label)


def _restriction_outcomes(ctx: EvalContext, plan: Plan, restriction: Restriction | None, continuing: bool) -> list[CriterionOutcome]:
    if restriction is None:
        return []
    return [_evaluate_criterion(ctx, plan, c, continuing) for c in restriction.criteria]


def _item_name(drug: Any, key: str, item: FormularyItem, with_note: bool = False) -> LocalText:
    """Drug name; a product-level entry (brand vs generic) is named by its product, optionally with the plan's note."""
    product = next((p for p in drug.products if p.code == key), None)
    if product is None or key == drug.ingredient:
        return dict(drug.names)
    if not (with_note and item.note):
        return {loc: product.display for loc in LOCALES}
    return {"en": f"{product.display} ({_pick(item.note, 'en')})", "zh-CN": f"{product.display}（{_pick(item.note, 'zh-CN')}）"}


def _alternatives(ctx: EvalContext, plan: Plan, item: FormularyItem, quantity: float, ordered: set[str]) -> list[Alternative]:
    group = plan.groups.get(item.group or "")
    if group is None:
        return []
    knowledge = ctx.knowledge
    out: list[Alternative] = []
    for key in group.members:
        other = plan.items.get(key)
        if other is None or key == item.drug or other.status == "not-covered":
            continue
        drug = knowledge.drug(key)
        if drug is None:
            continue
        product = next((p for p in drug.products if p.code == key), None) or drug.default_product
        if product is None or drug.ingredient in ordered and product.code in medication_codes(ctx.order.resource):
            continue
        if other.status == "restricted":
            continuing = _on_file(ctx.patient, {drug.ingredient}, plan.new_start_lookback_days)
            outcomes = _restriction_outcomes(ctx, plan, other.restriction, continuing)
            if any(o.met is False for o in outcomes):
                continue
        out.append(Alternative(key, _item_name(drug, key, other, with_note=True), product, other, plan.cost(other, quantity, True),
                               key in group.preferred, drug.ingredient in ordered))
    order = {k: i for i, k in enumerate(group.preferred)}
    out.sort(key=lambda a: (0 if a.preferred else 1, order.get(a.key, 99), a.cost if a.cost is not None else 1e18))
    return out


def assess_formulary(ctx: EvalContext) -> Assessment | None:
    forms = ctx.knowledge.formularies
    if forms is None or ctx.order.resource_type != "MedicationRequest":
        return None
    plan, source = forms.plan_for(ctx.patient.plan)
    if plan is None:
        return None
    own = medication_codes(ctx.order.resource)
    item = item_for(plan, own, ctx.order.concepts)
    if item is None:
        return None
    ingredients = _ingredients(ctx.knowledge, ctx.order.concepts)
    continuing = bool(ingredients) and _on_file(ctx.patient, ingredients, plan.new_start_lookback_days)
    quantity = ctx.order.quantity if ctx.order.quantity and ctx.order.quantity > 0 else DEFAULT_QUANTITY
    outcomes = _restriction_outcomes(ctx, plan, item.restriction, continuing)
    met = not any(o.met is False for o in outcomes)
    covered = item.status == "covered" or (item.status == "restricted" and met)
    step_drug = None
    for o in outcomes:
        if o.criterion.kind == "prior_therapy" and o.met is False:
            step_drug = next((k for k in o.criterion.keys if (d := ctx.knowledge.drug(k)) is not None and d.default_product), None)
    over, allowed = False, None
    if item.quantity_limit is not None and ctx.order.quantity:
        allowed = allowed_quantity(item.quantity_limit, ctx.order.days_supply)
        over = ctx.order.quantity > allowed
    pa = item.prior_auth is not None and not (item.prior_auth.new_starts_only and continuing)
    cost = plan.cost(item, quantity, covered)
    covered_cost = plan.cost(item, quantity, item.status != "not-covered")
    if over and allowed is not None and cost is not None and covered_cost is not None:
        # The plan pays up to the limit; the excess is paid by the patient in full.
        excess = plan.cost(item, quantity - allowed, False) or 0.0
        cost = (plan.cost(item, allowed, covered) or 0.0) + excess
        covered_cost = (plan.cost(item, allowed, item.status != "not-covered") or 0.0) + excess
    return Assessment(
        plan=plan, plan_source=source, item=item, quantity=quantity, quantity_given=bool(ctx.order.quantity),
        outcomes=outcomes, restriction_met=met, continuing=continuing,
        cost=cost, covered_cost=covered_cost,
        full_price=plan.cost(item, quantity, False),
        alternatives=_alternatives(ctx, plan, item, quantity, ingredients), prior_auth=pa, over_limit=over,
        allowed=allowed, step_drug=step_drug,
    )


_STATUS_TEXT = {
    "covered": L("covered", "可报销"),
    "restricted": L("covered with a payment restriction", "限定支付范围内报销"),
    "not-covered": L("not covered", "不予报销"),
}


def _money(plan: Plan, amount: float | None) -> LocalText:
    value = plan.money(amount, "en")
    return value if isinstance(value, dict) else {"en": value, "zh-CN": value}


def formulary_bindings(a: Assessment, knowledge: Knowledge) -> dict[str, Any]:
    plan, item = a.plan, a.item
    unit = item.price.unit if item.price else L("unit", "单位")
    quantity = _quantity(a.quantity, unit)
    basis = _fmt(L("estimate for {q}{x}; deductible and annual cap not included; demonstration prices",
                   "按 {q}{x}估算，未计起付线与封顶线；演示价格"),
                 q=quantity, x=L("" if a.quantity_given else " (no quantity on the order)", "" if a.quantity_given else "（医嘱未写数量）"))
    restriction = item.restriction
    if restriction is not None:
        original = restriction.text[restriction.original]
        quoted = {loc: (f"“{original}”" if loc == restriction.original or loc not in restriction.text
                        else f"“{original}” ({restriction.text[loc]})" if loc == "en" else f"“{original}”（{restriction.text[loc]}）")
                  for loc in LOCALES}
    else:
        quoted = L("none", "无")
    missing = [o for o in a.outcomes if o.met is False]
    confirm = [o.missing for o in a.outcomes if o.met is None and o.missing] + list(restriction.to_confirm if restriction else ())
    limit = item.quantity_limit
    step = knowledge.drug(a.step_drug) if a.step_drug else None
    alternatives = [
        _fmt(L("{n} ({t}{p}, est. {c})", "{n}（{t}{p}，预计 {c}）"), n=alt.name, t=plan.tier_display(alt.item.tier),
             p=L(", preferred", "，优选") if alt.preferred else L("", ""), c=_money(plan, alt.cost))
        for alt in a.alternatives
    ]
    none = L("none", "无")
    drug = knowledge.drug(item.drug)
    return {
        "formulary.drug": _item_name(drug, item.drug, item) if drug else L(item.drug, item.drug),
        "formulary.plan": plan.id,
        "formulary.plan_name": plan.title,
        "formulary.plan_source": L("from the patient's Coverage", "来自患者参保信息") if a.plan_source == "coverage"
        else L("no Coverage on file: the default plan was assumed", "无参保记录：按默认方案估算"),
        "formulary.notice": plan.notice,
        "formulary.status": _STATUS_TEXT[item.status],
        "formulary.tier": plan.tier_display(item.tier),
        "formulary.restriction": quoted,
        "formulary.missing": _join(o.missing for o in missing if o.missing) if missing else none,
        "formulary.satisfy": _join(o.satisfy for o in missing if o.satisfy) if missing else none,
        "formulary.to_confirm": _join(confirm) if confirm else none,
        "formulary.patient_cost": _money(plan, a.cost),
        "formulary.covered_cost": _money(plan, a.covered_cost),
        "formulary.full_price": _money(plan, a.full_price),
        "formulary.quantity": quantity,
        "formulary.cost_basis": basis,
        "formulary.quantity_limit": _limit_text(limit, unit) if limit else none,
        "formulary.allowed_quantity": _quantity(a.allowed, unit) if a.allowed is not None else none,
        "formulary.pa_documents": item.prior_auth.documents if item.prior_auth else none,
        "formulary.alternatives": _join(alternatives) if alternatives else none,
        "formulary.step_drug": dict(step.names) if step else none,
        "formulary.note": item.note or L("", ""),
        "formulary.required_test": _join((t[1] for o in missing for t in o.tests), L(" and ", " 及 ")) if any(o.tests for o in missing) else none,
        "_formulary": a,
    }


def _quantity(q: float, unit: LocalText) -> LocalText:
    en = unit.get("en", "unit")
    plural = en if q == 1 or en.endswith("s") else en + "s"
    return {"en": f"{q:g} {plural}", "zh-CN": f"{q:g} {unit.get('zh-CN', en)}"}


def _limit_text(limit: Any, unit: LocalText) -> LocalText:
    per = _quantity(limit.quantity, unit)
    text = _fmt(L("{q} per {d} days", "每 {d} 天 {q}"), q=per, d=limit.days)
    if limit.max_daily:
        extra = _fmt(L(", at most {m} a day", "，每日最多 {m}"), m=_quantity(limit.max_daily, unit))
        text = {loc: text[loc] + extra[loc] for loc in LOCALES}
    return text


class FormularyCondition(_Guarded):
    """`formulary: {status, restriction_met, missing, prior_auth, over_quantity_limit, has_alternative, plan, plan_source}`."""

    label = "formulary"
    patient_only = False
    KINDS = ("diagnosis", "biomarker", "prior_therapy", "bmi", "prescriber")

    def __init__(self, spec: dict[str, Any], knowledge: Knowledge, path: list[str | int]) -> None:
        self.status = frozenset(spec.get("status", ()))
        self.restriction_met = _spec_bool(spec, "restriction_met", path)
        self.prior_auth = _spec_bool(spec, "prior_auth", path)
        self.over_limit = _spec_bool(spec, "over_quantity_limit", path)
        self.has_alternative = _spec_bool(spec, "has_alternative", path)
        self.missing = frozenset(spec.get("missing", ()))
        self.plans = frozenset(spec.get("plan", ()))
        self.sources = frozenset(spec.get("plan_source", ()))
        forms = knowledge.formularies
        if forms is None:
            raise CompileError(path, "no formularies: add knowledge/formularies/*.yaml")
        for i, pid in enumerate(spec.get("plan", ())):
            if pid not in forms.plans:
                raise CompileError([*path, "plan", i], f"unknown plan '{pid}' (knowledge/formularies)")
        if self.restriction_met is True and self.missing:
            raise CompileError(path, "restriction_met: true with 'missing' can never hold")

    def holds(self, ctx: EvalContext) -> bool:
        a = assess_formulary(ctx)
        if a is None:
            ctx.note(self.label, False, "no plan, or the drug is not in the patient's plan")
            return False
        checks = [
            (not self.status or a.item.status in self.status, f"status is {a.item.status}"),
            (not self.plans or a.plan.id in self.plans, f"plan {a.plan.id} not in list"),
            (not self.sources or a.plan_source in self.sources, f"plan source is {a.plan_source}"),
            (self.restriction_met is None or a.restriction_met == self.restriction_met,
             "restriction " + ("met" if a.restriction_met else "not met")),
            (not self.missing or bool(self.missing & a.missing_kinds), "no listed criterion is missing"),
            (self.prior_auth is None or a.prior_auth == self.prior_auth,
             "prior authorization " + ("required" if a.prior_auth else "not required")),
            (self.over_limit is None or a.over_limit == self.over_limit,
             "quantity " + ("over" if a.over_limit else "within") + " the limit"),
            (self.has_alternative is None or bool(a.alternatives) == self.has_alternative,
             f"{len(a.alternatives)} covered alternative(s)"),
        ]
        for ok, why in checks:
            if not ok:
                ctx.note(self.label, False, why)
                return False
        ctx.bindings.update(formulary_bindings(a, ctx.knowledge))
        ctx.note(self.label, True, f"{a.plan.id}: {a.item.status}")
        return True

    def bound_names(self) -> set[str]:
        return {"formulary.*"}


# ===========================================================================
# Tests that should not be ordered
# ===========================================================================


def _germline_result(ctx: EvalContext) -> tuple[Any, GenomicResult] | None:
    for test in ctx.knowledge.genetic_tests.values():
        if test.code and test.code in ctx.order.concepts:
            result = ctx.genomics.get(test.gene)
            if result is None:
                continue
            if result.kind == "allele" and result.status in ("positive", "negative"):
                return test, result
            if result.kind != "allele" and (result.phenotype or "Indeterminate") != "Indeterminate":
                return test, result
    return None


class OrderedTestCondition(_Guarded):
    """`test_order: {already_resulted, repeat_within_window, within_days, indication_met}`."""

    label = "test_order"
    patient_only = False

    def __init__(self, spec: dict[str, Any], knowledge: Knowledge, path: list[str | int]) -> None:
        self.already = _spec_bool(spec, "already_resulted", path)
        self.repeat = _spec_bool(spec, "repeat_within_window", path)
        self.indication = _spec_bool(spec, "indication_met", path)
        self.within = spec.get("within_days")
        if self.already is None and self.repeat is None and self.indication is None:
            raise CompileError(path, "test_order needs already_resulted, repeat_within_window or indication_met")
        if (self.repeat is not None or self.indication is not None) and knowledge.cdx is None:
            raise CompileError(path, "no test-ordering table: add knowledge/cdx/*.yaml")
        if self.repeat and self.within is None and knowledge.cdx is not None and knowledge.cdx.somatic_repeat_window_days is None:
            raise CompileError(path, "no repeat window: give within_days here or somatic_repeat_window_days in knowledge/cdx")

    def holds(self, ctx: EvalContext) -> bool:
        if ctx.order.resource_type != "ServiceRequest":
            ctx.note(self.label, False, "not a test order")
            return False
        bindings: dict[str, Any] = {}
        if self.already is not None:
            found = _germline_result(ctx)
            if (found is not None) != self.already:
                ctx.note(self.label, False, "germline result " + ("on file" if found else "not on file"))
                return False
            if found is not None:
                test, result = found
                text = (f"{result.allele} {result.status}" if result.kind == "allele"
                        else f"{result.diplotype or ''} ({result.phenotype})".strip())
                bindings.update({"test.name": test.display, "test.result": text, "test.date": _date(result.when)})
        if self.repeat is not None:
            cdx: CompanionDiagnostics = ctx.knowledge.cdx
            window = self.within or cdx.somatic_repeat_window_days or 0
            latest: tuple[datetime, BiomarkerResult] | None = None
            for marker in cdx.biomarkers_for_test(ctx.order.concepts):
                if marker.origin == "germline":
                    continue
                result = read_biomarker(marker, ctx.patient)
                when = result.latest
                if when is not None and (latest is None or when > latest[0]):
                    latest = (when, result)
            days = (ctx.patient.today - latest[0].date()).days if latest else None
            inside = days is not None and days <= window
            if inside != self.repeat:
                ctx.note(self.label, False, "no result inside the window" if not inside else f"result {days} days ago")
                return False
            if latest is not None:
                result = latest[1]
                bindings.update({"test.name": _join((t[1] for t in result.marker.tests), L(" and ", " 及 ")),
                                 "test.result": result.describe(), "test.date": _date(latest[0]),
                                 "test.days_since": str(days), "test.window_days": str(window)})
        if self.indication is not None:
            test = ctx.knowledge.cdx.large_test_for(ctx.order.concepts)
            if test is None:
                ctx.note(self.label, False, "not a large-panel or genome test")
                return False
            met = any(e.active and test.indication.any(e.codes) for e in ctx.patient.conditions)
            if met != self.indication:
                ctx.note(self.label, False, "qualifying diagnosis " + ("on file" if met else "not on file"))
                return False
            bindings.update({"test.name": test.name, "test.indication": test.indication_label})
        ctx.bindings.update(bindings)
        ctx.note(self.label, True, "test order matches")
        return True

    def bound_names(self) -> set[str]:
        return {"test.*"}


CONDITION_KINDS = ("formulary", "companion_diagnostic", "test_order")
register_condition("formulary", lambda spec, knowledge, path: FormularyCondition(spec, knowledge, path))
register_condition("companion_diagnostic", lambda spec, knowledge, path: CompanionDiagnostic(spec, knowledge, path))
register_condition("test_order", lambda spec, knowledge, path: OrderedTestCondition(spec, knowledge, path))
