"""Named calculators that rules call with `calculator: {name: ...}`.

A calculator reads the normalised facts of the request (never FHIR JSON) and
returns values for card templates. Each one lives in its own module with
its own tests; this registry only adapts facts to its inputs.
"""

from __future__ import annotations

from typing import Any, Callable

from ..engine.conditions import EvalContext
from . import warfarin

#: RxNorm ingredients that change warfarin dosing in the IWPC equations.
ENZYME_INDUCERS = frozenset({"rxnorm:2002", "rxnorm:8183", "rxnorm:9384"})  # carbamazepine, phenytoin, rifampin
AMIODARONE = "rxnorm:703"


def _warfarin(ctx: EvalContext) -> dict[str, Any]:
    p = ctx.patient
    active = [m.concepts for m in p.medications if m.active]
    cyp2c9 = ctx.genomics.get("CYP2C9")
    vkorc1 = ctx.genomics.get("VKORC1")
    cyp4f2 = ctx.genomics.get("CYP4F2")
    inputs = warfarin.WarfarinInputs(
        age_years=p.age_years,
        height_cm=p.height_cm,
        weight_kg=p.weight_kg,
        race=p.race,
        cyp2c9_diplotype=cyp2c9.diplotype if cyp2c9 and cyp2c9.diplotype else None,
        vkorc1_genotype=_vkorc1(vkorc1.diplotype if vkorc1 else None),
        cyp4f2_t_carrier=("T" in _alleles(cyp4f2.diplotype)) if cyp4f2 and cyp4f2.diplotype else None,
        rs12777823_a_carrier=None,
        enzyme_inducer=any(c & ENZYME_INDUCERS for c in active),
        amiodarone=any(AMIODARONE in c for c in active),
        african_ancestry=p.race == "black",
    )
    est = warfarin.estimate(inputs)
    missing = ", ".join(est.missing)
    return {
        "equation": est.equation,
        "weekly": est.weekly_display() or "",
        "daily": f"{est.daily_mg:.1f}" if est.daily_mg is not None else "",
        "range": est.range_display() or "",
        "missing": missing,
        "has_dose": "yes" if est.weekly_mg is not None else "",
        "strength": est.strength,
        "inputs": _describe_inputs(inputs, est.unknown_terms),
        "adjustments": "; ".join(est.adjustments),
        "notes": " ".join(est.notes),
    }


def _describe_inputs(i: warfarin.WarfarinInputs, unknown_terms: list[str]) -> str:
    """The inputs as a physician reads them (what is missing says 'not on file')."""
    def num(value: float | None, unit: str) -> str:
        return f"{value:g} {unit}" if value is not None else "not on file"

    vkorc1 = {"GG": "G/G", "AG": "A/G", "AA": "A/A"}.get(i.vkorc1_genotype or "", "not on file")
    parts = [
        f"age {num(i.age_years, 'y')}",
        f"height {num(round(i.height_cm, 1) if i.height_cm else None, 'cm')}",
        f"weight {num(round(i.weight_kg, 1) if i.weight_kg else None, 'kg')}",
        f"CYP2C9 {i.cyp2c9_diplotype or 'not on file'}"
        + (" (IWPC 'unknown' term used)" if "CYP2C9 unknown" in unknown_terms else ""),
        f"VKORC1 -1639 {vkorc1}" + (" (IWPC 'unknown' term used)" if "VKORC1 unknown" in unknown_terms else ""),
        f"race {i.race or 'missing or mixed'}",
        f"amiodarone {'yes' if i.amiodarone else 'no'}",
        f"enzyme inducer {'yes' if i.enzyme_inducer else 'no'}",
    ]
    return ", ".join(parts)


def _alleles(genotype: str) -> str:
    """`"rs9923231 C/T"` -> `"CT"`: the genotype is the last token of the reader's text."""
    return genotype.split()[-1].replace("/", "").upper() if genotype.split() else ""


def _vkorc1(genotype: str | None) -> str | None:
    """Genomic rs9923231 C/T (minus-strand gene: C = -1639G, T = -1639A) -> IWPC's GG / AG / AA."""
    if not genotype:
        return None
    text = "".join(sorted(_alleles(genotype).translate(str.maketrans("CT", "GA"))))
    return text if text in ("GG", "AG", "AA") else None


CALCULATORS: dict[str, Callable[[EvalContext], dict[str, Any]]] = {
    warfarin.NAME: _warfarin,
}


def names() -> set[str]:
    return set(CALCULATORS)
