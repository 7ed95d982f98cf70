"""`precision-cds test`: pack test cases in the style of promtool and the CQL Testing Framework.

A test file (`<pack>.test.yaml`, beside the pack) lists cases; each case
names an example patient (or inline FHIR), a hook, draft orders, and what
must and must not fire. Cases run through the same pipeline as the HTTP
service, so a passing test means the physician sees exactly that card.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape, quoteattr

from .errors import PackError
from .facts.model import ALIAS_SYSTEMS
from .hooks.request import HookRequest, parse_hook_request
from .knowledge import Knowledge
from .engine.ruleset import RuleSet, load_ruleset
from .pipeline import run_hook
from .yamlsrc import load_yaml, plain

DEFAULT_TODAY = date(2026, 11, 22)


def load_patient_resources(path: Path) -> tuple[list[dict[str, Any]], str]:
    """Resources and patient id from a Bundle, a single resource, or a CDS Hooks request's prefetch."""
    data = json.loads(path.read_text(encoding="utf-8"))
    resources: list[dict[str, Any]] = []
    if isinstance(data, dict) and "hook" in data and "context" in data:
        for value in (data.get("prefetch") or {}).values():
            resources.extend(_flatten(value))
        return resources, str(data["context"].get("patientId", "unknown"))
    resources = _flatten(data)
    patient_id = next((str(r.get("id")) for r in resources if r.get("resourceType") == "Patient"), "unknown")
    return resources, patient_id


def _flatten(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, dict):
        return []
    if value.get("resourceType") == "Bundle":
        return [e["resource"] for e in value.get("entry", []) if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
    return [value]


def _coding(key: str) -> dict[str, str]:
    system, _, code = key.partition(":")
    return {"system": ALIAS_SYSTEMS.get(system, system), "code": code}


def order_from_spec(spec: dict[str, Any], patient_id: str, knowledge: Knowledge, index: int) -> dict[str, Any]:
    """Shorthand `{medication: rxnorm:309362, priority: stat}` -> a draft FHIR order."""
    if "resource" in spec:
        resource = dict(spec["resource"])
        if "priority" in spec:
            resource["priority"] = spec["priority"]
        return resource
    base: dict[str, Any] = {
        "id": spec.get("id", f"draft-{index + 1}"),
        "status": "draft",
        "intent": "order",
        "subject": {"reference": f"Patient/{patient_id}"},
        "authoredOn": DEFAULT_TODAY.isoformat(),
    }
    if "priority" in spec:
        base["priority"] = spec["priority"]
    if "medication" in spec:
        key = str(spec["medication"])
        drug = knowledge.drug(key)
        display = drug.name("en") if drug else key
        resource = {"resourceType": "MedicationRequest", **base, "medicationCodeableConcept": {"coding": [_coding(key)], "text": display}}
        if "dose_mg" in spec:
            resource["dosageInstruction"] = [{
                "timing": {"repeat": {"frequency": spec.get("per_day", 1), "period": 1, "periodUnit": "d"}},
                "doseAndRate": [{"doseQuantity": {"value": spec["dose_mg"], "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}}],
            }]
        if "quantity" in spec:
            resource["dispenseRequest"] = {"quantity": {"value": spec["quantity"]}}
        return resource
    if "service" in spec:
        key = str(spec["service"])
        return {"resourceType": "ServiceRequest", **base, "code": {"coding": [_coding(key)], "text": key}}
    raise ValueError("an order needs 'medication', 'service' or 'resource'")


def build_request(hook: str, patient_id: str, orders: list[dict[str, Any]], selections: list[str] | None = None) -> HookRequest:
    body: dict[str, Any] = {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "context": {
            "userId": "Practitioner/pack-test",
            "patientId": patient_id,
            "draftOrders": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": o} for o in orders]},
        },
    }
    if hook == "order-select":
        body["context"]["selections"] = selections or [f"{o['resourceType']}/{o['id']}" for o in orders]
    return parse_hook_request(body, hook)


@dataclass
class CaseResult:
    file: str
    name: str
    ok: bool
    failures: list[str] = field(default_factory=list)
    fired: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Report:
    results: list[CaseResult]
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors and all(r.ok for r in self.results) and bool(self.results)

    def table(self) -> str:
        lines = [f"{'RESULT':6}  {'CASE':70}  FIRED"]
        for r in self.results:
            lines.append(f"{'PASS' if r.ok else 'FAIL':6}  {(r.file + ': ' + r.name)[:70]:70}  {', '.join(r.fired) or '-'}")
            for failure in r.failures:
                lines.append(f"        - {failure}")
        lines.extend(f"ERROR   {e}" for e in self.errors)
        passed = sum(r.ok for r in self.results)
        lines.append(f"{passed} passed, {len(self.results) - passed} failed" + (f", {len(self.errors)} errors" if self.errors else ""))
        return "\n".join(lines)

    def junit_xml(self) -> str:
        failures = sum(not r.ok for r in self.results)
        out = [f'<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name="precision-cds packs" tests="{len(self.results)}" failures="{failures}" errors="{len(self.errors)}">']
        for r in self.results:
            out.append(f"  <testcase classname={quoteattr(r.file)} name={quoteattr(r.name)} time=\"{r.seconds:.4f}\">")
            if not r.ok:
                out.append(f"    <failure message={quoteattr(r.failures[0] if r.failures else 'failed')}>{escape(chr(10).join(r.failures))}</failure>")
            out.append("  </testcase>")
        for e in self.errors:
            out.append(f"  <testcase classname=\"load\" name={quoteattr(e[:80])}><error message={quoteattr(e)}/></testcase>")
        out.append("</testsuite>\n")
        return "\n".join(out)


def find_test_files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for path in paths:
        if path.is_dir():
            out.extend(sorted(path.rglob("*.test.yaml")))
        elif path.name.endswith(".test.yaml"):
            out.append(path)
        elif path.suffix == ".yaml" and path.with_name(path.stem + ".test.yaml").exists():
            out.append(path.with_name(path.stem + ".test.yaml"))
    return out


def run_pack_tests(
    paths: list[Path], rules_dir: Path, knowledge_dir: Path, examples_dir: Path, keyword: str | None = None,
) -> Report:
    try:
        ruleset = load_ruleset(rules_dir, knowledge_dir, include_draft=True, today=DEFAULT_TODAY)
    except PackError as exc:
        return Report([], [p.format() for p in exc.problems])
    report = Report([])
    for path in find_test_files(paths):
        try:
            doc = plain(load_yaml(path))
        except PackError as exc:
            report.errors.extend(p.format() for p in exc.problems)
            continue
        cases = doc.get("cases") if isinstance(doc, dict) else None
        if not isinstance(cases, list) or not cases:
            report.errors.append(f"{path}: a test file needs a non-empty 'cases' list")
            continue
        for i, case in enumerate(cases):
            name = str(case.get("name", f"case {i + 1}")) if isinstance(case, dict) else f"case {i + 1}"
            if keyword and keyword not in name:
                continue
            started = time.perf_counter()
            result = _run_case(ruleset, case, path, examples_dir, name)
            result.seconds = time.perf_counter() - started
            report.results.append(result)
    return report


def _patient(case: dict[str, Any], path: Path, examples_dir: Path) -> tuple[list[dict[str, Any]], str]:
    resources: list[dict[str, Any]] = []
    patient_id = "test-patient"
    ref = case.get("patient")
    if isinstance(ref, str):
        candidates = [path.parent / ref, examples_dir / "patients" / f"{ref}.json", examples_dir / ref]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            raise ValueError(f"patient '{ref}' not found in examples/patients/")
        resources, patient_id = load_patient_resources(found)
    elif ref is not None:
        raise ValueError("'patient' names an example patient file")
    without = set(case.get("without", []))
    resources = [r for r in resources if f"{r.get('resourceType')}/{r.get('id')}" not in without and r.get("resourceType") not in without]
    for res in case.get("with", []):
        res = dict(res)
        if res.get("resourceType") != "Patient":
            res.setdefault("subject", {"reference": f"Patient/{patient_id}"})
        resources.append(res)
        if res.get("resourceType") == "Patient" and ref is None:
            patient_id = str(res.get("id", patient_id))
    return resources, patient_id


def _run_case(ruleset: RuleSet, case: Any, path: Path, examples_dir: Path, name: str) -> CaseResult:
    rel = str(path)
    if not isinstance(case, dict):
        return CaseResult(rel, name, False, ["a case must be a mapping"])
    try:
        resources, patient_id = _patient(case, path, examples_dir)
        hook = case.get("hook", "order-sign")
        orders = [order_from_spec(o, patient_id, ruleset.knowledge, i) for i, o in enumerate(case.get("orders", []))]
        if not orders:
            return CaseResult(rel, name, False, ["a case needs at least one order"])
        request = build_request(hook, patient_id, orders)
        today = date.fromisoformat(str(case["today"])) if "today" in case else DEFAULT_TODAY
        result = run_hook(ruleset, request, resources, case.get("lang", "en"), today)
    except Exception as exc:  # a broken case is a failure of that case, not of the run
        return CaseResult(rel, name, False, [f"could not run: {type(exc).__name__}: {exc}"])
    fired = {f.rule.id: card for f, card in result.cards}
    expect = case.get("expect", {}) or {}
    failures: list[str] = []
    for item in expect.get("fire", []):
        item = {"rule": item} if isinstance(item, str) else item
        card = fired.get(item["rule"])
        if card is None:
            failures.append(f"expected rule {item['rule']} to fire; fired: {', '.join(fired) or 'none'}")
            continue
        failures.extend(_check_card(item, card))
    for rid in expect.get("not_fire", []):
        if rid in fired:
            failures.append(f"rule {rid} fired but must not")
    if expect.get("exactly"):
        wanted = {(i if isinstance(i, str) else i["rule"]) for i in expect.get("fire", [])}
        extra = set(fired) - wanted
        if extra:
            failures.append(f"unexpected rules fired: {', '.join(sorted(extra))}")
    if "cards" in expect and len(result.cards) != expect["cards"]:
        failures.append(f"expected {expect['cards']} card(s), got {len(result.cards)}")
    return CaseResult(rel, name, not failures, failures, sorted(fired))


def _check_card(item: dict[str, Any], card: dict[str, Any]) -> list[str]:
    failures: list[str] = []
    rid = item["rule"]
    if "indicator" in item and card["indicator"] != item["indicator"]:
        failures.append(f"{rid}: indicator is {card['indicator']}, expected {item['indicator']}")
    text = card["summary"] + "\n" + card.get("detail", "")
    for fragment in item.get("text", []):
        if fragment not in text:
            failures.append(f"{rid}: card text does not contain {fragment!r}")
    for fragment in item.get("not_text", []):
        if fragment in text:
            failures.append(f"{rid}: card text contains {fragment!r} but must not")
    suggested = _suggested_codes(card)
    for code in item.get("suggests", []):
        if code not in suggested:
            failures.append(f"{rid}: no suggestion creates {code}; suggested: {', '.join(sorted(suggested)) or 'none'}")
    for code in item.get("not_suggests", []):
        if code in suggested:
            failures.append(f"{rid}: a suggestion creates {code} but must not")
    return failures


def _suggested_codes(card: dict[str, Any]) -> set[str]:
    from .facts.builder import concept_codes

    out: set[str] = set()
    for sug in card.get("suggestions", []):
        for action in sug.get("actions", []):
            res = action.get("resource") or {}
            out |= concept_codes(res.get("medicationCodeableConcept"))
            out |= concept_codes(res.get("code"))
            if action.get("type") == "delete":
                out.add("delete")
    return out
