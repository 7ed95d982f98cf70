"""Tests for service.calculators.warfarin.

Expected doses are literals computed by hand (term by term, checked with
``bc``), NOT by calling the implementation.  Coefficients: IWPC NEJM 2009
(PMID 19228618) Suppl. §S1e (pharmacogenetic) / §S1f (clinical); CPIC 2017
warfarin Fig. 2 (PMID 28198005).  Age term = floor(age/10).

Reference patient R ("iwpc-01"): 65 y (decade 6), 170 cm, 70 kg, white,
CYP2C9 *1/*1, VKORC1 GG, no amiodarone, no enzyme inducer.

  pharmacogenetic common part for R:
    5.6044 - 0.2614*6 + 0.0087*170 + 0.0128*70
  = 5.6044 - 1.5684  + 1.4790    + 0.8960     = 6.4110
  weekly = 6.4110^2 = 41.100921 mg/week (daily 5.8716)

  clinical common part for R:
    4.0376 - 0.2546*6 + 0.0118*170 + 0.0134*70
  = 4.0376 - 1.5276  + 2.0060    + 0.9380     = 5.4540
  weekly = 5.4540^2 = 29.746116 mg/week
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from service.calculators import warfarin as w
from service.calculators.warfarin import WarfarinEstimate, WarfarinInputs, estimate

TOL = 0.05  # agree to 0.1 mg/week


def make(**overrides: Any) -> WarfarinInputs:
    base: dict[str, Any] = dict(
        age_years=65,
        height_cm=170.0,
        weight_kg=70.0,
        race="white",
        cyp2c9_diplotype="*1/*1",
        vkorc1_genotype="GG",
        cyp4f2_t_carrier=None,
        rs12777823_a_carrier=None,
        enzyme_inducer=False,
        amiodarone=False,
    )
    base.update(overrides)
    return WarfarinInputs(**base)


def weekly(est: WarfarinEstimate) -> float:
    assert est.weekly_mg is not None
    return est.weekly_mg


# --------------------------------------------------------------------------
# Cross-check iwpc-01
# --------------------------------------------------------------------------


def test_iwpc_01_cross_check() -> None:
    est = estimate(make())
    # 6.4110^2 = 41.100921
    assert weekly(est) == pytest.approx(41.10, abs=0.01)
    assert est.daily_mg == pytest.approx(41.100921 / 7, abs=0.001)  # 5.8716
    assert est.equation == "IWPC pharmacogenetic"
    assert est.strength == "strong"
    assert est.adjusted_range_weekly is None
    assert est.adjustments == []
    assert est.missing == []
    assert est.unknown_terms == []
    assert est.inputs_used["age_decades"] == "6"
    assert est.inputs_used["cyp2c9_equation_term"] == "*1/*1"
    assert est.inputs_used["vkorc1_equation_term"] == "GG"


def test_display_rounds_but_value_keeps_precision() -> None:
    est = estimate(make())
    assert est.weekly_display() == "41.1 mg/week"
    assert est.weekly_mg != round(weekly(est), 1)  # 41.100921..., not 41.1
    assert est.range_display() is None


def test_name() -> None:
    assert w.NAME == "warfarin_iwpc"


# --------------------------------------------------------------------------
# CYP2C9 categories (R otherwise)
# --------------------------------------------------------------------------

CYP2C9_CASES = [
    # diplotype, sqrt, weekly          arithmetic
    ("*1/*1", 41.1009),  # 6.4110            ^2 = 41.1009
    ("*1/*2", 34.6909),  # 6.4110 - 0.5211 = 5.8899 ^2 = 34.6909
    ("*1/*3", 29.9789),  # 6.4110 - 0.9357 = 5.4753 ^2 = 29.9789
    ("*2/*2", 28.6161),  # 6.4110 - 1.0616 = 5.3494 ^2 = 28.6161
    ("*2/*3", 20.1637),  # 6.4110 - 1.9206 = 4.4904 ^2 = 20.1637
    ("*3/*3", 16.6448),  # 6.4110 - 2.3312 = 4.0798 ^2 = 16.6448
    ("*3/*2", 20.1637),  # order-independent
]


@pytest.mark.parametrize(("diplotype", "expected"), CYP2C9_CASES)
def test_cyp2c9_categories(diplotype: str, expected: float) -> None:
    assert weekly(estimate(make(cyp2c9_diplotype=diplotype))) == pytest.approx(expected, abs=TOL)


def test_cyp2c9_missing_uses_unknown_term() -> None:
    # 6.4110 - 0.2188 = 6.1922 ; ^2 = 38.3433
    est = estimate(make(cyp2c9_diplotype=None))
    assert est.equation == "IWPC pharmacogenetic"
    assert weekly(est) == pytest.approx(38.3433, abs=TOL)
    assert est.missing == ["CYP2C9 genotype"]
    assert est.unknown_terms == ["CYP2C9 unknown"]
    assert est.strength == "not graded"
    assert any("outside the graded CPIC" in n for n in est.notes)


@pytest.mark.parametrize("diplotype", ["*1/*7", "*1/*99", "*10/*1", "1/3", "*1*3", "*1A/*3"])
def test_unrecognised_cyp2c9_allele_treated_as_unknown(diplotype: str) -> None:
    # same arithmetic as CYP2C9 unknown: 6.1922^2 = 38.3433
    est = estimate(make(cyp2c9_diplotype=diplotype))
    assert weekly(est) == pytest.approx(38.3433, abs=TOL)
    assert est.unknown_terms == ["CYP2C9 unknown"]
    assert est.inputs_used["cyp2c9_equation_term"] == "unknown"
    assert any("treated as unknown" in n for n in est.notes)
    assert est.adjusted_range_weekly is None
    assert est.strength == "not graded"


def test_cyp2c9_star9_normal_function_entered_as_star1() -> None:
    est = estimate(make(cyp2c9_diplotype="*1/*9"))
    assert weekly(est) == pytest.approx(41.1009, abs=TOL)
    assert est.adjusted_range_weekly is None
    assert est.strength == "strong"


# --------------------------------------------------------------------------
# VKORC1 categories
# --------------------------------------------------------------------------

VKORC1_CASES = [
    ("GG", 41.1009),  # 6.4110                ^2 = 41.1009
    ("AG", 30.7282),  # 6.4110 - 0.8677 = 5.5433 ^2 = 30.7282
    ("GA", 30.7282),  # spelling variant of AG
    ("A/G", 30.7282),
    ("AA", 22.2180),  # 6.4110 - 1.6974 = 4.7136 ^2 = 22.2180
]


@pytest.mark.parametrize(("genotype", "expected"), VKORC1_CASES)
def test_vkorc1_categories(genotype: str, expected: float) -> None:
    assert weekly(estimate(make(vkorc1_genotype=genotype))) == pytest.approx(expected, abs=TOL)


def test_vkorc1_missing_uses_unknown_term() -> None:
    # 6.4110 - 0.4854 = 5.9256 ; ^2 = 35.1127
    est = estimate(make(vkorc1_genotype=None))
    assert est.equation == "IWPC pharmacogenetic"
    assert weekly(est) == pytest.approx(35.1127, abs=TOL)
    assert est.missing == ["VKORC1 genotype"]
    assert est.unknown_terms == ["VKORC1 unknown"]
    assert est.strength == "not graded"


def test_invalid_vkorc1_rejected() -> None:
    with pytest.raises(ValueError):
        estimate(make(vkorc1_genotype="CT"))


# --------------------------------------------------------------------------
# Race categories, drugs
# --------------------------------------------------------------------------

RACE_CASES = [
    ("white", 41.1009),  # 6.4110                ^2 = 41.1009
    ("asian", 39.7127),  # 6.4110 - 0.1092 = 6.3018 ^2 = 39.7127
    ("black", 37.6382),  # 6.4110 - 0.2760 = 6.1350 ^2 = 37.6382
    (None, 39.7883),  # 6.4110 - 0.1032 = 6.3078 ^2 = 39.7883
    ("mixed", 39.7883),
]


@pytest.mark.parametrize(("race", "expected"), RACE_CASES)
def test_race_categories_pharmacogenetic(race: str | None, expected: float) -> None:
    est = estimate(make(race=race))
    assert weekly(est) == pytest.approx(expected, abs=TOL)
    if race in (None, "mixed"):
        assert est.unknown_terms == ["race missing or mixed"]


def test_invalid_race_rejected() -> None:
    with pytest.raises(ValueError):
        estimate(make(race="martian"))


def test_amiodarone() -> None:
    # 6.4110 - 0.5503 = 5.8607 ; ^2 = 34.3478
    assert weekly(estimate(make(amiodarone=True))) == pytest.approx(34.3478, abs=TOL)


def test_enzyme_inducer() -> None:
    # 6.4110 + 1.1816 = 7.5926 ; ^2 = 57.6476
    assert weekly(estimate(make(enzyme_inducer=True))) == pytest.approx(57.6476, abs=TOL)


def test_combined_patient_asian_13_aa_amiodarone() -> None:
    # 42 y -> decade 4; 160.5 cm; 55.3 kg; asian; *1/*3; AA; amiodarone
    # 5.6044 - 0.2614*4 + 0.0087*160.5 + 0.0128*55.3 - 1.6974 - 0.9357 - 0.1092 - 0.5503
    # 5.6044 - 1.0456   + 1.39635      + 0.70784      - 1.6974 - 0.9357 - 0.1092 - 0.5503 = 3.37039
    # 3.37039^2 = 11.3595
    est = estimate(
        make(age_years=42, height_cm=160.5, weight_kg=55.3, race="asian",
             cyp2c9_diplotype="*1/*3", vkorc1_genotype="AA", amiodarone=True)
    )
    assert weekly(est) == pytest.approx(11.3595, abs=TOL)


def test_combined_patient_black_22_ag_inducer() -> None:
    # 38 y -> decade 3; 185 cm; 102 kg; black (IWPC term only); *2/*2; AG; inducer
    # 5.6044 - 0.7842 + 1.6095 + 1.3056 - 0.8677 - 1.0616 - 0.2760 + 1.1816 = 6.7116
    # 6.7116^2 = 45.0456
    est = estimate(
        make(age_years=38, height_cm=185, weight_kg=102, race="black",
             cyp2c9_diplotype="*2/*2", vkorc1_genotype="AG", enzyme_inducer=True)
    )
    assert weekly(est) == pytest.approx(45.0456, abs=TOL)
    assert est.strength == "strong"  # african_ancestry False -> non-African branch
    assert any("african_ancestry" in n for n in est.notes)


# --------------------------------------------------------------------------
# Age convention
# --------------------------------------------------------------------------


@pytest.mark.parametrize(("age", "decades"), [(0, 0), (9, 0), (10, 1), (65, 6), (69, 6), (70, 7), (95, 9), (105, 9)])
def test_age_in_decades_is_floor_capped(age: int, decades: int) -> None:
    assert w.age_in_decades(age) == decades


def test_age_floor_changes_at_decade_boundary() -> None:
    # 69 -> decade 6: same as R = 41.1009
    assert weekly(estimate(make(age_years=69))) == pytest.approx(41.1009, abs=TOL)
    # 70 -> decade 7: 6.4110 - 0.2614 = 6.1496 ; ^2 = 37.8176
    assert weekly(estimate(make(age_years=70))) == pytest.approx(37.8176, abs=TOL)


# --------------------------------------------------------------------------
# Clinical equation
# --------------------------------------------------------------------------

CLINICAL_RACE_CASES = [
    ("white", 29.7461),  # 5.4540                ^2 = 29.7461
    ("asian", 22.8369),  # 5.4540 - 0.6752 = 4.7788 ^2 = 22.8369
    ("black", 34.3396),  # 5.4540 + 0.4060 = 5.8600 ^2 = 34.3396
    (None, 30.2313),  # 5.4540 + 0.0443 = 5.4983 ^2 = 30.2313
]


@pytest.mark.parametrize(("race", "expected"), CLINICAL_RACE_CASES)
def test_both_genes_missing_uses_clinical_equation(race: str | None, expected: float) -> None:
    est = estimate(make(race=race, cyp2c9_diplotype=None, vkorc1_genotype=None))
    assert est.equation == "IWPC clinical"
    assert weekly(est) == pytest.approx(expected, abs=TOL)
    assert est.missing == ["CYP2C9 genotype", "VKORC1 genotype"]
    assert "CYP2C9 unknown" not in est.unknown_terms
    assert "VKORC1 unknown" not in est.unknown_terms
    assert est.strength == "not graded"
    assert any("dose clinically" in n for n in est.notes)


def test_clinical_with_drugs() -> None:
    # 5.4540 + 1.2799 - 0.5695 = 6.1644 ; ^2 = 37.9998
    est = estimate(make(cyp2c9_diplotype=None, vkorc1_genotype=None, amiodarone=True, enzyme_inducer=True))
    assert weekly(est) == pytest.approx(37.9998, abs=TOL)


def test_clinical_elderly_asian_amiodarone() -> None:
    # 80 y -> 8; 155 cm; 48 kg; asian; amiodarone
    # 4.0376 - 0.2546*8 + 0.0118*155 + 0.0134*48 - 0.6752 - 0.5695
    # 4.0376 - 2.0368   + 1.8290     + 0.6432     - 0.6752 - 0.5695 = 3.2283 ; ^2 = 10.4219
    est = estimate(make(age_years=80, height_cm=155, weight_kg=48, race="asian",
                        cyp2c9_diplotype=None, vkorc1_genotype=None, amiodarone=True))
    assert weekly(est) == pytest.approx(10.4219, abs=TOL)


def test_uninterpretable_cyp2c9_and_missing_vkorc1_is_clinical() -> None:
    est = estimate(make(cyp2c9_diplotype="*1/*7", vkorc1_genotype=None))
    assert est.equation == "IWPC clinical"
    assert weekly(est) == pytest.approx(29.7461, abs=TOL)


def test_equation_functions_directly() -> None:
    pgx = w.iwpc_pharmacogenetic_sqrt_weekly(
        age_decades=6, height_cm=170, weight_kg=70, vkorc1="unknown", cyp2c9="unknown",
        race="white", enzyme_inducer=False, amiodarone=False,
    )
    # 6.4110 - 0.4854 - 0.2188 = 5.7068
    assert pgx == pytest.approx(5.7068, abs=1e-9)
    clin = w.iwpc_clinical_sqrt_weekly(
        age_decades=6, height_cm=170, weight_kg=70, race="white", enzyme_inducer=False, amiodarone=False,
    )
    assert clin == pytest.approx(5.4540, abs=1e-9)
    with pytest.raises(ValueError):
        w.iwpc_pharmacogenetic_sqrt_weekly(
            age_decades=6, height_cm=170, weight_kg=70, vkorc1="GG", cyp2c9="*1/*8",
            race="white", enzyme_inducer=False, amiodarone=False,
        )


# --------------------------------------------------------------------------
# Missing clinical data
# --------------------------------------------------------------------------


def test_missing_height_and_weight() -> None:
    est = estimate(make(height_cm=None, weight_kg=None))
    assert est.weekly_mg is None
    assert est.daily_mg is None
    assert est.adjusted_range_weekly is None
    assert est.missing == ["height", "weight"]
    assert est.weekly_display() is None


def test_missing_age_only() -> None:
    est = estimate(make(age_years=None, cyp2c9_diplotype="*1/*8"))
    assert est.weekly_mg is None
    assert est.missing == ["age"]
    assert est.adjusted_range_weekly is None
    assert est.adjustments  # the CPIC adjustment is still reported


def test_missing_everything() -> None:
    est = estimate(make(age_years=None, height_cm=None, weight_kg=None, cyp2c9_diplotype=None, vkorc1_genotype=None))
    assert est.weekly_mg is None
    assert est.missing == ["age", "height", "weight", "CYP2C9 genotype", "VKORC1 genotype"]
    assert est.equation == "IWPC clinical"


# --------------------------------------------------------------------------
# CPIC adjustments: CYP2C9 *5/*6/*8/*11
# --------------------------------------------------------------------------


def test_star8_carrier_non_african() -> None:
    # *1/*8 entered as *1/*1 -> 41.1009 ; decrease 15-30%:
    # low 41.1009*0.70 = 28.7706 ; high 41.1009*0.85 = 34.9358
    est = estimate(make(cyp2c9_diplotype="*1/*8"))
    assert weekly(est) == pytest.approx(41.1009, abs=TOL)
    assert est.adjusted_range_weekly is not None
    low, high = est.adjusted_range_weekly
    assert low == pytest.approx(28.7706, abs=TOL)
    assert high == pytest.approx(34.9358, abs=TOL)
    assert est.adjustments == ["CYP2C9 *8 carrier: decrease 15–30% (CPIC 2017, optional)"]
    assert est.strength == "strong"
    assert est.range_display() == "28.8–34.9 mg/week"
    assert est.inputs_used["cyp2c9_equation_term"] == "*1/*1"


def test_star8_homozygote() -> None:
    # 41.1009*0.60 = 24.6606 ; 41.1009*0.80 = 32.8807
    est = estimate(make(cyp2c9_diplotype="*8/*8"))
    assert est.adjusted_range_weekly == pytest.approx((24.6606, 32.8807), abs=TOL)
    assert "20–40%" in est.adjustments[0]


def test_star3_star8_enters_as_star1_star3() -> None:
    # *3/*8 -> *1/*3: 29.9789 ; *0.70 = 20.9852 ; *0.85 = 25.4821
    est = estimate(make(cyp2c9_diplotype="*3/*8"))
    assert weekly(est) == pytest.approx(29.9789, abs=TOL)
    assert est.adjusted_range_weekly == pytest.approx((20.9852, 25.4821), abs=TOL)
    # activity 0 + 0.5 = 0.5 -> poor metabolizer -> footnote e
    assert any("alternative anticoagulant" in n for n in est.notes)


def test_compound_star8_star11_uses_15_30_with_note() -> None:
    est = estimate(make(cyp2c9_diplotype="*8/*11"))
    assert est.adjusted_range_weekly == pytest.approx((28.7706, 34.9358), abs=TOL)
    assert any("footnote g" in n for n in est.notes)


@pytest.mark.parametrize("allele", ["*5", "*6", "*11"])
def test_other_fig2_alleles(allele: str) -> None:
    est = estimate(make(cyp2c9_diplotype=f"*1/{allele}"))
    assert est.adjusted_range_weekly == pytest.approx((28.7706, 34.9358), abs=TOL)
    assert not any("extrapolation" in n for n in est.notes)


def test_other_cpic_no_function_allele_is_extrapolation() -> None:
    est = estimate(make(cyp2c9_diplotype="*1/*13"))
    assert est.adjusted_range_weekly == pytest.approx((28.7706, 34.9358), abs=TOL)
    assert any("extrapolation" in n and "*13" in n for n in est.notes)


# --------------------------------------------------------------------------
# CYP4F2 and rs12777823 by ancestry
# --------------------------------------------------------------------------


def test_cyp4f2_t_carrier_non_african() -> None:
    # 41.1009*1.05 = 43.1560 ; 41.1009*1.10 = 45.2110
    est = estimate(make(cyp4f2_t_carrier=True))
    assert est.adjusted_range_weekly == pytest.approx((43.1560, 45.2110), abs=TOL)
    assert est.adjustments == ["CYP4F2 rs2108622 T carrier: increase 5–10% (CPIC 2017, optional)"]


def test_cyp4f2_and_star8_combined_multiplicatively() -> None:
    # 41.1009*0.70*1.05 = 30.2092 ; 41.1009*0.85*1.10 = 38.4294
    est = estimate(make(cyp2c9_diplotype="*1/*8", cyp4f2_t_carrier=True))
    assert est.adjusted_range_weekly == pytest.approx((30.2092, 38.4294), abs=TOL)
    assert len(est.adjustments) == 2


def african(**overrides: Any) -> WarfarinInputs:
    params: dict[str, Any] = dict(race="black", african_ancestry=True, cyp2c9_extended_alleles_tested=True)
    params.update(overrides)
    return make(**params)


def test_cyp4f2_t_carrier_african_not_applied() -> None:
    # base: 6.4110 - 0.2760 = 6.1350 ; ^2 = 37.6382
    est = estimate(african(cyp4f2_t_carrier=True, rs12777823_a_carrier=False))
    assert weekly(est) == pytest.approx(37.6382, abs=TOL)
    assert est.adjusted_range_weekly is None
    assert est.adjustments == []
    assert est.strength == "moderate"
    assert any("CYP4F2" in n for n in est.notes)


def test_rs12777823_a_carrier_african() -> None:
    # 37.6382*0.75 = 28.2287 ; 37.6382*0.90 = 33.8744
    est = estimate(african(rs12777823_a_carrier=True))
    assert est.adjusted_range_weekly == pytest.approx((28.2287, 33.8744), abs=TOL)
    assert est.adjustments[0].startswith("rs12777823 A carrier: decrease 10–25% (CPIC 2017, moderate")
    assert est.strength == "moderate"


def test_rs12777823_and_star8_african() -> None:
    # 37.6382*0.70*0.75 = 19.7601 ; 37.6382*0.85*0.90 = 28.7932
    est = estimate(african(cyp2c9_diplotype="*1/*8", rs12777823_a_carrier=True))
    assert est.adjusted_range_weekly == pytest.approx((19.7601, 28.7932), abs=TOL)
    assert est.adjustments[0] == "CYP2C9 *8 carrier: decrease 15–30% (CPIC 2017, moderate)"


def test_rs12777823_non_african_not_applied() -> None:
    est = estimate(make(rs12777823_a_carrier=True))
    assert est.adjusted_range_weekly is None
    assert any("rs12777823" in n for n in est.notes)


def test_african_without_extended_cyp2c9_testing_doses_clinically() -> None:
    # clinical, black: 5.4540 + 0.4060 = 5.8600 ; ^2 = 34.3396
    est = estimate(african(cyp2c9_extended_alleles_tested=None, rs12777823_a_carrier=True))
    assert est.equation == "IWPC clinical"
    assert weekly(est) == pytest.approx(34.3396, abs=TOL)
    assert est.adjusted_range_weekly is None
    assert est.strength == "not graded"
    assert any("footnote c" in n for n in est.notes)


def test_african_extended_testing_inferred_from_star8() -> None:
    est = estimate(african(cyp2c9_diplotype="*1/*8", cyp2c9_extended_alleles_tested=None))
    assert est.equation == "IWPC pharmacogenetic"
    # 37.6382*0.70 = 26.3468 ; 37.6382*0.85 = 31.9925
    assert est.adjusted_range_weekly == pytest.approx((26.3468, 31.9925), abs=TOL)


# --------------------------------------------------------------------------
# Footnotes
# --------------------------------------------------------------------------


@pytest.mark.parametrize("diplotype", ["*2/*3", "*3/*3"])
def test_poor_metabolizer_alternative_agent_note(diplotype: str) -> None:
    est = estimate(make(cyp2c9_diplotype=diplotype, vkorc1_genotype="AG"))
    assert any("alternative anticoagulant" in n and "VKORC1" in n for n in est.notes)


def test_intermediate_metabolizer_has_no_alternative_agent_note() -> None:
    est = estimate(make(cyp2c9_diplotype="*2/*2"))
    assert not any("alternative anticoagulant" in n for n in est.notes)


def test_estimate_is_frozen() -> None:
    est = estimate(make())
    with pytest.raises(dataclasses.FrozenInstanceError):
        est.weekly_mg = 1.0  # type: ignore[misc]
