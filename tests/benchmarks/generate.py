"""Reproducible benchmark data: rule packs, a knowledge folder, patients and hook requests.

Everything is a pure function of (seed, scale, anchor date): the same arguments
write byte-identical files. Usage:

    .venv/bin/python -m tests.benchmarks.generate --out /tmp/pcds-bench --rules 1200 --patient 250

Design (see README.md for the reasoning):

* Vocabulary grows with the rule count, the way real pack sets grow (more
  drugs and tests, not more rules per drug): ``max(32, rules // 4)`` generated
  ingredients in ATC level-4 classes of six, ``max(12, rules // 25)``
  orderable LOINC services. Drug *i*, class *j*, value set *v* ... do not
  depend on the scale, so the benchmark orders (drugs 0-15, services 0-3)
  mean the same thing at 100, 1,200 and 10,000 rules.
* Rules: mostly keyed to drug ingredients (rxnorm) and ATC classes, some to
  ServiceRequest LOINC codes, a small share (``ANY_MEDICATION_SHARE``) to
  ``any_medication`` / ``any_service`` with diagnosis, lab and coverage
  conditions. Conditions mix genotype (phenotype, on_file, HLA allele), lab
  (value, missing, look-back), diagnosis value sets, medication history,
  coverage, age and draft-order dose. Cards carry en + zh-CN text, sources,
  suggestions, override reasons and links. Every pack must pass the real lint
  (`build_ruleset` with no error); `run.py` checks that.
* Knowledge: a copy of the repository's ``knowledge/`` plus generated drugs,
  value sets and genetic tests in extra files.
* Patients: ~250 resources (~100-150 KB of prefetch) and ~1,000 resources.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import uuid
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
SEED = 20261122
RULES_PER_PACK = 30
ANY_MEDICATION_SHARE = 0.015
ANY_SERVICE_SHARE = 0.005
PATIENT_ID = "bench-patient-001"
FHIR_BASE = "https://ehr.example.org/fhir"

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10 = "http://hl7.org/fhir/sid/icd-10"
HGNC = "http://www.genenames.org"
UCUM = "http://unitsofmeasure.org"

#: CPIC phenotype names per gene, as the repository's knowledge/pgx tables produce them.
PHENOTYPES: dict[str, list[str]] = {
    "CYP2C19": ["Poor Metabolizer", "Likely Poor Metabolizer", "Intermediate Metabolizer",
                "Likely Intermediate Metabolizer", "Rapid Metabolizer", "Ultrarapid Metabolizer"],
    "CYP2C9": ["Poor Metabolizer", "Intermediate Metabolizer"],
    "CYP2D6": ["Poor Metabolizer", "Intermediate Metabolizer", "Ultrarapid Metabolizer"],
    "DPYD": ["Poor Metabolizer", "Intermediate Metabolizer"],
    "TPMT": ["Poor Metabolizer", "Intermediate Metabolizer", "Possible Intermediate Metabolizer"],
    "NUDT15": ["Poor Metabolizer", "Intermediate Metabolizer", "Possible Intermediate Metabolizer"],
    "SLCO1B1": ["Poor Function", "Decreased Function", "Possible Decreased Function"],
}
GENE_HGNC = {"CYP2C19": "HGNC:2621", "CYP2C9": "HGNC:2623", "CYP2D6": "HGNC:2625", "DPYD": "HGNC:3012",
             "TPMT": "HGNC:12014", "NUDT15": "HGNC:23063", "SLCO1B1": "HGNC:10959", "VKORC1": "HGNC:23663",
             "CYP4F2": "HGNC:2645", "HLA-B": "HGNC:4932"}
#: Genetic tests added to knowledge (CYP2C19 is already in the repository's file).
GENE_TESTS = {"CYP2C9": "loinc:46724-1", "CYP2D6": "loinc:57134-9", "DPYD": "loinc:93200-4",
              "TPMT": "loinc:51960-3", "NUDT15": "loinc:96370-2", "SLCO1B1": "loinc:79714-2"}
GENE_ZH = {"CYP2C9": "CYP2C9 基因型检测", "CYP2D6": "CYP2D6 基因型检测", "DPYD": "DPYD 基因型检测",
           "TPMT": "TPMT 基因型检测", "NUDT15": "NUDT15 基因型检测", "SLCO1B1": "SLCO1B1 基因型检测"}
HLA_ALLELES = ["HLA-B*15:02", "HLA-B*58:01", "HLA-B*57:01"]
PLANS = ["cn-urban-employee", "cn-urban-rural-resident", "commercial-gold", "commercial-silver",
         "medicare-part-d", "self-pay"]
PATIENT_PLAN = "cn-urban-employee"

ATC_FIRST = "ACDGJLMNRS"  # no B: keeps clear of the repository's B01AC / B01AA drugs
ICD_CHAPTERS = "EIJKNMGF"

RULE_KINDS: list[tuple[str, float]] = [
    ("pgx", 0.34), ("pgx-test", 0.08), ("hla", 0.04), ("lab", 0.16), ("lab-missing", 0.06),
    ("formulary", 0.08), ("interaction", 0.08), ("dose", 0.04), ("service", 0.08),
]


# -----------------------------------------------------------------------------
# Vocabulary
# -----------------------------------------------------------------------------


def n_drugs(rules: int) -> int:
    return max(32, rules // 4)


def n_services(rules: int) -> int:
    return max(12, rules // 25)


def atc_class(j: int) -> str:
    """Distinct, well-formed ATC level-4 codes (e.g. C12AA) for class j."""
    return f"{ATC_FIRST[j % 10]}{10 + (j // 10) % 90:02d}{'ABCDEFGH'[(j // 900) % 8]}{'ABCDEFGHJK'[(j // 7200) % 10]}"


@dataclass(frozen=True)
class DrugDef:
    index: int
    ingredient: str
    products: tuple[tuple[str, str, int], ...]  # (code, display, strength mg)
    atc: str
    name_en: str
    name_zh: str

    @property
    def cls(self) -> int:
        return self.index // 6


def drug(i: int) -> DrugDef:
    rng = random.Random(f"{SEED}:drug:{i}")
    strengths = sorted(rng.sample([1, 2, 5, 10, 20, 25, 40, 50, 75, 100, 150, 200, 250, 500], 2))
    name = f"benchdrug-{i:04d}"
    products = tuple(
        (f"rxnorm:{7600000 + 2 * i + k}", f"{name} {mg} MG Oral Tablet", mg) for k, mg in enumerate(strengths)
    )
    return DrugDef(i, f"rxnorm:{7100000 + i}", products, f"{atc_class(i // 6)}{i % 6 + 1:02d}", name, f"测试药物{i:04d}")


@dataclass(frozen=True)
class ValueSetDef:
    id: str
    title: str
    codes: tuple[str, ...]
    member: tuple[str, str]  # (FHIR system, code) of a diagnosis that falls in the set


def valueset(v: int) -> ValueSetDef:
    rng = random.Random(f"{SEED}:vs:{v}")
    letter = ICD_CHAPTERS[v % len(ICD_CHAPTERS)]
    base = 10 + (v * 7) % 89
    codes = [f"icd10:{letter}{base:02d}*"]
    for k in range(rng.randint(1, 4)):
        codes.append(f"icd10:{letter}{(base + 1 + k) % 100:02d}.{rng.randint(0, 9)}")
    if rng.random() < 0.4:
        codes.append(f"snomed:{4400000 + v * 101}")
    return ValueSetDef(f"bench-dx-{v:02d}", f"Benchmark diagnosis group {v:02d}", tuple(codes),
                       (ICD10, f"{letter}{base:02d}.{rng.randint(0, 9)}"))


N_VALUESETS = 40


@dataclass(frozen=True)
class LabDef:
    code: str  # loinc:xxxxx-x
    name: str
    unit: str
    low: float
    high: float


def lab(k: int) -> LabDef:
    rng = random.Random(f"{SEED}:lab:{k}")
    low = round(rng.uniform(0.5, 80), 1)
    return LabDef(f"loinc:{10000 + k * 37}-{k % 10}", f"Analyte {k:02d}",
                  rng.choice(["mg/dL", "mmol/L", "U/L", "g/L", "10*9/L", "umol/L"]), low, round(low * rng.uniform(1.5, 3), 1))


N_LABS = 60


def service(k: int) -> tuple[str, str]:
    return f"loinc:{80000 + k * 13}-{k % 10}", f"Benchmark order panel {k:03d}"


OVERRIDE_POOL = [
    ("benefit-outweighs-risk", "Benefit outweighs risk", "获益大于风险"),
    ("patient-preference", "Patient declines the alternative", "患者拒绝替代方案"),
    ("result-elsewhere", "Result available outside this record", "结果在院外记录中"),
    ("monitoring-planned", "Close monitoring planned", "已计划密切监测"),
    ("short-course", "Short course; change would not alter management", "短期用药，调整不改变治疗"),
]


# -----------------------------------------------------------------------------
# Knowledge folder
# -----------------------------------------------------------------------------


def _dump(path: Path, doc: Any, header: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(doc, allow_unicode=True, sort_keys=False, width=120, default_flow_style=None)
    path.write_text(header + text, encoding="utf-8")


def write_knowledge(dest: Path, rules: int) -> None:
    """Copy the repository's knowledge/ and add generated drugs, value sets and genetic tests."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(REPO / "knowledge", dest)
    header = "# Generated by tests/benchmarks/generate.py: synthetic, for benchmarks only.\n"
    drugs = []
    for i in range(n_drugs(rules)):
        d = drug(i)
        drugs.append({
            "ingredient": d.ingredient,
            "name": {"en": d.name_en, "zh-CN": d.name_zh},
            "atc": [d.atc],
            "nhsa": [f"XB{d.atc}{i:05d}A"],
            "products": [
                {"code": code, "display": display,
                 "dosage": {"en": f"{mg} mg by mouth once daily", "zh-CN": f"每日一次口服 {mg} mg"}}
                for code, display, mg in d.products
            ],
        })
    _dump(dest / "bench-drugs.yaml", {"kind": "drugs", "version": "bench-1", "drugs": drugs}, header)
    vsets = [{"id": v.id, "title": v.title, "codes": list(v.codes)} for v in map(valueset, range(N_VALUESETS))]
    _dump(dest / "valuesets" / "bench-valuesets.yaml", {"kind": "valuesets", "version": "bench-1", "valuesets": vsets}, header)
    tests = [{"gene": g, "code": c, "display": {"en": f"{g} gene allele analysis (genotype)", "zh-CN": GENE_ZH[g]}}
             for g, c in GENE_TESTS.items()]
    _dump(dest / "bench-genetic-tests.yaml", {"kind": "genetic-tests", "version": "bench-1", "tests": tests}, header)


# -----------------------------------------------------------------------------
# Rule packs
# -----------------------------------------------------------------------------


def _text(en: str, zh: str) -> dict[str, str]:
    return {"en": en, "zh-CN": zh}


class _Counters:
    def __init__(self) -> None:
        self.ingredient = 0
        self.cls = 0
        self.service = 0


def _drug_trigger(rng: random.Random, c: _Counters, rules: int, class_share: float = 0.3) -> tuple[dict[str, Any], DrugDef, list[str]]:
    """Trigger on an ingredient (round robin over drugs) or an ATC class (round robin over classes)."""
    d_count = n_drugs(rules)
    if rng.random() < class_share:
        j = c.cls % ((d_count + 5) // 6)
        c.cls += 1
        members = [drug(i) for i in range(6 * j, min(6 * j + 6, d_count))]
        code = atc_class(j)
        key = f"atc:{code}*" if rng.random() < 0.85 else f"atc:{code[:4]}*"
        return {"medication": [key]}, members[0], [m.ingredient for m in members]
    d = drug(c.ingredient % d_count)
    c.ingredient += 1
    keys = [d.ingredient]
    if rng.random() < 0.15:
        keys.append(d.products[0][0])
    return {"medication": keys}, d, [d.ingredient]


def _alternative(d: DrugDef, rules: int) -> DrugDef:
    """Another drug of the same class (or the next drug) as a replacement suggestion."""
    d_count = n_drugs(rules)
    first = 6 * d.cls
    others = [i for i in range(first, min(first + 6, d_count)) if i != d.index]
    return drug(others[0] if others else (d.index + 1) % d_count)


def _overrides(rng: random.Random) -> list[dict[str, Any]]:
    return [{"code": code, "display": _text(en, zh)} for code, en, zh in rng.sample(OVERRIDE_POOL, rng.randint(1, 3))]


def _links(rng: random.Random, r: int) -> list[dict[str, Any]]:
    return [{"label": _text(f"Guideline section {r % 97}", f"指南第 {r % 97} 节"),
             "url": f"https://guidelines.example.org/bench/section-{r % 97}"}]


def make_rule(r: int, rules: int, c: _Counters, sources: list[str]) -> dict[str, Any]:
    rng = random.Random(f"{SEED}:rule:{r}")
    roll = rng.random()
    if roll < ANY_MEDICATION_SHARE:
        kind = "any-medication"
    elif roll < ANY_MEDICATION_SHARE + ANY_SERVICE_SHARE:
        kind = "any-service"
    else:
        kind = rng.choices([k for k, _ in RULE_KINDS], [w for _, w in RULE_KINDS])[0]
    rid = f"bench-r{r:05d}-{kind}"
    tag = f"R{r:05d}"
    vs = valueset(rng.randrange(N_VALUESETS))
    lb = lab(rng.randrange(N_LABS))
    source = rng.choice(sources)
    rule: dict[str, Any] = {"id": rid, "title": f"Benchmark rule {r} ({kind})"}
    card: dict[str, Any]
    suggestions: list[dict[str, Any]] = []
    indicator = rng.choice(["warning", "warning", "info", "critical"])

    if kind in ("any-medication", "any-service"):
        trigger: dict[str, Any] = {"any_medication": True} if kind == "any-medication" else {"any_service": True}
        conds: list[dict[str, Any]] = [{"diagnosis": {"valueset": vs.id, "active": True}}]
        if rng.random() < 0.5:
            conds.append({"lab": {"code": lb.code, "value": {"lt": lb.low}, "within_days": 90}})
        else:
            conds.append({"coverage": {"plan": rng.sample(PLANS, 2)}})
        when: dict[str, Any] = {"all": conds}
        what = "{{order.drug}}" if kind == "any-medication" else "this order"
        what_zh = "{{order.drug}}" if kind == "any-medication" else "该医嘱"
        card = {"summary": _text(f"{vs.id}: review {what} ({tag})", f"{vs.id}：请复核{what_zh}（{tag}）"),
                "detail": _text(f"The patient has an active diagnosis in *{vs.title}*. Review {what} against local policy.",
                                f"患者有活动性诊断（{vs.id}）。请根据本院政策复核{what_zh}。")}
        if kind == "any-medication":
            suggestions.append({"label": _text("Remove the draft order", "删除草稿医嘱"), "delete_order": True})
    elif kind == "service":
        k = c.service % n_services(rules)
        c.service += 1
        code, name = service(k)
        trigger = {"service": [code]}
        sub = rng.choice(["duplicate-test", "recent-lab", "prior-auth", "indication"])
        if sub == "duplicate-test":
            gene = rng.choice(list(PHENOTYPES))
            when = {"genotype": {"gene": gene, "on_file": True}}
            card = {"summary": _text(f"{gene} already on file ({{{{{gene}.phenotype}}}}): test again? ({tag})",
                                     f"已有 {gene} 结果（{{{{{gene}.phenotype}}}}）：是否需要重复检测？（{tag}）")}
            suggestions.append({"label": _text("Cancel the duplicate test", "取消重复检测"), "delete_order": True, "recommended": True})
        elif sub == "recent-lab":
            when = {"lab": {"code": lb.code, "within_days": rng.choice([7, 30, 90])}}
            card = {"summary": _text(f"{lb.name} was measured recently ({tag})", f"近期已检测 {lb.name}（{tag}）")}
            suggestions.append({"label": _text("Cancel the repeat order", "取消重复医嘱"), "delete_order": True})
        elif sub == "prior-auth":
            when = {"all": [{"coverage": {"plan": rng.sample(PLANS, 3)}}, {"age": {"lt": rng.choice([40, 65, 80])}}]}
            card = {"summary": _text(f"{name}: prior authorisation needed for this plan ({tag})", f"{name}：该医保计划需事先审批（{tag}）")}
        else:
            when = {"not": {"diagnosis": {"valueset": vs.id}}}
            card = {"summary": _text(f"{name}: no documented indication ({tag})", f"{name}：未记录适应证（{tag}）")}
        card["detail"] = _text(f"{name} is ordered. See the pack source for the local policy.", f"已开具{name}。本院政策见来源。")
    else:
        share = 0.3 if kind in ("pgx", "lab", "interaction", "lab-missing") else 0.0
        trigger, d, ingredients = _drug_trigger(rng, c, rules, share)
        alt = _alternative(d, rules)
        if kind == "pgx":
            gene = rng.choice(list(PHENOTYPES))
            phen = rng.sample(PHENOTYPES[gene], min(len(PHENOTYPES[gene]), rng.randint(1, 2)))
            conds = [{"genotype": {"gene": gene, "phenotype": phen}}]
            extra = rng.random()
            if extra < 0.35:
                conds.insert(0, {"diagnosis": {"valueset": [vs.id, valueset((int(vs.id[-2:]) + 1) % N_VALUESETS).id], "active": True}})
            elif extra < 0.55:
                conds.append({"age": {"gte": rng.choice([18, 50, 65])}})
            elif extra < 0.7:
                conds.append({"not": {"medication": {"codes": [f"atc:{atc_class(rng.randrange(40))}*"], "within_days": 180}}})
            when = {"all": conds} if len(conds) > 1 else conds[0]
            card = {"summary": _text(f"{gene} {{{{{gene}.phenotype}}}}: adjust {{{{order.drug}}}} ({tag})",
                                     f"{gene} {{{{{gene}.phenotype}}}}：调整{{{{order.drug}}}}用药（{tag}）"),
                    "detail": _text(f"This patient's {gene} result is `{{{{{gene}.diplotype}}}}` (phenotype {{{{{gene}.phenotype}}}}). "
                                    f"The guideline recommends an alternative or a reduced starting dose of {{{{order.drug}}}}.",
                                    f"该患者 {gene} 结果为 `{{{{{gene}.diplotype}}}}`（表型：{{{{{gene}.phenotype}}}}）。"
                                    f"指南建议换用替代药物或降低{{{{order.drug}}}}起始剂量。")}
            suggestions.append({"label": _text(f"Replace with {alt.name_en}", f"替换为{alt.name_zh}"),
                                "replace_order_with": alt.ingredient, "recommended": True})
            suggestions.append({"label": _text("Start at half dose", "起始剂量减半"),
                                "change_dose": {"text": _text("Half the usual starting dose; titrate to effect", "常规起始剂量减半，按疗效调整")}})
        elif kind == "pgx-test":
            gene = rng.choice(list(GENE_TESTS))
            conds = [{"genotype": {"gene": gene, "on_file": False}}]
            if rng.random() < 0.5:
                conds.append({"diagnosis": {"valueset": vs.id}})
            when = {"all": conds} if len(conds) > 1 else conds[0]
            card = {"summary": _text(f"No {gene} result on file: genotype before {{{{order.drug}}}} ({tag})",
                                     f"无 {gene} 检测结果：使用{{{{order.drug}}}}前请先检测（{tag}）"),
                    "detail": _text(f"{{{{order.drug}}}} dosing depends on {gene}; no interpretable result is on file.",
                                    f"{{{{order.drug}}}}剂量取决于 {gene}，但没有可解读的检测结果。"),
                    "selection": "any"}
            suggestions.append({"label": _text(f"Order {gene} genotyping", f"开具 {gene} 基因检测"), "add_test": gene, "recommended": True})
        elif kind == "hla":
            allele = rng.choice(HLA_ALLELES)
            when = {"genotype": {"gene": "HLA-B", "allele": allele, "status": ["positive"]}}
            indicator = "critical"
            card = {"summary": _text(f"{allele} {{{{HLA-B.status}}}}: avoid {{{{order.drug}}}} ({tag})",
                                     f"{allele} {{{{HLA-B.status}}}}：避免使用{{{{order.drug}}}}（{tag}）"),
                    "detail": _text(f"{allele} carriers have a high risk of severe cutaneous reactions.", f"{allele} 携带者发生严重皮肤不良反应的风险高。")}
            suggestions.append({"label": _text(f"Replace with {alt.name_en}", f"替换为{alt.name_zh}"), "replace_order_with": alt.ingredient})
        elif kind == "lab":
            op = rng.choice(["gt", "lt"])
            limit = lb.high if op == "gt" else lb.low
            conds = [{"lab": {"code": lb.code, "value": {op: limit}, "within_days": rng.choice([30, 90, 180, 365])}}]
            if rng.random() < 0.4:
                conds.append({"not": {"diagnosis": {"valueset": vs.id, "active": True}}})
            when = {"all": conds} if len(conds) > 1 else conds[0]
            word, word_zh = ("high", "偏高") if op == "gt" else ("low", "偏低")
            card = {"summary": _text(f"{lb.name} {word}: reduce {{{{order.drug}}}} dose ({tag})", f"{lb.name}{word_zh}：减少{{{{order.drug}}}}剂量（{tag}）"),
                    "detail": _text(f"The latest {lb.name} is outside {lb.low}-{lb.high} {lb.unit}.", f"最近一次{lb.name}超出 {lb.low}-{lb.high} {lb.unit}。")}
            suggestions.append({"label": _text("Reduce the dose by 50%", "剂量减少 50%"),
                                "change_dose": {"text": _text("Reduce the dose by 50% and recheck in 1 week", "剂量减少 50%，1 周后复查")}})
        elif kind == "lab-missing":
            when = {"lab": {"code": lb.code, "missing": True, "within_days": rng.choice([90, 180, 365])}}
            card = {"summary": _text(f"No recent {lb.name}: order before {{{{order.drug}}}} ({tag})", f"近期无{lb.name}：使用{{{{order.drug}}}}前请检测（{tag}）"),
                    "detail": _text(f"Baseline {lb.name} is required before starting {{{{order.drug}}}}.", f"开始{{{{order.drug}}}}前需检测基线{lb.name}。"),
                    "selection": "any"}
            suggestions.append({"label": _text(f"Order {lb.name}", f"开具{lb.name}"), "recommended": True,
                                "add_order": {"code": lb.code, "display": _text(lb.name, lb.name)}})
        elif kind == "formulary":
            when = {"all": [{"coverage": {"plan": rng.sample(PLANS, 2)}},
                            {"not": {"medication": {"codes": ingredients, "within_days": 365}}}]}
            indicator = "info"
            card = {"summary": _text(f"{{{{order.drug}}}} is not on this plan's formulary ({tag})", f"{{{{order.drug}}}}不在该医保目录内（{tag}）"),
                    "detail": _text(f"{alt.name_en} is covered and therapeutically equivalent.", f"{alt.name_zh}在目录内且疗效相当。")}
            suggestions.append({"label": _text(f"Replace with {alt.name_en}", f"替换为{alt.name_zh}"),
                                "replace_order_with": alt.ingredient, "recommended": True})
        elif kind == "interaction":
            other = atc_class(rng.randrange(max(1, min(60, n_drugs(rules) // 6))))
            when = {"medication": {"codes": [f"atc:{other}*"], "active": True}}
            card = {"summary": _text(f"Interaction: {{{{order.drug}}}} with an active {other} drug ({tag})",
                                     f"相互作用：{{{{order.drug}}}}与在用 {other} 类药物（{tag}）"),
                    "detail": _text(f"Combined use raises exposure. Consider {alt.name_en}.", f"合用会增加暴露量。可考虑{alt.name_zh}。")}
            suggestions.append({"label": _text("Remove the draft order", "删除草稿医嘱"), "delete_order": True})
        else:  # dose
            mg = d.products[0][2]
            when = {"all": [{"order": {"dose_mg": {"gt": mg}}}, {"age": {"gte": 65}}]}
            card = {"summary": _text(f"{{{{order.drug}}}} dose above {mg} mg in an older adult ({tag})",
                                     f"老年患者{{{{order.drug}}}}剂量超过 {mg} mg（{tag}）"),
                    "detail": _text(f"Doses above {mg} mg raise the risk of adverse events at 65 years or older.", f"65 岁及以上患者剂量超过 {mg} mg 不良事件风险升高。")}
            suggestions.append({"label": _text(f"Change to {mg} mg", f"改为 {mg} mg"),
                                "change_dose": {"text": _text(f"{mg} mg by mouth once daily", f"每日一次口服 {mg} mg")}})
    rule["trigger"] = trigger
    if rng.random() < 0.1:
        rule["hooks"] = ["order-sign"]
    rule["when"] = when
    card_out: dict[str, Any] = {"indicator": indicator, "summary": card["summary"]}
    if "detail" in card:
        card_out["detail"] = card["detail"]
    card_out["source"] = source
    card_out["strength"] = rng.choice(["CPIC Strong", "CPIC Moderate", "Local policy", "Label", "Expert consensus"])
    if rng.random() < 0.3:
        card_out["topic"] = {"code": kind, "system": "urn:precision-cds:bench-topic", "display": kind}
    if suggestions:
        card_out["selection"] = card.get("selection", "at-most-one")
        card_out["suggestions"] = suggestions
    card_out["override_reasons"] = _overrides(rng)
    if rng.random() < 0.6:
        card_out["links"] = _links(rng, r)
    rule["card"] = card_out
    return rule


def write_packs(dest: Path, rules: int) -> int:
    """`rules` generated rules in packs of RULES_PER_PACK under four folders; returns the pack count."""
    if dest.exists():
        shutil.rmtree(dest)
    counters = _Counters()
    folders = ["pgx", "labs", "formulary", "services"]
    packs = (rules + RULES_PER_PACK - 1) // RULES_PER_PACK
    for p in range(packs):
        rng = random.Random(f"{SEED}:pack:{p}")
        sources = [
            {"id": f"guideline-{p}", "label": f"Benchmark guideline {p} (synthetic)",
             "citation": f"Bench et al. J Synth Med 2025;{p}:1-10", "url": f"https://guidelines.example.org/bench/{p}"},
            {"id": f"label-{p}", "label": f"Benchmark product label {p} (synthetic)", "url": f"https://labels.example.org/bench/{p}"},
        ]
        doc = {
            "pack": {
                "id": f"bench-pack-{p:04d}",
                "title": f"Benchmark pack {p}",
                "version": "1.0.0",
                "status": "active",
                "publisher": "precision-cds benchmark generator",
                "description": "Synthetic rules for performance tests; not clinical advice.",
                "effective": "2024-01-01",
                "priority": rng.randrange(0, 60),
                "hooks": ["order-select", "order-sign"],
                "sources": sources,
            },
            "rules": [make_rule(r, rules, counters, [s["id"] for s in sources])
                      for r in range(p * RULES_PER_PACK, min(rules, (p + 1) * RULES_PER_PACK))],
        }
        _dump(dest / folders[p % 4] / f"bench-pack-{p:04d}.yaml", doc,
              "# yaml-language-server: $schema=../../service/schemas/rule-pack.schema.json\n"
              "# Generated by tests/benchmarks/generate.py: synthetic, for benchmarks only.\n")
    return packs


# -----------------------------------------------------------------------------
# Patient
# -----------------------------------------------------------------------------

PATIENT_SIZES = {
    # resources per type; totals 250 and 1,000
    250: {"conditions": 20, "procedures": 30, "medications": 40, "observations": 150, "body": 8},
    1000: {"conditions": 80, "procedures": 50, "medications": 160, "observations": 700, "body": 8},
}


def _ref() -> dict[str, str]:
    return {"reference": f"Patient/{PATIENT_ID}"}


def _cc(system: str, code: str, display: str, text: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"coding": [{"system": system, "code": code, "display": display}]}
    if text:
        out["text"] = text
    return out


def _iso(d: datetime) -> str:
    return d.strftime("%Y-%m-%dT%H:%M:%S+08:00")


def _bundle(resources: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "resourceType": "Bundle", "type": "searchset", "total": len(resources),
        "entry": [{"fullUrl": f"{FHIR_BASE}/{r['resourceType']}/{r['id']}", "resource": r}
                  for r in resources],
    }


def _genomic_obs(oid: str, gene: str, text: str, when: datetime, code: tuple[str, str] = ("84413-4", "Genotype display name")) -> dict[str, Any]:
    return {
        "resourceType": "Observation", "id": oid,
        "meta": {"profile": ["http://hl7.org/fhir/uv/genomics-reporting/StructureDefinition/genotype"]},
        "status": "final",
        "category": [_cc("http://terminology.hl7.org/CodeSystem/observation-category", "laboratory", "Laboratory"),
                     _cc("http://terminology.hl7.org/CodeSystem/v2-0074", "GE", "Genetics")],
        "code": _cc(LOINC, code[0], code[1]),
        "subject": _ref(), "effectiveDateTime": _iso(when), "issued": _iso(when + timedelta(hours=5)),
        "performer": [{"display": "Benchmark Molecular Diagnostics Laboratory (synthetic)"}],
        "valueCodeableConcept": {"text": text},
        "component": [{"code": _cc(LOINC, "48018-6", "Gene studied [ID]"),
                       "valueCodeableConcept": _cc(HGNC, GENE_HGNC[gene], gene)}],
    }


GENOTYPES = [  # (gene, value text, years ago) -- DPYD, TPMT and NUDT15 are deliberately absent
    ("CYP2C19", "CYP2C19 *1/*1", 6), ("CYP2C19", "CYP2C19 *1/*2", 1), ("CYP2C9", "CYP2C9 *1/*3", 2),
    ("CYP2D6", "CYP2D6 *1/*4", 2), ("SLCO1B1", "SLCO1B1 *1/*5", 2), ("VKORC1", "VKORC1 rs9923231 C/T", 2),
    ("CYP4F2", "CYP4F2 rs2108622 C/T", 2), ("HLA-B", "HLA-B*15:02 negative", 3), ("HLA-B", "HLA-B*58:01 negative", 3),
    ("HLA-B", "HLA-B*57:01 negative", 3),
]


def make_patient(size: int, anchor: date) -> dict[str, Any]:
    """Prefetch values (key -> resource or Bundle) for one synthetic patient of about `size` resources."""
    counts = PATIENT_SIZES[size]
    rng = random.Random(f"{SEED}:patient:{size}")
    now = datetime(anchor.year, anchor.month, anchor.day, 8, 0, tzinfo=timezone.utc)

    def ago(max_days: int, min_days: int = 0) -> datetime:
        return now - timedelta(days=rng.randint(min_days, max_days), minutes=rng.randint(0, 1439))

    patient = {
        "resourceType": "Patient", "id": PATIENT_ID,
        "meta": {"tag": [{"system": "urn:precision-cds:example", "code": "bench", "display": "Synthetic benchmark patient"}]},
        "extension": [{"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race", "extension": [
            {"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2028-9", "display": "Asian"}},
            {"url": "text", "valueString": "Han Chinese"}]}],
        "identifier": [{"use": "usual", "system": "https://hospital.example.cn/fhir/sid/demo-mrn", "value": "BENCH-0000001"}],
        "active": True,
        "name": [{"use": "official", "text": "Li Mei", "family": "Li", "given": ["Mei"]},
                 {"use": "usual", "text": "李梅", "family": "李", "given": ["梅"]}],
        "telecom": [{"system": "phone", "value": "+86-10-0000-0000", "use": "mobile"}],
        "gender": "female", "birthDate": f"{anchor.year - 68}-04-17",
        "address": [{"city": "Beijing", "country": "CN", "postalCode": "100000"}],
        "communication": [{"language": _cc("urn:ietf:bcp:47", "zh-CN", "Chinese (China)"), "preferred": True}],
    }

    conditions = []
    held = rng.sample(range(N_VALUESETS), 12)
    for i in range(counts["conditions"]):
        if i < len(held) or rng.random() < 0.3:
            system, code = valueset(held[i % len(held)]).member
        else:
            system, code = ICD10, f"{rng.choice('ABHLQRZ')}{rng.randint(10, 99)}.{rng.randint(0, 9)}"
        clinical = "active" if rng.random() < 0.75 else "resolved"
        when = ago(3650)
        conditions.append({
            "resourceType": "Condition", "id": f"bench-cond-{i:04d}",
            "clinicalStatus": _cc("http://terminology.hl7.org/CodeSystem/condition-clinical", clinical, clinical.title()),
            "verificationStatus": _cc("http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed", "Confirmed"),
            "code": _cc(system, code, f"Diagnosis {code}"),
            "subject": _ref(), "onsetDateTime": _iso(when), "recordedDate": when.date().isoformat(),
        })

    procedures = []
    for i in range(counts["procedures"]):
        code = str(rng.choice([415070008, 387713003, 71388002, 80146002, 232717009, 44558001]) + i)
        procedures.append({
            "resourceType": "Procedure", "id": f"bench-proc-{i:04d}", "status": "completed",
            "code": _cc(SNOMED, code, f"Procedure {code}"),
            "subject": _ref(), "performedDateTime": _iso(ago(3650)),
        })

    medications = []
    for i in range(counts["medications"]):
        if rng.random() < 0.8:
            d = drug(rng.randrange(32))
            code, display, mg = rng.choice(d.products)
            code = code.split(":", 1)[1]
        else:
            code, display, mg = str(rng.randint(100000, 999999)), "Unlisted product", rng.choice([5, 10, 20])
        status = rng.choices(["active", "completed", "stopped", "on-hold"], [5, 3, 1, 1])[0]
        medications.append({
            "resourceType": "MedicationRequest", "id": f"bench-med-{i:04d}", "status": status, "intent": "order",
            "medicationCodeableConcept": _cc(RXNORM, code, display, display.lower()),
            "subject": _ref(), "authoredOn": ago(730).date().isoformat(),
            "dosageInstruction": [{"text": f"{mg} mg by mouth once daily",
                                   "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                                   "doseAndRate": [{"doseQuantity": {"value": mg, "unit": "mg", "system": UCUM, "code": "mg"}}]}],
        })

    observations: list[dict[str, Any]] = []
    for i, (gene, text, years) in enumerate(GENOTYPES):
        code = ("57979-7", "HLA-B*15:02 [Presence] in Blood or Tissue by Probe w/amp") if text.startswith("HLA-B*15:02") else ("84413-4", "Genotype display name")
        observations.append(_genomic_obs(f"bench-gx-{i:02d}", gene, text, now - timedelta(days=365 * years + 30 * i), code))
    lab_codes = rng.sample(range(N_LABS), 42)
    i = 0
    while len(observations) < counts["observations"]:
        lb = lab(lab_codes[i % len(lab_codes)])
        system, code = lb.code.split(":", 1)
        value = round(rng.uniform(lb.low * 0.6, lb.high * 1.3), 1)
        flag = "H" if value > lb.high else "L" if value < lb.low else "N"
        when = ago(720)
        observations.append({
            "resourceType": "Observation", "id": f"bench-lab-{i:04d}", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": _cc(LOINC, code, lb.name),
            "subject": _ref(), "effectiveDateTime": _iso(when),
            "valueQuantity": {"value": value, "unit": lb.unit, "system": UCUM, "code": lb.unit},
        })
        if flag != "N":  # abnormal results carry an interpretation flag
            observations[-1]["interpretation"] = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation", "code": flag}]}]
        i += 1

    body = []
    for i in range(counts["body"]):
        height = i % 2 == 0
        when = ago(1000)
        body.append({
            "resourceType": "Observation", "id": f"bench-vital-{i:02d}", "status": "final",
            "category": [_cc("http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs", "Vital Signs")],
            "code": _cc(LOINC, "8302-2" if height else "29463-7", "Body height" if height else "Body weight"),
            "subject": _ref(), "effectiveDateTime": _iso(when),
            "valueQuantity": ({"value": round(rng.uniform(158, 162), 1), "unit": "cm", "system": UCUM, "code": "cm"} if height
                              else {"value": round(rng.uniform(55, 62), 1), "unit": "kg", "system": UCUM, "code": "kg"}),
        })

    coverage = {
        "resourceType": "Coverage", "id": "bench-coverage-1", "status": "active",
        "subscriberId": "BENCH-YB-0000001", "beneficiary": _ref(),
        "relationship": _cc("http://terminology.hl7.org/CodeSystem/subscriber-relationship", "self", "Self"),
        "period": {"start": f"{anchor.year - 1}-01-01", "end": f"{anchor.year + 1}-12-31"},
        "payor": [{"display": "Municipal medical insurance fund (synthetic)"}],
        "class": [{"type": _cc("http://terminology.hl7.org/CodeSystem/coverage-class", "plan", "Plan"),
                   "value": PATIENT_PLAN, "name": "Urban employee basic medical insurance"}],
    }
    return {
        "patient": patient,
        "medications": _bundle(medications),
        "conditions": _bundle(conditions),
        "procedures": _bundle(procedures),
        "observations": _bundle(observations),
        "bodyMeasures": _bundle(body),
        "coverage": _bundle([coverage]),
    }


def resource_count(prefetch: dict[str, Any]) -> int:
    return sum(len(v.get("entry", [])) if v.get("resourceType") == "Bundle" else 1 for v in prefetch.values())


# -----------------------------------------------------------------------------
# Requests
# -----------------------------------------------------------------------------


def _med_draft(n: int, d: DrugDef, anchor: date, product: int = 0, priority: str | None = None) -> dict[str, Any]:
    code, display, mg = d.products[product]
    res: dict[str, Any] = {
        "resourceType": "MedicationRequest", "id": f"draft-{n}", "status": "draft", "intent": "order",
        "medicationCodeableConcept": _cc(RXNORM, code.split(":", 1)[1], display, display.lower()),
        "subject": _ref(), "encounter": {"reference": "Encounter/bench-enc-1"}, "authoredOn": anchor.isoformat(),
        "requester": {"reference": "Practitioner/bench-physician-1"},
        "dosageInstruction": [{"sequence": 1, "text": f"{mg * 2} mg by mouth once daily",
                               "timing": {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
                               "route": _cc(SNOMED, "26643006", "Oral route"),
                               "doseAndRate": [{"doseQuantity": {"value": mg * 2, "unit": "mg", "system": UCUM, "code": "mg"}}]}],
        "dispenseRequest": {"quantity": {"value": 30, "unit": "tablet", "system": UCUM, "code": "{tbl}"},
                            "expectedSupplyDuration": {"value": 30, "unit": "days", "system": UCUM, "code": "d"}},
    }
    if priority:
        res["priority"] = priority
    return res


def _service_draft(n: int, k: int, anchor: date) -> dict[str, Any]:
    code, name = service(k)
    return {
        "resourceType": "ServiceRequest", "id": f"draft-{n}", "status": "draft", "intent": "order",
        "code": _cc(LOINC, code.split(":", 1)[1], name, name), "subject": _ref(),
        "encounter": {"reference": "Encounter/bench-enc-1"}, "authoredOn": anchor.isoformat(),
        "requester": {"reference": "Practitioner/bench-physician-1"},
    }


#: name, hook, drafts (("med", drug index) or ("svc", service index)), selected draft numbers, locale
REQUEST_MIX: list[tuple[str, str, list[tuple[str, int]], list[int], str]] = [
    ("sign-1med", "order-sign", [("med", 0)], [], "en"),
    ("sign-1med-b", "order-sign", [("med", 7)], [], "zh-CN"),
    ("sign-3med-1svc", "order-sign", [("med", 1), ("med", 13), ("med", 26), ("svc", 0)], [], "en"),
    ("select-1of2", "order-select", [("med", 2), ("med", 19)], [1], "en"),
    ("select-1med", "order-select", [("med", 11)], [1], "zh-CN"),
    ("sign-1svc", "order-sign", [("svc", 3)], [], "en"),
    ("sign-2med", "order-sign", [("med", 14), ("med", 25)], [], "zh-CN"),
    ("select-1med-b", "order-select", [("med", 31)], [1], "en"),
]


def make_requests(prefetch: dict[str, Any], anchor: date) -> list[dict[str, Any]]:
    """The request mix: [{name, hook, service, locale, body}]."""
    rng = random.Random(f"{SEED}:requests")
    out = []
    for name, hook, drafts, selected, locale in REQUEST_MIX:
        resources = []
        for n, (kind, idx) in enumerate(drafts, start=1):
            resources.append(_med_draft(n, drug(idx), anchor, product=idx % 2) if kind == "med" else _service_draft(n, idx, anchor))
        context: dict[str, Any] = {
            "userId": "Practitioner/bench-physician-1", "patientId": PATIENT_ID, "encounterId": "bench-enc-1",
            "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]},
        }
        if hook == "order-select":
            context["selections"] = [f"{resources[n - 1]['resourceType']}/{resources[n - 1]['id']}" for n in selected]
        body = {
            "hook": hook,
            "hookInstance": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "fhirServer": FHIR_BASE,
            "context": context,
            "prefetch": prefetch,
        }
        out.append({"name": name, "hook": hook, "service": f"precision-cds-{hook}", "locale": locale, "body": body})
    return out


# -----------------------------------------------------------------------------
# Whole data set
# -----------------------------------------------------------------------------


@dataclass
class Scale:
    rules: int
    rules_dir: Path
    knowledge_dir: Path
    packs: int


@dataclass
class RequestSet:
    patient_size: int
    resources: int
    prefetch_bytes: int
    dir: Path
    requests: list[dict[str, Any]] = field(default_factory=list)  # name, hook, service, locale, file


def write_scale(root: Path, rules: int) -> Scale:
    base = root / f"rules-{rules}"
    write_knowledge(base / "knowledge", rules)
    packs = write_packs(base / "rules", rules)
    return Scale(rules, base / "rules", base / "knowledge", packs)


def write_requests(root: Path, size: int, anchor: date) -> RequestSet:
    prefetch = make_patient(size, anchor)
    out = root / f"patient-{size}"
    out.mkdir(parents=True, exist_ok=True)
    rs = RequestSet(size, resource_count(prefetch), len(json.dumps(prefetch, separators=(",", ":"), ensure_ascii=False).encode()), out)
    for req in make_requests(prefetch, anchor):
        path = out / f"{req['name']}.json"
        path.write_bytes(json.dumps(req["body"], separators=(",", ":"), ensure_ascii=False).encode())
        rs.requests.append({k: v for k, v in req.items() if k != "body"} | {"file": str(path)})
    (out / "manifest.json").write_text(json.dumps({"patient_size": size, "resources": rs.resources,
                                                   "prefetch_bytes": rs.prefetch_bytes, "requests": rs.requests}, indent=1))
    return rs


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--rules", type=int, nargs="+", default=[1200])
    ap.add_argument("--patient", type=int, nargs="+", default=[250], choices=sorted(PATIENT_SIZES))
    ap.add_argument("--anchor", type=date.fromisoformat, default=date.today(), help="'today' for the data (default: today)")
    args = ap.parse_args(argv)
    for n in args.rules:
        s = write_scale(args.out, n)
        print(f"{n} rules in {s.packs} packs: {s.rules_dir}  knowledge: {s.knowledge_dir}")
    for size in args.patient:
        rs = write_requests(args.out, size, args.anchor)
        print(f"patient {size}: {rs.resources} resources, prefetch {rs.prefetch_bytes / 1024:.0f} KB, {len(rs.requests)} requests in {rs.dir}")


if __name__ == "__main__":
    main()
