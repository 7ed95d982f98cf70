"""Rule packs -> one immutable, indexed `RuleSet`; and the lint that guards it.

Packs are validated against `service/schemas/rule-pack.schema.json`, then
every name is resolved and every text checked (see `lint_packs`). A rule set
is built completely, aside, before it may serve: a pack with any error
refuses the whole set, so a physician never sees half a rule set.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable

import jsonschema

from .. import codes as codesys
from .. import templates
from ..errors import PackError, Problem
from ..facts.model import DraftOrder
from ..knowledge import Knowledge, load_knowledge
from ..yamlsrc import LocatedDict, load_yaml, locate, plain
from . import coverage
from .conditions import CompileError, Condition, compile_condition

SCHEMA_PATH = Path(__file__).resolve().parent.parent / "schemas" / "rule-pack.schema.json"
LOCALES = ("en", "zh-CN")
SEVERITY_ORDER = {"critical": 0, "warning": 1, "info": 2}
SUMMARY_LIMIT = 140
#: Condition kinds defined in service/engine/coverage.py (importing it registers them).
COVERAGE_CONDITIONS = coverage.CONDITION_KINDS
#: Suggestion actions, in the order the schema's oneOf lists them.
ACTIONS = (
    "replace_order_with", "add_test", "add_order", "change_dose", "delete_order",
    "formulary_alternatives", "formulary_step_therapy", "add_cdx_test", "change_quantity",
)
#: Actions that act on what a condition found: the rule must have that condition (its bound names).
ACTION_NEEDS = {
    "formulary_alternatives": ("formulary",),
    "formulary_step_therapy": ("formulary",),
    "change_quantity": ("formulary",),
    "add_cdx_test": ("cdx", "formulary"),
}


@lru_cache(maxsize=1)
def pack_validator() -> jsonschema.Draft202012Validator:
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return jsonschema.Draft202012Validator(schema, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


@dataclass(frozen=True, slots=True)
class Source:
    id: str
    label: str
    url: str
    citation: str | None = None


@dataclass(frozen=True, slots=True)
class Pack:
    id: str
    title: str
    version: str
    status: str
    publisher: str
    effective: str
    expires: str | None
    priority: int
    hooks: frozenset[str]
    sources: dict[str, Source]
    file: str

    def in_service(self, today: date, include_draft: bool) -> bool:
        if self.status == "retired" or (self.status == "draft" and not include_draft):
            return False
        if date.fromisoformat(self.effective) > today:
            return False
        return not (self.expires and date.fromisoformat(self.expires) < today)


@dataclass(frozen=True, slots=True)
class SuggestionSpec:
    label: dict[str, str]
    recommended: bool
    action: str  # one of ACTIONS
    params: Any
    when: Condition | None
    unless: Condition | None


@dataclass(frozen=True, slots=True)
class CardSpec:
    indicator: str
    summary: dict[str, str]
    detail: dict[str, str] | None
    source: Source
    strength: str
    topic: dict[str, str] | None
    selection: str
    suggestions: tuple[SuggestionSpec, ...]
    override_reasons: tuple[dict[str, Any], ...]
    links: tuple[dict[str, Any], ...]
    category: str = "clinical"  # clinical | coverage (coverage cards are demoted to info for urgent orders)


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    title: str
    version: str
    hooks: frozenset[str]
    pack: Pack
    trigger: dict[str, Any]
    when: Condition | None
    card: CardSpec
    file: str
    line: int
    active: bool

    @property
    def severity(self) -> int:
        return SEVERITY_ORDER[self.card.indicator]


@dataclass(slots=True)
class RuleSet:
    """Compiled rules, indexed by what triggers them. Never mutated after `build`."""

    rules: list[Rule]
    packs: list[Pack]
    knowledge: Knowledge
    version: str
    built_at: datetime
    by_code: dict[str, list[Rule]] = field(default_factory=dict)
    any_medication: list[Rule] = field(default_factory=list)
    any_service: list[Rule] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    def candidates(self, order: DraftOrder) -> list[Rule]:
        """Rules whose trigger matches this order: dictionary lookups, no scan of unrelated rules."""
        found: dict[str, Rule] = {}
        for concept in order.concepts:
            for rule in self.by_code.get(concept, ()):
                found[rule.id] = rule
        extra = self.any_medication if order.resource_type == "MedicationRequest" else self.any_service
        for rule in extra:
            found[rule.id] = rule
        return sorted(found.values(), key=lambda r: (-r.pack.priority, r.id))

    def status(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "builtAt": self.built_at.isoformat(),
            "rules": len(self.rules),
            "packs": [
                {"id": p.id, "version": p.version, "status": p.status, "file": p.file,
                 "rules": sum(1 for r in self.rules if r.pack is p)}
                for p in self.packs
            ],
            "knowledge": dict(sorted(self.knowledge.files.items())),
        }


def pack_files(paths: Iterable[Path]) -> list[Path]:
    """Pack YAML files under the given files or folders (tests and schemas excluded)."""
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(p for p in sorted(path.rglob("*.yaml")) if _is_pack_file(p))
        elif path.is_file():
            out.append(path)
    return out


def _is_pack_file(path: Path) -> bool:
    return not path.name.endswith((".test.yaml", ".schema.yaml")) and "tests" not in path.parent.parts[-1:]


def _display(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


class _Collector:
    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self._seen: set[tuple[str, int, int, str, str]] = set()
        self.errors = 0

    def add(self, file: str, doc: Any, path: Iterable[str | int], reason: str, check: str, severity: str = "error") -> None:
        if severity == "error":
            self.errors += 1  # counted even when the message is not repeated
        line, col = locate(doc, list(path))
        # A YAML anchor shared by several rules is one mistake in one place: report it once.
        key = (file, line, col, check, reason.split(": ", 1)[-1])
        if key in self._seen:
            return
        self._seen.add(key)
        self.problems.append(Problem(file, line, col, reason, severity=severity, check=check))


def build_ruleset(
    rule_paths: list[Path],
    knowledge: Knowledge,
    calculators: Callable[[], set[str]] | set[str] | None = None,
    include_draft: bool = False,
    today: date | None = None,
) -> tuple[RuleSet | None, list[Problem]]:
    """Lint and compile every pack; return the set (None on any error) and all findings."""
    today = today or date.today()
    known_calcs = calculators() if callable(calculators) else (calculators or set())
    out = _Collector()
    rules: list[Rule] = []
    packs: list[Pack] = []
    seen_rules: dict[str, str] = {}
    seen_packs: dict[str, str] = {}
    digest = hashlib.sha256()
    files = pack_files(rule_paths)
    if not files:
        out.problems.append(Problem(", ".join(str(p) for p in rule_paths), 1, 1, "no rule packs found", check="load"))
    for path in files:
        name = _display(path)
        try:
            doc = load_yaml(path, name)
        except PackError as exc:
            out.problems.extend(exc.problems)
            continue
        digest.update(name.encode())
        digest.update(json.dumps(plain(doc), sort_keys=True, ensure_ascii=False).encode())
        if not _schema_ok(doc, name, out):
            continue
        pack = _pack(doc, name)
        if pack.id in seen_packs:
            out.add(name, doc, ["pack", "id"], f"pack id '{pack.id}' is also used by {seen_packs[pack.id]}", "duplicate-id")
            continue
        seen_packs[pack.id] = name
        packs.append(pack)
        serving = pack.in_service(today, include_draft)
        for i, spec in enumerate(doc["rules"]):
            rule = _compile_rule(spec, i, pack, doc, name, knowledge, known_calcs, out, seen_rules, serving)
            if rule is not None:
                rules.append(rule)
    errors = [p for p in out.problems if p.severity == "error"]
    warnings = [p for p in out.problems if p.severity != "error"]
    if errors:
        return None, out.problems
    ruleset = RuleSet(
        rules=[r for r in rules if r.active],
        packs=packs,
        knowledge=knowledge,
        version=digest.hexdigest()[:12],
        built_at=datetime.now(timezone.utc),
        warnings=warnings,
    )
    _index(ruleset)
    return ruleset, out.problems


def _schema_ok(doc: Any, name: str, out: _Collector) -> bool:
    errors = list(pack_validator().iter_errors(plain(doc)))
    if not errors:
        return True
    reported: set[tuple[Any, ...]] = set()
    for error in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path]):
        best = jsonschema.exceptions.best_match([error])
        path = tuple(best.absolute_path)
        if path in reported:
            continue
        reported.add(path)
        out.add(name, doc, path, _schema_message(best), "schema")
    return False


def _schema_message(error: jsonschema.ValidationError) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator == "oneOf" and isinstance(error.instance, dict):
        keys = ", ".join(sorted(error.instance)) or "nothing"
        return f"{where}: '{keys}' is not a valid condition or suggestion here (see rules/README.md)"
    if error.validator in ("additionalProperties", "maxProperties", "minProperties") and error.schema.get("maxProperties") == 1:
        keys = ", ".join(sorted(error.instance)) if isinstance(error.instance, dict) else "nothing"
        known = ", ".join(sorted(error.schema.get("properties", {})))
        return f"{where}: '{keys}' is not a valid condition; a condition has exactly one of: {known}"
    if error.validator == "additionalProperties":
        return f"{where}: {error.message} (check the spelling against rules/README.md)"
    return f"{where}: {error.message}"


def _pack(doc: LocatedDict, name: str) -> Pack:
    meta = doc["pack"]
    sources = {s["id"]: Source(s["id"], s["label"], s["url"], s.get("citation")) for s in meta["sources"]}
    return Pack(
        id=meta["id"],
        title=meta["title"],
        version=meta["version"],
        status=meta["status"],
        publisher=meta["publisher"],
        effective=meta["effective"],
        expires=meta.get("expires"),
        priority=int(meta.get("priority", 0)),
        hooks=frozenset(meta.get("hooks", ("order-select", "order-sign"))),
        sources=sources,
        file=name,
    )


def _compile_rule(
    spec: dict[str, Any],
    index: int,
    pack: Pack,
    doc: LocatedDict,
    name: str,
    knowledge: Knowledge,
    calcs: set[str],
    out: _Collector,
    seen: dict[str, str],
    serving: bool,
) -> Rule | None:
    base: list[str | int] = ["rules", index]
    rid = spec["id"]
    if rid in seen:
        out.add(name, doc, [*base, "id"], f"duplicate rule id '{rid}' (first defined in {seen[rid]})", "duplicate-id")
        return None
    seen[rid] = name
    errors_before = out.errors
    for kind in ("medication", "service"):
        for j, key in enumerate(spec["trigger"].get(kind, [])):
            if (reason := codesys.check(key)) is not None:
                out.add(name, doc, [*base, "trigger", kind, j], reason, "code")
            elif key.endswith("*") and not key.startswith("atc:"):
                out.add(name, doc, [*base, "trigger", kind, j], "only ATC class codes may be prefixes in a trigger", "code")
            elif kind == "medication" and key.startswith("rxnorm:") and knowledge.drug(key) is None:
                out.add(name, doc, [*base, "trigger", kind, j], f"drug {key} is not in knowledge/drugs.yaml", "unknown-reference", "warning")
    when: Condition | None = None
    if "when" in spec:
        try:
            when = compile_condition(spec["when"], knowledge, calcs, [*base, "when"])
        except CompileError as exc:
            out.add(name, doc, exc.path, exc.reason, exc.check)
    card = _compile_card(spec["card"], [*base, "card"], pack, doc, name, knowledge, calcs, out)
    if card is not None:
        bound = when.bound_names() if when else set()
        for sug in card.suggestions:
            for cond in (sug.when, sug.unless):
                if cond is not None:
                    bound |= cond.bound_names()
        for i, sug in enumerate(card.suggestions):
            needs = ACTION_NEEDS.get(sug.action)
            if needs and not any(templates.is_bound(f"{head}.x", bound) for head in needs):
                out.add(name, doc, [*base, "card", "suggestions", i, sug.action],
                        f"suggestion '{sug.action}' needs a {' or '.join(n.replace('cdx', 'companion_diagnostic') for n in needs)} "
                        "condition in this rule's 'when'", "unknown-reference")
            if sug.action == "formulary_alternatives":
                bound = bound | {"alternative.*"}
        _check_texts(spec["card"], card, bound, [*base, "card"], doc, name, knowledge, out)
    if out.errors != errors_before or card is None:
        return None
    assert card is not None
    status = spec.get("status", pack.status)
    return Rule(
        id=rid,
        title=spec.get("title", rid),
        version=str(spec.get("version", pack.version)),
        hooks=frozenset(spec.get("hooks", pack.hooks)),
        pack=pack,
        trigger=plain(spec["trigger"]),
        when=when,
        card=card,
        file=name,
        line=locate(doc, base)[0],
        active=serving and status != "retired" and (status != "draft" or pack.status == "draft"),
    )


def _compile_card(
    spec: dict[str, Any], base: list[str | int], pack: Pack, doc: LocatedDict, name: str,
    knowledge: Knowledge, calcs: set[str], out: _Collector,
) -> CardSpec | None:
    source = pack.sources.get(spec["source"])
    ok = True
    if source is None:
        out.add(name, doc, [*base, "source"], f"source '{spec['source']}' is not listed in the pack's sources", "source")
        ok = False
    suggestions: list[SuggestionSpec] = []
    for i, sug in enumerate(spec.get("suggestions", [])):
        where = [*base, "suggestions", i]
        action = next(k for k in ACTIONS if k in sug)
        params = plain(sug[action])
        if action == "replace_order_with" and knowledge.drug(params) is None:
            out.add(name, doc, [*where, action], f"drug {params} is not in knowledge/drugs.yaml", "unknown-reference")
            ok = False
        elif action == "replace_order_with" and (drug := knowledge.drug(params)) is not None and drug.default_product is None:
            out.add(name, doc, [*where, action], f"drug {params} has no orderable product in knowledge/drugs.yaml", "unknown-reference")
            ok = False
        if action == "add_test" and params not in knowledge.genetic_tests:
            out.add(name, doc, [*where, action], f"no genetic test for gene '{params}' in knowledge/genetic-tests.yaml", "unknown-reference")
            ok = False
        if action == "add_order" and (reason := codesys.check(params["code"])) is not None:
            out.add(name, doc, [*where, action, "code"], reason, "code")
            ok = False
        conds: dict[str, Condition | None] = {"when": None, "unless": None}
        for key in conds:
            if key in sug:
                try:
                    conds[key] = compile_condition(sug[key], knowledge, calcs, [*where, key])
                except CompileError as exc:
                    out.add(name, doc, exc.path, exc.reason, exc.check)
                    ok = False
        suggestions.append(SuggestionSpec(dict(sug["label"]), bool(sug.get("recommended", False)), action, params, conds["when"], conds["unless"]))
    selection = spec.get("selection", "at-most-one")
    category = spec.get("category", "clinical")
    if category == "coverage" and spec["indicator"] == "critical":
        out.add(name, doc, [*base, "indicator"], "a coverage card is at most 'warning' (coverage never blocks an order; Da Vinci CRD)", "cds-invariant")
        ok = False
    if selection == "at-most-one" and sum(s.recommended for s in suggestions) > 1:
        out.add(name, doc, [*base, "suggestions"], "more than one recommended suggestion with selection at-most-one (cds-resp-1)", "cds-invariant")
        ok = False
    if not ok or source is None:
        return None
    return CardSpec(
        indicator=spec["indicator"],
        summary=dict(spec["summary"]),
        detail=dict(spec["detail"]) if "detail" in spec else None,
        source=source,
        strength=spec["strength"],
        topic=plain(spec.get("topic")),
        selection=selection,
        suggestions=tuple(suggestions),
        override_reasons=tuple(plain(spec.get("override_reasons", []))),
        links=tuple(plain(spec.get("links", []))),
        category=category,
    )


def _check_texts(
    spec: dict[str, Any], card: CardSpec, bound: set[str], base: list[str | int],
    doc: LocatedDict, name: str, knowledge: Knowledge, out: _Collector,
) -> None:
    """Translations present, variables bound, summaries under 140 characters in every locale."""
    texts: list[tuple[list[str | int], dict[str, str]]] = [([*base, "summary"], card.summary)]
    if card.detail:
        texts.append(([*base, "detail"], card.detail))
    for i, sug in enumerate(spec.get("suggestions", [])):
        texts.append(([*base, "suggestions", i, "label"], sug["label"]))
    for i, reason in enumerate(spec.get("override_reasons", [])):
        texts.append(([*base, "override_reasons", i, "display"], reason["display"]))
    for i, link in enumerate(spec.get("links", [])):
        texts.append(([*base, "links", i, "label"], link["label"]))
    for path, text in texts:
        for locale in LOCALES:
            if locale not in text:
                out.add(name, doc, path, f"missing {locale} translation", "translation")
        for locale, value in text.items():
            for var in templates.variables(value):
                if not templates.is_bound(var, bound):
                    out.add(name, doc, [*path, locale], f"template variable '{{{{{var}}}}}' is not bound by any condition of this rule", "template")
    for locale, value in card.summary.items():
        filled = templates.worst_case(value, lambda t, loc=locale: knowledge.translate(t, loc))
        if len(filled) >= SUMMARY_LIMIT:
            out.add(name, doc, [*base, "summary", locale],
                    f"summary is {len(filled)} characters after templating ({locale}); it must stay under {SUMMARY_LIMIT}", "summary-length")


def _index(ruleset: RuleSet) -> None:
    for rule in ruleset.rules:
        trig = rule.trigger
        for key in (*trig.get("medication", []), *trig.get("service", [])):
            key = key[:-1] if key.endswith("*") else key
            ruleset.by_code.setdefault(codesys.match_key(key) if not key.startswith("atc:") else key, []).append(rule)
        if trig.get("any_medication"):
            ruleset.any_medication.append(rule)
        if trig.get("any_service"):
            ruleset.any_service.append(rule)


def load_ruleset(
    rules_dir: Path, knowledge_dir: Path, calculators: set[str] | None = None,
    include_draft: bool = False, today: date | None = None,
) -> RuleSet:
    """Knowledge + packs -> RuleSet, or PackError listing every problem."""
    knowledge = load_knowledge(knowledge_dir)
    if calculators is None:
        from ..calculators.registry import names

        calculators = names()
    ruleset, problems = build_ruleset([rules_dir], knowledge, calculators, include_draft, today)
    if ruleset is None:
        raise PackError([p for p in problems if p.severity == "error"])
    return ruleset
