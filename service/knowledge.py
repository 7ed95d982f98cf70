"""The knowledge base: facts that rules refer to by name (drugs, value sets, glossary, tests).

Loaded once per rule-set build from `knowledge/`; immutable afterwards, so a
reload builds a new `Knowledge` beside the old one. Loaders are strict: every
problem is reported with file, line and reason, and nothing half-loaded is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import codes
from .errors import PackError, Problem
from .yamlsrc import LocatedDict, LocatedList, load_yaml, locate


@dataclass(frozen=True, slots=True)
class Product:
    code: str
    display: str
    dosage: dict[str, str] | None = None


@dataclass(frozen=True, slots=True)
class Drug:
    """One ingredient with its names, classes and orderable products."""

    ingredient: str
    names: dict[str, str]
    atc: tuple[str, ...]
    nhsa: tuple[str, ...]
    products: tuple[Product, ...]

    def name(self, locale: str) -> str:
        return self.names.get(locale) or self.names.get("en") or self.ingredient

    @property
    def default_product(self) -> Product | None:
        return self.products[0] if self.products else None


@dataclass(frozen=True, slots=True)
class ValueSet:
    id: str
    title: str
    matcher: codes.CodeMatcher
    codes: tuple[str, ...]
    file: str


@dataclass(frozen=True, slots=True)
class GeneticTest:
    gene: str
    code: str | None
    display: dict[str, str]


def _atc_parents(code: str) -> list[str]:
    """ATC B01AC04 -> [B, B01, B01A, B01AC, B01AC04]: a rule on a class matches its members."""
    cuts = (1, 3, 4, 5, 7)
    return [code[:n] for n in cuts if n <= len(code)]


@dataclass(slots=True)
class Knowledge:
    root: Path
    drugs: dict[str, Drug] = field(default_factory=dict)  # by ingredient key
    concept_index: dict[str, frozenset[str]] = field(default_factory=dict)
    valuesets: dict[str, ValueSet] = field(default_factory=dict)
    glossary: dict[str, dict[str, str]] = field(default_factory=dict)
    genetic_tests: dict[str, GeneticTest] = field(default_factory=dict)
    pgx: Any = None  # service.facts.pgx.PgxTables, when knowledge/pgx exists
    formularies: Any = None  # service.formulary.Formularies, from knowledge/formularies
    cdx: Any = None  # service.formulary.CompanionDiagnostics, from knowledge/cdx
    extra: dict[str, Any] = field(default_factory=dict)  # other tables by kind
    files: dict[str, str] = field(default_factory=dict)  # relative path -> version

    # -- lookups used while building facts and cards -------------------------
    def expand_codes(self, keys: frozenset[str] | set[str]) -> frozenset[str]:
        """Every concept an ordered code stands for: itself, ingredient, ATC parents, NHSA."""
        out: set[str] = set(keys)
        for key in keys:
            derived = self.concept_index.get(key)
            if derived:
                out |= derived
            elif key.startswith("atc:"):
                out.update(f"atc:{p}" for p in _atc_parents(key[4:]))
        return frozenset(out)

    def drug(self, key: str) -> Drug | None:
        """A drug by ingredient, product, ATC or NHSA key."""
        found = self.drugs.get(key)
        if found:
            return found
        for concept in self.concept_index.get(key, ()):
            if concept in self.drugs:
                return self.drugs[concept]
        return None

    def translate(self, term: str, locale: str) -> str:
        if locale == "en":
            return term
        return self.glossary.get(term, {}).get(locale, term)


KNOWN_KINDS = ("drugs", "valuesets", "glossary", "genetic-tests")


def load_knowledge(root: Path) -> Knowledge:
    """Load every YAML file under `root`; raise PackError listing all problems."""
    knowledge = Knowledge(root=root)
    problems: list[Problem] = []
    if not root.is_dir():
        raise PackError([Problem(str(root), 1, 1, "knowledge directory not found", check="knowledge")])
    for path in sorted(root.rglob("*.yaml")):
        rel = str(path.relative_to(root.parent)) if root.parent != path else str(path)
        top = path.relative_to(root).parts[0]
        if path.parent.name == "pgx" or top in ("formularies", "cdx") or path.name.endswith(".test.yaml"):
            continue  # loaded by their own loaders below
        try:
            doc = load_yaml(path, rel)
        except PackError as exc:
            problems.extend(exc.problems)
            continue
        if not isinstance(doc, LocatedDict) or "kind" not in doc:
            problems.append(Problem(rel, 1, 1, "a knowledge file needs a top-level 'kind'", check="knowledge"))
            continue
        kind = doc["kind"]
        knowledge.files[rel] = str(doc.get("version", ""))
        loader = _LOADERS.get(kind)
        if loader is None:
            line, col = locate(doc, ["kind"])
            knowledge.extra.setdefault(str(kind), []).append(doc)
            continue
        loader(knowledge, doc, rel, problems)
    pgx_dir = root / "pgx"
    if pgx_dir.is_dir():
        try:
            from .facts.pgx import load_pgx_tables

            knowledge.pgx = load_pgx_tables(pgx_dir)
        except PackError as exc:
            problems.extend(exc.problems)
    if not problems:
        # After drugs and value sets, which formularies and companion-diagnostic tables refer to.
        from .formulary import load_cdx, load_formularies

        if (root / "cdx").is_dir():
            knowledge.cdx, found = load_cdx(root / "cdx", knowledge, root.parent)
            problems.extend(found)
        if (root / "formularies").is_dir():
            knowledge.formularies, found = load_formularies(root / "formularies", knowledge, root.parent)
            problems.extend(found)
    if problems:
        raise PackError(problems)
    return knowledge


def _problem(problems: list[Problem], rel: str, doc: Any, path: list[str | int], reason: str) -> None:
    line, col = locate(doc, path)
    problems.append(Problem(rel, line, col, reason, check="knowledge"))


def _localised(value: Any) -> dict[str, str] | None:
    if isinstance(value, str):
        return {"en": value}
    if isinstance(value, dict) and all(isinstance(v, str) for v in value.values()) and "en" in value:
        return {str(k): str(v) for k, v in value.items()}
    return None


def _load_drugs(k: Knowledge, doc: LocatedDict, rel: str, problems: list[Problem]) -> None:
    entries = doc.get("drugs")
    if not isinstance(entries, LocatedList):
        _problem(problems, rel, doc, ["drugs"], "'drugs' must be a list")
        return
    for i, entry in enumerate(entries):
        where: list[str | int] = ["drugs", i]
        if not isinstance(entry, dict):
            _problem(problems, rel, doc, where, "each drug must be a mapping")
            continue
        ingredient = entry.get("ingredient")
        reason = codes.check(ingredient) if isinstance(ingredient, str) else "missing 'ingredient'"
        if reason:
            _problem(problems, rel, doc, [*where, "ingredient"], reason)
            continue
        if ingredient in k.drugs:
            _problem(problems, rel, doc, [*where, "ingredient"], f"drug {ingredient} is defined twice")
            continue
        names = _localised(entry.get("name"))
        if names is None:
            _problem(problems, rel, doc, [*where, "name"], "'name' needs at least an 'en' text")
            continue
        atc = tuple(str(a) for a in entry.get("atc", []) or [])
        nhsa = tuple(str(a) for a in entry.get("nhsa", []) or [])
        for j, code in enumerate(atc):
            if (r := codes.check(f"atc:{code}")) is not None:
                _problem(problems, rel, doc, [*where, "atc", j], r)
        products: list[Product] = []
        for j, prod in enumerate(entry.get("products", []) or []):
            code = prod.get("code") if isinstance(prod, dict) else None
            r = codes.check(code) if isinstance(code, str) else "product needs a 'code'"
            if r:
                _problem(problems, rel, doc, [*where, "products", j], r)
                continue
            dosage = prod.get("dosage")
            products.append(
                Product(
                    code=str(code),
                    display=str(prod.get("display", code)),
                    dosage={str(a): str(b) for a, b in dosage.items()} if isinstance(dosage, dict) else None,
                )
            )
        drug = Drug(str(ingredient), names, atc, nhsa, tuple(products))
        k.drugs[drug.ingredient] = drug
        concepts = {drug.ingredient}
        for code in atc:
            concepts.update(f"atc:{p}" for p in _atc_parents(code))
        concepts.update(f"nhsa:{c}" for c in nhsa)
        frozen = frozenset(concepts | {p.code for p in products})
        for key in frozen:
            if key.startswith("atc:") and len(key) < 11:
                continue  # a class code must not expand into one member drug
            k.concept_index[key] = k.concept_index.get(key, frozenset()) | frozen


def _load_valuesets(k: Knowledge, doc: LocatedDict, rel: str, problems: list[Problem]) -> None:
    entries = doc.get("valuesets")
    if not isinstance(entries, LocatedList):
        _problem(problems, rel, doc, ["valuesets"], "'valuesets' must be a list")
        return
    for i, entry in enumerate(entries):
        where: list[str | int] = ["valuesets", i]
        vid = entry.get("id") if isinstance(entry, dict) else None
        if not isinstance(vid, str) or not vid:
            _problem(problems, rel, doc, where, "each value set needs an 'id'")
            continue
        if vid in k.valuesets:
            _problem(problems, rel, doc, [*where, "id"], f"value set '{vid}' is defined twice (also in {k.valuesets[vid].file})")
            continue
        keys = entry.get("codes")
        if not isinstance(keys, list) or not keys:
            _problem(problems, rel, doc, [*where, "codes"], f"value set '{vid}' needs a non-empty 'codes' list")
            continue
        bad = False
        for j, key in enumerate(keys):
            if (r := codes.check(key)) is not None:
                _problem(problems, rel, doc, [*where, "codes", j], r)
                bad = True
        if not bad:
            k.valuesets[vid] = ValueSet(vid, str(entry.get("title", vid)), codes.CodeMatcher(list(keys)), tuple(keys), rel)


def _load_glossary(k: Knowledge, doc: LocatedDict, rel: str, problems: list[Problem]) -> None:
    terms = doc.get("terms")
    if not isinstance(terms, dict):
        _problem(problems, rel, doc, ["terms"], "'terms' must be a mapping")
        return
    for term, translations in terms.items():
        if not isinstance(translations, dict):
            _problem(problems, rel, doc, ["terms", term], "each term maps locales to text")
            continue
        k.glossary[str(term)] = {str(a): str(b) for a, b in translations.items()}


def _load_genetic_tests(k: Knowledge, doc: LocatedDict, rel: str, problems: list[Problem]) -> None:
    for i, entry in enumerate(doc.get("tests", []) or []):
        gene = entry.get("gene") if isinstance(entry, dict) else None
        display = _localised(entry.get("display")) if isinstance(entry, dict) else None
        if not isinstance(gene, str) or display is None:
            _problem(problems, rel, doc, ["tests", i], "each test needs 'gene' and 'display' (with 'en')")
            continue
        code = entry.get("code")
        if code is not None and (r := codes.check(code)) is not None:
            _problem(problems, rel, doc, ["tests", i, "code"], r)
            continue
        k.genetic_tests[gene] = GeneticTest(gene, code, display)


_LOADERS = {
    "drugs": _load_drugs,
    "valuesets": _load_valuesets,
    "glossary": _load_glossary,
    "genetic-tests": _load_genetic_tests,
}
