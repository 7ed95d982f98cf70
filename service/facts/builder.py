"""FHIR R4 JSON -> normalised facts (`service/facts/model.py`).

Prefetch data comes from many EHRs and is read defensively: a field that is
missing or of the wrong type is skipped, never fatal. Draft orders are the
exception: they were validated with fhir.resources before they get here
(`service/hooks/request.py`), because suggestions are built from them.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from typing import Any, Iterable

from ..knowledge import Knowledge
from .dates import parse_fhir_date, parse_fhir_datetime
from .model import CodedEvent, DraftOrder, LabResult, MedicationFact, PatientFacts, code_key

US_CORE_RACE = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race"
#: OMB race category codes (urn:oid:2.16.840.1.113883.6.238) -> IWPC race groups.
OMB_RACE = {"2106-3": "white", "2028-9": "asian", "2054-5": "black"}

HEIGHT_LOINC = "loinc:8302-2"
WEIGHT_LOINC = "loinc:29463-7"
_HEIGHT_TO_CM = {"cm": 1.0, "m": 100.0, "in": 2.54, "[in_i]": 2.54, "mm": 0.1}
_WEIGHT_TO_KG = {"kg": 1.0, "g": 0.001, "lb": 0.45359237, "[lb_av]": 0.45359237}

_EXCLUDED_VERIFICATION = {"entered-in-error", "refuted"}
_INACTIVE_CLINICAL = {"inactive", "resolved", "remission"}
_FINAL_OBSERVATION = {"final", "amended", "corrected", "preliminary"}


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def concept_codes(concept: Any) -> frozenset[str]:
    """All `system:code` keys of a CodeableConcept (unknown systems keep their URL)."""
    out: set[str] = set()
    for coding in _list(_dict(concept).get("coding")):
        coding = _dict(coding)
        system, code = coding.get("system"), coding.get("code")
        if isinstance(code, str) and (system is None or isinstance(system, str)):
            key = code_key(system, code)
            if key:
                out.add(key)
    return frozenset(out)


def concept_text(concept: Any) -> str | None:
    concept = _dict(concept)
    text = concept.get("text")
    if isinstance(text, str):
        return text
    for coding in _list(concept.get("coding")):
        display = _dict(coding).get("display")
        if isinstance(display, str):
            return display
    return None


parse_date = parse_fhir_date
parse_datetime = parse_fhir_datetime


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


# -- patient -----------------------------------------------------------------


def build_patient_facts(resources: Iterable[dict[str, Any]], knowledge: Knowledge, today: date) -> PatientFacts:
    """Sort resources by type and reduce each to the facts rules can test."""
    facts = PatientFacts(today=today)
    observations: list[dict[str, Any]] = []
    heights: list[tuple[datetime, float]] = []
    weights: list[tuple[datetime, float]] = []
    coverages: list[dict[str, Any]] = []
    epoch = datetime(1900, 1, 1, tzinfo=timezone.utc)
    for res in resources:
        if not isinstance(res, dict):
            continue
        facts.resources.append(res)
        rtype = res.get("resourceType")
        if rtype == "Patient":
            _read_patient(res, facts)
        elif rtype == "Condition":
            event = _read_condition(res)
            if event:
                facts.conditions.append(event)
        elif rtype == "Procedure":
            event = _read_procedure(res)
            if event:
                facts.procedures.append(event)
        elif rtype in ("MedicationRequest", "MedicationStatement"):
            med = _read_medication(res, knowledge)
            if med:
                facts.medications.append(med)
        elif rtype == "Observation":
            status = res.get("status")
            if not isinstance(status, str) or status not in _FINAL_OBSERVATION:
                continue
            observations.append(res)
            lab = _read_lab(res)
            if lab is None:
                continue
            facts.labs.append(lab)
            when = lab.when or epoch
            if HEIGHT_LOINC in lab.codes and lab.value is not None:
                factor = _HEIGHT_TO_CM.get((lab.unit or "cm").strip())
                if factor:
                    heights.append((when, lab.value * factor))
            if WEIGHT_LOINC in lab.codes and lab.value is not None:
                factor = _WEIGHT_TO_KG.get((lab.unit or "kg").strip())
                if factor:
                    weights.append((when, lab.value * factor))
        elif rtype == "Coverage":
            coverages.append(res)
    if heights:
        facts.height_cm = max(heights, key=lambda h: h[0])[1]
    if weights:
        facts.weight_kg = max(weights, key=lambda w: w[0])[1]
    if knowledge.pgx is not None and observations:
        from .genomics import read_genomic_results

        facts.genomics = read_genomic_results(observations, knowledge.pgx)
    facts.plan = _read_plan(coverages, today)
    return facts


def _read_patient(res: dict[str, Any], facts: PatientFacts) -> None:
    facts.birth_date = parse_date(res.get("birthDate"))
    gender = res.get("gender")
    facts.sex = gender if isinstance(gender, str) else None
    races: set[str] = set()
    for ext in _list(res.get("extension")):
        ext = _dict(ext)
        if ext.get("url") != US_CORE_RACE:
            continue
        for sub in _list(ext.get("extension")):
            sub = _dict(sub)
            if sub.get("url") == "ombCategory":
                code = _dict(sub.get("valueCoding")).get("code")
                races.add(OMB_RACE.get(code, "other") if isinstance(code, str) else "other")
    # IWPC: one recorded OMB group -> that group; none, several or other -> missing/mixed.
    facts.race = races.pop() if len(races) == 1 and "other" not in races else None


def _read_condition(res: dict[str, Any]) -> CodedEvent | None:
    codes = concept_codes(res.get("code"))
    if not codes:
        return None
    verification = concept_codes(res.get("verificationStatus"))
    if any(k.endswith(tuple(":" + s for s in _EXCLUDED_VERIFICATION)) for k in verification):
        return None
    clinical = {k.rsplit(":", 1)[-1] for k in concept_codes(res.get("clinicalStatus"))}
    when = parse_date(res.get("onsetDateTime")) or parse_date(res.get("recordedDate"))
    return CodedEvent(codes, when, active=not (clinical & _INACTIVE_CLINICAL), text=concept_text(res.get("code")))


def _read_procedure(res: dict[str, Any]) -> CodedEvent | None:
    codes = concept_codes(res.get("code"))
    if not codes or res.get("status") in ("entered-in-error", "not-done", "preparation"):
        return None
    when = parse_date(res.get("performedDateTime")) or parse_date(_dict(res.get("performedPeriod")).get("start"))
    return CodedEvent(codes, when, active=True, text=concept_text(res.get("code")))


def _read_medication(res: dict[str, Any], knowledge: Knowledge) -> MedicationFact | None:
    status = res.get("status")
    if status in ("entered-in-error", "draft", "cancelled", "not-taken"):
        return None
    codes = medication_codes(res)
    if not codes:
        return None
    when = (
        parse_date(res.get("authoredOn"))
        or parse_date(res.get("effectiveDateTime"))
        or parse_date(_dict(res.get("effectivePeriod")).get("start"))
    )
    return MedicationFact(
        knowledge.expand_codes(codes),
        when,
        active=status in ("active", "on-hold", "intended"),
        text=concept_text(res.get("medicationCodeableConcept")),
    )


def medication_codes(res: dict[str, Any]) -> frozenset[str]:
    """Codes of the medication, from the CodeableConcept or a contained Medication."""
    codes = concept_codes(res.get("medicationCodeableConcept"))
    if codes:
        return codes
    ref = _dict(res.get("medicationReference")).get("reference")
    if isinstance(ref, str) and ref.startswith("#"):
        for contained in _list(res.get("contained")):
            contained = _dict(contained)
            if contained.get("resourceType") == "Medication" and contained.get("id") == ref[1:]:
                return concept_codes(contained.get("code"))
    return frozenset()


def _read_lab(res: dict[str, Any]) -> LabResult | None:
    codes = concept_codes(res.get("code"))
    if not codes:
        return None
    when = parse_datetime(res.get("effectiveDateTime")) or parse_datetime(res.get("issued"))
    components = tuple(
        c for c in (_read_value(_dict(comp), concept_codes(_dict(comp).get("code")), when) for comp in _list(res.get("component")))
        if c is not None
    )
    base = _read_value(res, codes, when)
    if base is None:
        return None
    return LabResult(base.codes, base.value, base.unit, base.text, base.coded_value, when, components)


def _read_value(obj: dict[str, Any], codes: frozenset[str], when: datetime | None) -> LabResult | None:
    if not codes:
        return None
    qty = _dict(obj.get("valueQuantity"))
    value = _number(qty.get("value"))
    unit = qty.get("code") or qty.get("unit")
    text: str | None = None
    coded: frozenset[str] = frozenset()
    if "valueCodeableConcept" in obj:
        coded = concept_codes(obj.get("valueCodeableConcept"))
        text = concept_text(obj.get("valueCodeableConcept"))
    elif isinstance(obj.get("valueString"), str):
        text = obj["valueString"]
    elif _number(obj.get("valueInteger")) is not None:
        value = _number(obj.get("valueInteger"))
    return LabResult(codes, value, unit if isinstance(unit, str) else None, text, coded, when)


def _read_plan(coverages: list[dict[str, Any]], today: date) -> str | None:
    """Plan of the active Coverage: `class` of type plan, else the first payor reference."""
    for cov in coverages:
        if cov.get("status") not in (None, "active"):
            continue
        period = _dict(cov.get("period"))
        end = parse_date(period.get("end"))
        start = parse_date(period.get("start"))
        if (end and end < today) or (start and start > today):
            continue
        for cls in _list(cov.get("class")):
            cls = _dict(cls)
            if "plan" in {k.rsplit(":", 1)[-1] for k in concept_codes(cls.get("type"))}:
                value = cls.get("value")
                if isinstance(value, str) and value:
                    return value
        for payor in _list(cov.get("payor")):
            payor = _dict(payor)
            ident = _dict(payor.get("identifier")).get("value")
            if isinstance(ident, str):
                return ident
            if isinstance(payor.get("reference"), str):
                return str(payor["reference"]).rsplit("/", 1)[-1]
    return None


# -- draft orders -------------------------------------------------------------

_PER_DAY = {"d": 1.0, "h": 24.0, "wk": 1 / 7, "mo": 1 / 30, "min": 1440.0}


def build_draft_order(res: dict[str, Any], knowledge: Knowledge) -> DraftOrder:
    """One draft MedicationRequest / ServiceRequest (already schema-validated)."""
    rtype = str(res.get("resourceType"))
    if rtype == "MedicationRequest":
        own = medication_codes(res)
        display = concept_text(res.get("medicationCodeableConcept"))
    else:
        own = concept_codes(res.get("code"))
        display = concept_text(res.get("code"))
    dose_mg = per_day = None
    route: frozenset[str] = frozenset()
    dosage = _dict((_list(res.get("dosageInstruction")) or [{}])[0])
    if dosage:
        route = concept_codes(dosage.get("route"))
        for dr in _list(dosage.get("doseAndRate")):
            qty = _dict(_dict(dr).get("doseQuantity"))
            if (qty.get("code") or qty.get("unit")) == "mg":
                dose_mg = _number(qty.get("value"))
        repeat = _dict(_dict(dosage.get("timing")).get("repeat"))
        freq, period, unit = _number(repeat.get("frequency")), _number(repeat.get("period")), repeat.get("periodUnit")
        if freq and period and isinstance(unit, str) and unit in _PER_DAY:
            per_day = freq / period * _PER_DAY[unit]
    dispense = _dict(res.get("dispenseRequest"))
    quantity = _number(_dict(dispense.get("quantity")).get("value"))
    supply = _dict(dispense.get("expectedSupplyDuration"))
    days = _number(supply.get("value")) if supply.get("code", supply.get("unit")) in ("d", "day", "days") else None
    priority = res.get("priority")
    return DraftOrder(
        resource_type=rtype,
        resource_id=str(res.get("id", "")),
        concepts=knowledge.expand_codes(own) if rtype == "MedicationRequest" else own,
        display=display,
        priority=priority if isinstance(priority, str) else None,
        route=route,
        dose_mg=dose_mg,
        doses_per_day=per_day,
        quantity=quantity,
        days_supply=days,
        resource=res,
    )
