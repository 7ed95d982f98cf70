"""Normalised facts: what the engine sees instead of FHIR JSON.

FHIR resources are turned into these plain objects once per request
(`service/facts/builder.py`); rules are evaluated only against them.
Codes are kept as `"system:code"` strings with short system aliases
(see `SYSTEM_ALIASES`) so that a rule author writes `icd10:I21.4`, not a URL.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

#: FHIR code-system URLs and the short aliases rule packs use for them.
SYSTEM_ALIASES: dict[str, str] = {
    "http://www.nlm.nih.gov/research/umls/rxnorm": "rxnorm",
    "http://www.whocc.no/atc": "atc",
    "http://loinc.org": "loinc",
    "http://snomed.info/sct": "snomed",
    "http://hl7.org/fhir/sid/icd-10": "icd10",
    "http://hl7.org/fhir/sid/icd-10-cm": "icd10",
    "http://hl7.org/fhir/sid/icd-10-cn": "icd10cn",
    "http://www.cms.gov/Medicare/Coding/ICD10": "icd10pcs",
    "http://www.cms.gov/Medicare/Coding/ICD10PCS": "icd10pcs",
    "http://terminology.hl7.org/CodeSystem/icd10pcs": "icd10pcs",
    "http://www.genenames.org": "hgnc",
    "https://www.nhsa.gov.cn/drug-code": "nhsa",
    "http://nhsa.gov.cn/fhir/CodeSystem/drug-code": "nhsa",
    "urn:oid:1.2.156.112656.1.2.1": "nhsa",
}

#: Aliases back to one canonical URL, used when we create resources.
ALIAS_SYSTEMS: dict[str, str] = {
    "rxnorm": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "atc": "http://www.whocc.no/atc",
    "loinc": "http://loinc.org",
    "snomed": "http://snomed.info/sct",
    "icd10": "http://hl7.org/fhir/sid/icd-10",
    "icd10cn": "http://hl7.org/fhir/sid/icd-10-cn",
    "icd10pcs": "http://www.cms.gov/Medicare/Coding/ICD10PCS",
    "hgnc": "http://www.genenames.org",
    "nhsa": "http://nhsa.gov.cn/fhir/CodeSystem/drug-code",
}


def code_key(system: str | None, code: str | None) -> str | None:
    """`("http://loinc.org", "84413-4")` -> `"loinc:84413-4"`; unknown systems keep their URL."""
    if not code:
        return None
    alias = SYSTEM_ALIASES.get(system or "", system or "local")
    return f"{alias}:{code.strip()}"


@dataclass(frozen=True, slots=True)
class CodedEvent:
    """A diagnosis or procedure: its codes and when it happened."""

    codes: frozenset[str]
    when: date | None = None
    active: bool = True
    text: str | None = None


@dataclass(frozen=True, slots=True)
class MedicationFact:
    """A medication order on file (not the draft): codes expanded to concepts."""

    concepts: frozenset[str]
    when: date | None = None
    active: bool = True
    text: str | None = None


@dataclass(frozen=True, slots=True)
class LabResult:
    """A laboratory Observation reduced to code, value and time."""

    codes: frozenset[str]
    value: float | None = None
    unit: str | None = None
    text: str | None = None
    coded_value: frozenset[str] = frozenset()
    when: datetime | None = None
    components: tuple["LabResult", ...] = ()


@dataclass(frozen=True, slots=True)
class GenomicResult:
    """One genomic finding read from a genotype, phenotype or variant Observation.

    `kind` is one of: "genotype" (diplotype or SNP genotype), "phenotype"
    (a reported phenotype / therapeutic implication), "allele" (presence of a
    named allele such as HLA-B*15:02), "variant" (a somatic or germline
    variant, possibly with an amino-acid change).
    """

    gene: str
    kind: str
    diplotype: str | None = None
    phenotype: str | None = None
    activity_score: float | None = None
    allele: str | None = None
    status: str | None = None
    variant: str | None = None
    when: datetime | None = None
    source_id: str | None = None


@dataclass(frozen=True, slots=True)
class DraftOrder:
    """A draft order from `context.draftOrders`.

    `concepts` holds every code of the order plus what the knowledge base
    derives from it (ingredient, ATC class and its parents, NHSA code).
    `resource` is the original FHIR JSON, used only to build suggestions.
    """

    resource_type: str
    resource_id: str
    concepts: frozenset[str]
    display: str | None = None
    priority: str | None = None
    route: frozenset[str] = frozenset()
    dose_mg: float | None = None
    doses_per_day: float | None = None
    quantity: float | None = None
    days_supply: float | None = None
    resource: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def reference(self) -> str:
        return f"{self.resource_type}/{self.resource_id}"


@dataclass(slots=True)
class PatientFacts:
    """Everything the rules may look at for one patient, at one moment."""

    today: date
    birth_date: date | None = None
    sex: str | None = None
    race: str | None = None
    height_cm: float | None = None
    weight_kg: float | None = None
    conditions: list[CodedEvent] = field(default_factory=list)
    procedures: list[CodedEvent] = field(default_factory=list)
    medications: list[MedicationFact] = field(default_factory=list)
    labs: list[LabResult] = field(default_factory=list)
    genomics: list[GenomicResult] = field(default_factory=list)
    plan: str | None = None
    #: Raw resources, only for the FHIRPath escape hatch; never logged.
    resources: list[dict[str, Any]] = field(default_factory=list, repr=False)

    @property
    def age_years(self) -> int | None:
        if self.birth_date is None:
            return None
        b, t = self.birth_date, self.today
        return t.year - b.year - ((t.month, t.day) < (b.month, b.day))

    def __repr__(self) -> str:  # never print clinical content by accident
        return "PatientFacts(<redacted>)"
