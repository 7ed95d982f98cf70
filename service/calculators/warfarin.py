"""Warfarin maintenance-dose estimate: IWPC equations + CPIC 2017 genotype flow.

Pure calculator: no I/O, no FHIR.  Callers map patient data to
:class:`WarfarinInputs` and render :class:`WarfarinEstimate`.

Sources
-------
* International Warfarin Pharmacogenetics Consortium (IWPC). Estimation of the
  warfarin dose with clinical and pharmacogenetic data. N Engl J Med
  2009;360:753-64. PMID 19228618. Supplementary Appendix §S1e (pharmacogenetic
  algorithm) and §S1f (clinical algorithm).  The appendix PDF itself was not
  available to us; the coefficients below were cross-checked against
  independent open-source implementations that cite the IWPC paper
  (University of Pennsylvania ``WarfarinDosingOracle``; the ``reil`` IWPC
  dosing protocol; ``varun-tandon/WarfarinDosing`` for the clinical weights),
  which agree to four decimals.  Copies with different numbers circulate
  (e.g. *1/*3 -0.9636, *3/*3 -2.2499, amiodarone -0.5857); they are not used.
* Johnson JA et al. Clinical Pharmacogenetics Implementation Consortium (CPIC)
  guideline for pharmacogenetics-guided warfarin dosing: 2017 update.
  Clin Pharmacol Ther 2017;102:397-404. PMID 28198005.
  https://cpicpgx.org/guidelines/guideline-for-warfarin-and-cyp2c9-and-vkorc1/
  Figure 2 (adult flow and its footnotes a-h), checked against the figure
  source in cpicpgx/cpic-data (``src/main/design/diagram/warfarin``).
* CYP2C9 allele function / activity values: CPIC CYP2C9 allele functionality
  table as distributed in PharmCAT (``phenotype/CYP2C9.json``).

Design decisions (documented doubts)
------------------------------------
* **Age** enters the IWPC equations "in decades".  IWPC recorded age as decade
  bins (10-19 -> 1 ... 90+ -> 9), so we use ``floor(age / 10)`` capped at 9.
  Some implementations use ``age / 10`` instead; for a 65-year-old that changes
  the *1/*1 GG white estimate from 41.10 to 39.44 mg/week.  The appendix text
  was not available to settle this.
* **CYP2C9 alleles beyond *2/*3**: CPIC Fig. 2 says to calculate with the
  *2/*3-based algorithm and then reduce the dose 15-30 % for carriers of *5,
  *6, *8 or *11 (footnote g: 20-40 % may be needed in variant homozygotes).
  Those alleles are therefore entered as *1 in the IWPC equation.  Other
  alleles that CPIC assigns decreased or no function are handled the same way,
  flagged in ``notes`` as an extrapolation (Fig. 2 names only *5/*6/*8/*11).
  Alleles CPIC grades normal function (*9) are entered as *1.  Alleles with
  uncertain/unknown function, or names we cannot parse, make CYP2C9 "unknown"
  and the IWPC unknown term is used.
* **Homozygous** (20-40 %) means the same decreased/no-function allele twice
  (e.g. *8/*8).  CPIC Fig. 2 lists *8/*11 as an example for the 15-30 % box,
  so compound heterozygotes get 15-30 % with a note about footnote g.
* **Combining adjustments**: CPIC does not say how to combine several
  percentage changes; we multiply the factors (e.g. 0.70 x 0.75 for the lower
  bound) and say so in ``notes``.
* **African ancestry** (CPIC footnote c): if CYP2C9 *5, *6, *8 and *11 were
  not tested, CPIC says dose clinically, so the IWPC clinical equation is used.
  Testing is taken from ``cyp2c9_extended_alleles_tested``; when that is None
  it is inferred True only if the diplotype itself contains one of them.
  rs12777823 data derive from African Americans (West African origin); the
  ``african_ancestry`` flag is taken to mean that population.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "NAME",
    "WarfarinInputs",
    "WarfarinEstimate",
    "iwpc_pharmacogenetic_sqrt_weekly",
    "iwpc_clinical_sqrt_weekly",
    "age_in_decades",
    "estimate",
]

NAME: Final = "warfarin_iwpc"

CPIC_SOURCE: Final = (
    "CPIC 2017 warfarin guideline, Fig. 2 (PMID 28198005; "
    "https://cpicpgx.org/guidelines/guideline-for-warfarin-and-cyp2c9-and-vkorc1/)"
)
IWPC_SOURCE: Final = "IWPC, N Engl J Med 2009;360:753 (PMID 19228618), Suppl. §S1e/§S1f"

EQUATION_PGX: Final = "IWPC pharmacogenetic"
EQUATION_CLINICAL: Final = "IWPC clinical"

STRENGTH_STRONG: Final = "strong"
STRENGTH_MODERATE: Final = "moderate"
STRENGTH_OPTIONAL: Final = "optional"
STRENGTH_NOT_GRADED: Final = "not graded"

# --------------------------------------------------------------------------
# IWPC coefficients (sqrt of weekly dose in mg).
# --------------------------------------------------------------------------

_PGX_INTERCEPT: Final = 5.6044
_PGX_AGE_DECADES: Final = -0.2614
_PGX_HEIGHT_CM: Final = 0.0087
_PGX_WEIGHT_KG: Final = 0.0128
_PGX_VKORC1: Final[dict[str, float]] = {
    "GG": 0.0,
    "AG": -0.8677,
    "AA": -1.6974,
    "unknown": -0.4854,
}
_PGX_CYP2C9: Final[dict[str, float]] = {
    "*1/*1": 0.0,
    "*1/*2": -0.5211,
    "*1/*3": -0.9357,
    "*2/*2": -1.0616,
    "*2/*3": -1.9206,
    "*3/*3": -2.3312,
    "unknown": -0.2188,
}
_PGX_RACE: Final[dict[str, float]] = {
    "white": 0.0,
    "asian": -0.1092,
    "black": -0.2760,
    "missing_or_mixed": -0.1032,
}
_PGX_ENZYME_INDUCER: Final = 1.1816
_PGX_AMIODARONE: Final = -0.5503

_CLIN_INTERCEPT: Final = 4.0376
_CLIN_AGE_DECADES: Final = -0.2546
_CLIN_HEIGHT_CM: Final = 0.0118
_CLIN_WEIGHT_KG: Final = 0.0134
_CLIN_RACE: Final[dict[str, float]] = {
    "white": 0.0,
    "asian": -0.6752,
    "black": 0.4060,
    "missing_or_mixed": 0.0443,
}
_CLIN_ENZYME_INDUCER: Final = 1.2799
_CLIN_AMIODARONE: Final = -0.5695

_MAX_AGE_DECADE: Final = 9  # IWPC top bin "90+"

# --------------------------------------------------------------------------
# CYP2C9 allele function (CPIC activity values; PharmCAT CYP2C9.json).
# --------------------------------------------------------------------------

#: Normal function (activity 1.0): entered as *1.
_CYP2C9_NORMAL: Final = frozenset({1, 9})
#: The alleles CPIC 2017 Fig. 2 names for the 15-30 % decrease.
_CYP2C9_FIG2_NAMED: Final = frozenset({5, 6, 8, 11})
#: Decreased function (activity 0.5), other than *2.
_CYP2C9_DECREASED: Final = frozenset(
    {4, 5, 8, 11, 12, 14, 16, 23, 26, 28, 29, 30, 31, 37, 38, 44, 46, 50, 55, 61}
)
#: No function (activity 0), other than *3.
_CYP2C9_NO_FUNCTION: Final = frozenset({6, 13, 15, 24, 25, 33, 35, 39, 42, 43, 45, 52})
_CYP2C9_REDUCED_OTHER: Final = _CYP2C9_DECREASED | _CYP2C9_NO_FUNCTION
_CYP2C9_ACTIVITY: Final[dict[int, float]] = {
    **{n: 1.0 for n in _CYP2C9_NORMAL},
    2: 0.5,
    3: 0.0,
    **{n: 0.5 for n in _CYP2C9_DECREASED},
    **{n: 0.0 for n in _CYP2C9_NO_FUNCTION},
}

_ALLELE_RE: Final = re.compile(r"^\*(\d+)$")


@dataclass(frozen=True)
class WarfarinInputs:
    """Patient data for the warfarin estimate.

    ``race`` is the IWPC race term: "white", "asian", "black" or None
    (missing or mixed; "mixed"/"missing"/"unknown" are accepted as synonyms).
    ``cyp2c9_diplotype`` is a star-allele diplotype such as "*1/*3".
    ``vkorc1_genotype`` is VKORC1 -1639G>A (rs9923231): "GG", "AG" or "AA"
    ("GA" and "G/A"-style spellings are accepted).
    ``african_ancestry`` selects the CPIC Fig. 2 African-ancestry branch; it is
    deliberately separate from the IWPC ``race`` term.
    ``cyp2c9_extended_alleles_tested``: whether the CYP2C9 assay covered *5,
    *6, *8 and *11 (CPIC footnote c); None = not stated.
    """

    age_years: int | None
    height_cm: float | None
    weight_kg: float | None
    race: str | None
    cyp2c9_diplotype: str | None
    vkorc1_genotype: str | None
    cyp4f2_t_carrier: bool | None
    rs12777823_a_carrier: bool | None
    enzyme_inducer: bool
    amiodarone: bool
    african_ancestry: bool = False
    cyp2c9_extended_alleles_tested: bool | None = None


@dataclass(frozen=True)
class WarfarinEstimate:
    """Result of :func:`estimate`.

    ``weekly_mg``/``daily_mg`` and ``adjusted_range_weekly`` keep full
    precision; use :meth:`weekly_display` / :meth:`range_display` for the
    0.1 mg rounding shown to users.  ``adjusted_range_weekly`` is None when
    no CPIC percentage adjustment applies.
    """

    equation: str
    weekly_mg: float | None
    daily_mg: float | None
    adjusted_range_weekly: tuple[float, float] | None
    adjustments: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unknown_terms: list[str] = field(default_factory=list)
    strength: str = STRENGTH_NOT_GRADED
    inputs_used: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def weekly_display(self) -> str | None:
        """Weekly dose rounded to 0.1 mg, e.g. ``"41.1 mg/week"``."""
        if self.weekly_mg is None:
            return None
        return f"{self.weekly_mg:.1f} mg/week"

    def range_display(self) -> str | None:
        """Adjusted weekly range rounded to 0.1 mg, e.g. ``"28.8–34.9 mg/week"``."""
        if self.adjusted_range_weekly is None:
            return None
        low, high = self.adjusted_range_weekly
        return f"{low:.1f}–{high:.1f} mg/week"


# --------------------------------------------------------------------------
# Equations
# --------------------------------------------------------------------------


def age_in_decades(age_years: int) -> int:
    """IWPC age term: decade bin ``floor(age/10)``, capped at 9 (bin "90+").

    IWPC stored age as decade bins; whether the published equation expects the
    bin or ``age/10`` is not settled by the sources we could read (see module
    docstring).
    """
    if age_years < 0:
        raise ValueError(f"age_years must be >= 0, got {age_years}")
    return min(int(age_years) // 10, _MAX_AGE_DECADE)


def iwpc_pharmacogenetic_sqrt_weekly(
    *,
    age_decades: int,
    height_cm: float,
    weight_kg: float,
    vkorc1: str,
    cyp2c9: str,
    race: str,
    enzyme_inducer: bool,
    amiodarone: bool,
) -> float:
    """Square root of the weekly dose (mg) by the IWPC pharmacogenetic algorithm.

    IWPC NEJM 2009 (PMID 19228618), Supplementary Appendix §S1e.

    ``vkorc1``: "GG" | "AG" | "AA" | "unknown";
    ``cyp2c9``: "*1/*1" | "*1/*2" | "*1/*3" | "*2/*2" | "*2/*3" | "*3/*3" | "unknown";
    ``race``: "white" | "asian" | "black" | "missing_or_mixed".
    """
    return (
        _PGX_INTERCEPT
        + _PGX_AGE_DECADES * age_decades
        + _PGX_HEIGHT_CM * height_cm
        + _PGX_WEIGHT_KG * weight_kg
        + _lookup(_PGX_VKORC1, vkorc1, "vkorc1")
        + _lookup(_PGX_CYP2C9, cyp2c9, "cyp2c9")
        + _lookup(_PGX_RACE, race, "race")
        + (_PGX_ENZYME_INDUCER if enzyme_inducer else 0.0)
        + (_PGX_AMIODARONE if amiodarone else 0.0)
    )


def iwpc_clinical_sqrt_weekly(
    *,
    age_decades: int,
    height_cm: float,
    weight_kg: float,
    race: str,
    enzyme_inducer: bool,
    amiodarone: bool,
) -> float:
    """Square root of the weekly dose (mg) by the IWPC clinical algorithm.

    IWPC NEJM 2009 (PMID 19228618), Supplementary Appendix §S1f.
    ``race``: "white" | "asian" | "black" | "missing_or_mixed".
    """
    return (
        _CLIN_INTERCEPT
        + _CLIN_AGE_DECADES * age_decades
        + _CLIN_HEIGHT_CM * height_cm
        + _CLIN_WEIGHT_KG * weight_kg
        + _lookup(_CLIN_RACE, race, "race")
        + (_CLIN_ENZYME_INDUCER if enzyme_inducer else 0.0)
        + (_CLIN_AMIODARONE if amiodarone else 0.0)
    )


def _lookup(table: dict[str, float], key: str, what: str) -> float:
    try:
        return table[key]
    except KeyError:
        raise ValueError(f"unknown IWPC {what} category {key!r}; expected one of {sorted(table)}") from None


# --------------------------------------------------------------------------
# Input normalisation
# --------------------------------------------------------------------------


def _normalise_race(race: str | None) -> str:
    if race is None:
        return "missing_or_mixed"
    value = race.strip().lower()
    if value in ("white", "asian", "black"):
        return value
    if value in ("mixed", "missing", "unknown", "missing_or_mixed"):
        return "missing_or_mixed"
    raise ValueError(f"race must be 'white', 'asian', 'black' or None, got {race!r}")


def _normalise_vkorc1(genotype: str | None) -> str | None:
    if genotype is None:
        return None
    letters = re.sub(r"[\s/|]", "", genotype.upper())
    if len(letters) != 2 or set(letters) - {"A", "G"}:
        raise ValueError(f"vkorc1_genotype must be GG, AG or AA (-1639G>A), got {genotype!r}")
    return {"GG": "GG", "AG": "AG", "GA": "AG", "AA": "AA"}[letters]


@dataclass(frozen=True)
class _Cyp2c9:
    """Interpretation of a CYP2C9 diplotype for the IWPC equation + CPIC flow."""

    equation_term: str  # key into _PGX_CYP2C9
    reduced_other: tuple[int, ...]  # non-*2/*3 decreased/no-function alleles
    activity_score: float | None
    problem: str | None  # why CYP2C9 was treated as unknown


def _interpret_cyp2c9(diplotype: str) -> _Cyp2c9:
    parts = [p.strip() for p in diplotype.split("/")]
    if len(parts) != 2:
        return _Cyp2c9("unknown", (), None, f"CYP2C9 diplotype {diplotype!r} is not of the form '*A/*B'")
    numbers: list[int] = []
    for part in parts:
        match = _ALLELE_RE.match(part)
        if match is None:
            return _Cyp2c9("unknown", (), None, f"CYP2C9 allele {part!r} is not a recognised star allele")
        numbers.append(int(match.group(1)))
    unclassified = [n for n in numbers if n not in _CYP2C9_ACTIVITY]
    if unclassified:
        names = ", ".join(f"*{n}" for n in unclassified)
        return _Cyp2c9(
            "unknown",
            (),
            None,
            f"CYP2C9 {names} has uncertain/unknown function per CPIC (or is not in the CPIC table)",
        )
    equation_alleles: list[int] = []
    reduced_other: list[int] = []
    for n in numbers:
        if n in (2, 3):
            equation_alleles.append(n)
        else:
            equation_alleles.append(1)
            if n in _CYP2C9_REDUCED_OTHER:
                reduced_other.append(n)
    a, b = sorted(equation_alleles)
    activity = sum(_CYP2C9_ACTIVITY[n] for n in numbers)
    return _Cyp2c9(f"*{a}/*{b}", tuple(reduced_other), activity, None)


# --------------------------------------------------------------------------
# Estimate
# --------------------------------------------------------------------------


def _pct(low: float, high: float) -> str:
    return f"{round(low * 100)}–{round(high * 100)}%"


def estimate(inputs: WarfarinInputs) -> WarfarinEstimate:
    """Estimate the stable weekly warfarin dose and apply the CPIC 2017 flow.

    Sources: IWPC NEJM 2009 (PMID 19228618) Suppl. §S1e/§S1f; CPIC 2017
    warfarin guideline Fig. 2 (PMID 28198005,
    https://cpicpgx.org/guidelines/guideline-for-warfarin-and-cyp2c9-and-vkorc1/).

    Branches:

    * age, height or weight missing -> no number; ``missing`` names them.
    * neither CYP2C9 nor VKORC1 available -> "dose clinically" (CPIC footnote
      a): IWPC clinical equation.
    * African ancestry without CYP2C9 *5/*6/*8/*11 testing -> "dose
      clinically" (CPIC footnote c): IWPC clinical equation.
    * otherwise the IWPC pharmacogenetic equation, using the IWPC "unknown"
      term for a gene that is missing or uninterpretable, then the CPIC
      percentage adjustments for the ancestry branch.
    """
    missing: list[str] = []
    notes: list[str] = []
    unknown_terms: list[str] = []
    adjustments: list[str] = []
    inputs_used: dict[str, str] = {}

    race = _normalise_race(inputs.race)
    vkorc1 = _normalise_vkorc1(inputs.vkorc1_genotype)
    cyp = _interpret_cyp2c9(inputs.cyp2c9_diplotype) if inputs.cyp2c9_diplotype is not None else None

    for name, value in (("age", inputs.age_years), ("height", inputs.height_cm), ("weight", inputs.weight_kg)):
        if value is None:
            missing.append(name)
        elif value < 0 or (name != "age" and value == 0):
            raise ValueError(f"{name} must be positive, got {value}")
    if inputs.cyp2c9_diplotype is None:
        missing.append("CYP2C9 genotype")
    if vkorc1 is None:
        missing.append("VKORC1 genotype")

    african = inputs.african_ancestry
    branch = "African ancestry" if african else "non-African ancestry"
    inputs_used["cpic_branch"] = branch
    inputs_used["race_term"] = race
    inputs_used["enzyme_inducer"] = "yes" if inputs.enzyme_inducer else "no"
    inputs_used["amiodarone"] = "yes" if inputs.amiodarone else "no"
    if inputs.age_years is not None:
        inputs_used["age_years"] = str(inputs.age_years)
        inputs_used["age_decades"] = str(age_in_decades(inputs.age_years))
    if inputs.height_cm is not None:
        inputs_used["height_cm"] = f"{inputs.height_cm:g}"
    if inputs.weight_kg is not None:
        inputs_used["weight_kg"] = f"{inputs.weight_kg:g}"
    if inputs.cyp2c9_diplotype is not None:
        inputs_used["cyp2c9_diplotype"] = inputs.cyp2c9_diplotype
    if vkorc1 is not None:
        inputs_used["vkorc1_-1639"] = vkorc1
    if inputs.cyp4f2_t_carrier is not None:
        inputs_used["cyp4f2_rs2108622_t_carrier"] = "yes" if inputs.cyp4f2_t_carrier else "no"
    if inputs.rs12777823_a_carrier is not None:
        inputs_used["rs12777823_a_carrier"] = "yes" if inputs.rs12777823_a_carrier else "no"

    if race == "black" and not african:
        notes.append(
            "Race 'black' is used for the IWPC race term only; the CPIC African-ancestry branch "
            "is selected by african_ancestry, which is False."
        )
    if race == "missing_or_mixed":
        unknown_terms.append("race missing or mixed")
    if inputs.age_years is not None and inputs.age_years < 18:
        notes.append(
            "CPIC 2017 Fig. 2 and the IWPC equations are for adults; CPIC gives separate "
            "pediatric recommendations (Fig. 3)."
        )
    if cyp is not None and cyp.problem is not None:
        notes.append(f"{cyp.problem}: CYP2C9 treated as unknown (IWPC unknown term).")

    # ---- which CPIC branch / equation ---------------------------------
    cyp_known = cyp is not None and cyp.problem is None
    extended_tested = inputs.cyp2c9_extended_alleles_tested
    if extended_tested is None:
        extended_tested = (
            cyp is not None
            and cyp.problem is None
            and any(n in _CYP2C9_FIG2_NAMED for n in cyp.reduced_other)
        )

    use_clinical = False
    strength = STRENGTH_NOT_GRADED
    if not cyp_known and vkorc1 is None:
        use_clinical = True
        notes.append(
            "VKORC1 and CYP2C9 genotypes not available (or not interpretable): CPIC says dose clinically "
            "(no genetic information); IWPC clinical equation used."
        )
    elif african and not extended_tested:
        use_clinical = True
        notes.append(
            "African ancestry: CPIC footnote c says to dose clinically if CYP2C9 *5, *6, *8 and *11 "
            "were not tested; IWPC clinical equation used. Set cyp2c9_extended_alleles_tested=True "
            "when the assay covered them."
        )
    elif cyp_known and vkorc1 is not None:
        strength = STRENGTH_MODERATE if african else STRENGTH_STRONG
    else:
        notes.append(
            "CPIC Fig. 2 requires both VKORC1 -1639G>A and CYP2C9 *2/*3 results for an algorithm dose; "
            "with one missing or uninterpretable, the IWPC 'unknown' term is used and the estimate is "
            "outside the graded CPIC recommendation."
        )

    equation = EQUATION_CLINICAL if use_clinical else EQUATION_PGX
    if use_clinical and (cyp is not None or vkorc1 is not None):
        notes.append("Available genotype results are not used by the IWPC clinical equation.")

    # ---- base dose ------------------------------------------------------
    weekly: float | None = None
    if inputs.age_years is not None and inputs.height_cm is not None and inputs.weight_kg is not None:
        decades = age_in_decades(inputs.age_years)
        if use_clinical:
            root = iwpc_clinical_sqrt_weekly(
                age_decades=decades,
                height_cm=float(inputs.height_cm),
                weight_kg=float(inputs.weight_kg),
                race=race,
                enzyme_inducer=inputs.enzyme_inducer,
                amiodarone=inputs.amiodarone,
            )
        else:
            vkorc1_term = vkorc1 if vkorc1 is not None else "unknown"
            cyp_term = cyp.equation_term if cyp is not None else "unknown"
            root = iwpc_pharmacogenetic_sqrt_weekly(
                age_decades=decades,
                height_cm=float(inputs.height_cm),
                weight_kg=float(inputs.weight_kg),
                vkorc1=vkorc1_term,
                cyp2c9=cyp_term,
                race=race,
                enzyme_inducer=inputs.enzyme_inducer,
                amiodarone=inputs.amiodarone,
            )
        if root <= 0:
            notes.append("IWPC equation gave a non-positive square root; no dose reported.")
        else:
            weekly = root * root
    else:
        notes.append("Age, height and weight are all required by the IWPC equations; no dose calculated.")

    if not use_clinical:
        inputs_used["vkorc1_equation_term"] = vkorc1 if vkorc1 is not None else "unknown"
        inputs_used["cyp2c9_equation_term"] = cyp.equation_term if cyp is not None else "unknown"
        if vkorc1 is None:
            unknown_terms.append("VKORC1 unknown")
        if cyp is None or cyp.problem is not None:
            unknown_terms.append("CYP2C9 unknown")

    # ---- CPIC percentage adjustments (PGx branch only) -----------------
    factors: list[tuple[float, float]] = []  # (low multiplier, high multiplier)
    if not use_clinical:
        if cyp is not None and cyp.reduced_other:
            alleles = cyp.reduced_other
            names = "/".join(f"*{n}" for n in alleles)
            homozygous = len(alleles) == 2 and alleles[0] == alleles[1]
            low_cut, high_cut = (0.20, 0.40) if homozygous else (0.15, 0.30)
            grade = STRENGTH_MODERATE if african else STRENGTH_OPTIONAL
            kind = "homozygote" if homozygous else "carrier"
            adjustments.append(
                f"CYP2C9 {names} {kind}: decrease {_pct(low_cut, high_cut)} (CPIC 2017, {grade})"
            )
            factors.append((1.0 - high_cut, 1.0 - low_cut))
            notes.append(f"CYP2C9 {names} entered as *1 in the IWPC equation before the CPIC decrease.")
            if len(alleles) == 2 and not homozygous:
                notes.append(
                    "Two different decreased/no-function alleles: CPIC Fig. 2 lists e.g. *8/*11 under "
                    "15–30%; footnote g notes a larger reduction (20–40%) might be needed in variant homozygotes."
                )
            extrapolated = [n for n in alleles if n not in _CYP2C9_FIG2_NAMED]
            if extrapolated:
                notes.append(
                    "CPIC 2017 Fig. 2 names only *5, *6, *8 and *11; applying its decrease to "
                    + ", ".join(f"*{n}" for n in sorted(set(extrapolated)))
                    + " (decreased/no function in the CPIC CYP2C9 allele table) is an extrapolation."
                )
        if african:
            if inputs.cyp4f2_t_carrier:
                notes.append("CYP4F2 rs2108622 T carrier: CPIC makes no CYP4F2 adjustment for African ancestry.")
            if inputs.rs12777823_a_carrier:
                adjustments.append(
                    f"rs12777823 A carrier: decrease 10–25% (CPIC 2017, {STRENGTH_MODERATE}; "
                    "data from African Americans of West African origin)"
                )
                factors.append((0.75, 0.90))
            elif inputs.rs12777823_a_carrier is None:
                notes.append("rs12777823 not tested; CPIC advises a 10–25% decrease for A carriers of African ancestry.")
        else:
            if inputs.cyp4f2_t_carrier:
                adjustments.append(f"CYP4F2 rs2108622 T carrier: increase 5–10% (CPIC 2017, {STRENGTH_OPTIONAL})")
                factors.append((1.05, 1.10))
            if inputs.rs12777823_a_carrier:
                notes.append("rs12777823 A carrier: CPIC applies this adjustment only in the African-ancestry branch.")
    else:
        if inputs.cyp4f2_t_carrier or inputs.rs12777823_a_carrier or (cyp is not None and cyp.reduced_other):
            notes.append("CPIC percentage adjustments modify an algorithm (pharmacogenetic) dose; not applied here.")

    if len(factors) > 1:
        notes.append("Several CPIC adjustments combined by multiplying their factors (CPIC gives no combination rule).")

    adjusted: tuple[float, float] | None = None
    if weekly is not None and factors:
        low = weekly * math.prod(f[0] for f in factors)
        high = weekly * math.prod(f[1] for f in factors)
        adjusted = (low, high)

    # ---- footnotes ------------------------------------------------------
    if cyp is not None and cyp.problem is None and cyp.activity_score is not None and cyp.activity_score <= 0.5:
        if vkorc1 in ("AG", "AA"):
            notes.append(
                "CYP2C9 poor metabolizer with VKORC1 A allele: CPIC footnote e advises considering an "
                "alternative anticoagulant."
            )
        else:
            notes.append("CYP2C9 poor metabolizer: CPIC footnote e advises considering an alternative anticoagulant.")
    if not use_clinical:
        notes.append("Algorithms target INR 2–3 (CPIC footnote d).")
        if african:
            notes.append(
                "A pharmacogenetic loading-dose algorithm (EU-PACT) may be considered (CPIC, optional); "
                "it has not been validated in people of African ancestry."
            )
        else:
            notes.append("A pharmacogenetic loading-dose algorithm (EU-PACT) may be considered (CPIC, optional).")

    return WarfarinEstimate(
        equation=equation,
        weekly_mg=weekly,
        daily_mg=None if weekly is None else weekly / 7.0,
        adjusted_range_weekly=adjusted,
        adjustments=adjustments,
        missing=missing,
        unknown_terms=unknown_terms,
        strength=strength,
        inputs_used=inputs_used,
        notes=notes,
    )
