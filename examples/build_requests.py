#!/usr/bin/env python3
"""Build the example CDS Hooks requests in examples/requests/ from examples/patients/.

The patient bundles are the source of truth; this script only adds a draft
order per patient and copies the patient's data into the prefetch keys. The
output is deterministic (uuid5 hook instances, fixed dates, sorted keys in a
fixed order), so the files can be committed and diffed.

Every resource, every Bundle and every request is checked before anything is
written: FHIR R4B models from fhir.resources, plus the CDS Hooks 2.0 request
rules (required fields, UUID hookInstance, selections pointing into
draftOrders, no null or empty values).

    python examples/build_requests.py            # write the requests
    python examples/build_requests.py --check    # fail if any file is stale

All patients are fictional; the plans are demonstration plans.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import json
import re
import sys
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PATIENTS = HERE / "patients"
REQUESTS = HERE / "requests"

FHIR_SERVER = "https://ehr.example.org/fhir"
USER_ID = "Practitioner/demo-physician-1"
AUTHORED_ON = "2026-11-22"
#: Namespace for the uuid5 hook instances, so the same file always gets the same uuid.
UUID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "urn:precision-cds:examples")

RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
BODY_MEASURE_LOINC = {"8302-2", "29463-7"}  # body height, body weight

#: The draft order for each patient: RxNorm code and display, free text, dose (mg), doses a day.
#: Product codes were checked against openFDA NDC records (openfda.rxcui). Osimertinib 80 mg
#: could not be verified at product level, so it carries the ingredient code (1721560).
DRAFTS: dict[str, dict[str, Any]] = {
    "clopidogrel": {"code": "309362", "display": "clopidogrel 75 MG Oral Tablet",
                    "text": "clopidogrel 75 mg tablet", "dose": 75,
                    "sig": "75 mg by mouth once daily"},
    "warfarin": {"code": "855332", "display": "warfarin sodium 5 MG Oral Tablet",
                 "text": "warfarin sodium 5 mg tablet", "dose": 5,
                 "sig": "5 mg by mouth once daily in the evening; adjust to INR 2-3"},
    "osimertinib": {"code": "1721560", "display": "osimertinib 80 MG Oral Tablet",
                    "text": "osimertinib 80 mg tablet", "dose": 80,
                    "sig": "80 mg by mouth once daily"},
    "carbamazepine": {"code": "308979", "display": "carbamazepine 200 MG Oral Tablet",
                      "text": "carbamazepine 200 mg tablet", "dose": 200,
                      "sig": "200 mg by mouth once daily; titrate as directed"},
    # Coverage and companion-diagnostic examples (rules/coverage/, rules/cdx/). Optional keys:
    # system (default RxNorm), route, period_unit, quantity/unit/unit_code/days (dispense), and no
    # "dose" for orders dosed per protocol. Semaglutide is coded with ATC (no verified RxNorm code);
    # esomeprazole and cetuximab carry the ingredient code with the product in the text.
    "semaglutide": {"system": "http://www.whocc.no/atc", "code": "A10BJ06", "display": "semaglutide",
                    "text": "semaglutide 1.34 mg/mL pre-filled pen", "dose": 0.25, "period_unit": "wk",
                    "route": ("34206005", "Subcutaneous route"), "quantity": 1, "unit": "pen", "unit_code": "{pen}",
                    "days": 28, "sig": "0.25 mg subcutaneously once weekly"},
    "esomeprazole": {"code": "283742", "display": "esomeprazole", "text": "esomeprazole 20 mg enteric-coated tablet",
                     "dose": 20, "sig": "20 mg by mouth once daily before breakfast"},
    "lipitor": {"code": "617320", "display": "atorvastatin 40 MG Oral Tablet [Lipitor]",
                "text": "Lipitor (atorvastatin) 40 mg tablet", "dose": 40, "sig": "40 mg by mouth once daily"},
    "cetuximab": {"code": "318341", "display": "cetuximab", "text": "cetuximab 100 mg/20 mL vial",
                  "route": ("47625008", "Intravenous route"), "quantity": 5, "unit": "vial", "unit_code": "{vial}",
                  "days": 14, "sig": "dose per protocol (mg/m2), intravenous infusion every 2 weeks"},
    "alectinib": {"code": "1727455", "display": "alectinib", "text": "alectinib 150 mg capsule", "dose": 600,
                  "per_day": 2, "quantity": 240, "unit": "capsule", "unit_code": "{capsule}",
                  "sig": "600 mg by mouth twice daily with food"},
    # Pharmacogenomic examples (rules/pgx/). Product codes: allopurinol 197319, azathioprine
    # 197388, simvastatin 198211 and tramadol 835603 agreed across at least two independent
    # public RxNorm extracts; the others carry the ingredient code (as osimertinib does), with
    # the product in the text. Warfarin uses the ingredient because the 5 mg product (855332)
    # is not yet mapped in knowledge/drugs.yaml.
    "warfarin-ingredient": {"code": "11289", "display": "warfarin",
                            "text": "warfarin sodium 3 mg tablet", "dose": 3,
                            "sig": "3 mg by mouth once daily in the evening; adjust to INR 2-3"},
    "oxcarbazepine": {"code": "32624", "display": "oxcarbazepine",
                      "text": "oxcarbazepine 300 mg tablet", "dose": 300,
                      "sig": "300 mg by mouth once daily; titrate as directed"},
    "allopurinol": {"code": "197319", "display": "allopurinol 100 MG Oral Tablet",
                    "text": "allopurinol 100 mg tablet", "dose": 100,
                    "sig": "100 mg by mouth once daily"},
    "azathioprine": {"code": "197388", "display": "azathioprine 50 MG Oral Tablet",
                     "text": "azathioprine 50 mg tablet", "dose": 100,
                     "sig": "100 mg (2 mg/kg) by mouth once daily"},
    "mercaptopurine": {"code": "103", "display": "mercaptopurine",
                       "text": "mercaptopurine 50 mg tablet", "dose": 125,
                       "sig": "125 mg (about 75 mg/m2) by mouth once daily"},
    "capecitabine": {"code": "194000", "display": "capecitabine",
                     "text": "capecitabine 500 mg tablet", "dose": 1500, "per_day": 2,
                     "sig": "1500 mg by mouth twice daily, days 1-14 of each 21-day cycle"},
    "simvastatin": {"code": "198211", "display": "simvastatin 40 MG Oral Tablet",
                    "text": "simvastatin 40 mg tablet", "dose": 40,
                    "sig": "40 mg by mouth once daily in the evening"},
    "codeine": {"code": "2670", "display": "codeine",
                "text": "codeine phosphate 30 mg tablet", "dose": 30, "per_day": 4,
                "sig": "30 mg by mouth every 6 hours as needed for pain"},
    "tramadol": {"code": "835603", "display": "tramadol hydrochloride 50 MG Oral Tablet",
                 "text": "tramadol hydrochloride 50 mg tablet", "dose": 50, "per_day": 4,
                 "sig": "50 mg by mouth every 6 hours as needed for pain"},
}

#: slug -> (draft drug, hooks to build). order-select only where the brief asks for it.
PATIENT_ORDERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "zhang-wei-acs-cyp2c19-pm": ("clopidogrel", ("order-sign", "order-select")),
    "li-na-nstemi-untested": ("clopidogrel", ("order-sign", "order-select")),
    "wang-fang-stroke-cyp2c19-im-prior-tia": ("clopidogrel", ("order-sign",)),
    "chen-jie-cyp2c19-nm-pci": ("clopidogrel", ("order-sign",)),
    "robert-miller-warfarin-af": ("warfarin", ("order-sign", "order-select")),
    "liu-yang-nsclc-egfr-untested": ("osimertinib", ("order-sign",)),
    "zhao-min-nsclc-egfr-l858r": ("osimertinib", ("order-sign",)),
    "sun-hao-epilepsy-hla-untested": ("carbamazepine", ("order-sign",)),
    # Coverage and companion-diagnostic examples (rules/coverage/, rules/cdx/)
    "zhou-lei-t2dm-glp1-no-metformin": ("semaglutide", ("order-sign",)),
    "wu-xia-gerd-esomeprazole": ("esomeprazole", ("order-sign",)),
    "ma-jun-hyperlipidaemia-lipitor": ("lipitor", ("order-sign",)),
    "he-ping-crc-kras-g12d": ("cetuximab", ("order-sign",)),
    "emily-clark-nsclc-alk-us": ("alectinib", ("order-sign",)),
    # Pharmacogenomic examples (rules/pgx/)
    "wu-lei-dvt-warfarin-vkorc1-only": ("warfarin-ingredient", ("order-sign",)),
    "huang-mei-af-warfarin-untested": ("warfarin-ingredient", ("order-sign",)),
    "zhou-qiang-valve-warfarin-no-height": ("warfarin-ingredient", ("order-sign",)),
    "lin-xiao-epilepsy-hla-b1502-positive": ("carbamazepine", ("order-sign",)),
    "he-jun-trigeminal-neuralgia-hla-b1502-negative": ("oxcarbazepine", ("order-sign",)),
    "guo-ming-gout-hla-b5801-positive": ("allopurinol", ("order-sign",)),
    "ma-li-gout-allopurinol-untested": ("allopurinol", ("order-sign",)),
    "xu-ting-crohn-nudt15-im": ("azathioprine", ("order-sign",)),
    "deng-hao-all-tpmt-pm": ("mercaptopurine", ("order-sign",)),
    "yang-lin-colitis-thiopurine-untested": ("azathioprine", ("order-sign",)),
    "qian-wei-colon-cancer-dpyd-im": ("capecitabine", ("order-sign",)),
    "song-jia-rectal-cancer-dpyd-untested": ("capecitabine", ("order-sign",)),
    "feng-bo-hypercholesterolaemia-slco1b1-decreased": ("simvastatin", ("order-sign",)),
    "tang-yu-acute-pain-cyp2d6-um": ("codeine", ("order-sign",)),
    "luo-fang-back-pain-cyp2d6-pm": ("tramadol", ("order-sign",)),
}

PREFETCH_KEYS = ("patient", "medications", "conditions", "procedures", "observations", "bodyMeasures", "coverage")
REQUEST_KEYS = {"hook", "hookInstance", "fhirServer", "fhirAuthorization", "context", "prefetch"}
DRAFT_ORDER_TYPES = {"MedicationRequest", "ServiceRequest", "NutritionOrder", "VisionPrescription", "DeviceRequest"}
_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
_REFERENCE = re.compile(r"^[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$")


class ExampleError(Exception):
    """An example file or generated request is not valid; the message names the file and field."""


# -- FHIR validation -----------------------------------------------------------------


def _model(resource_type: str) -> Any:
    module = importlib.import_module(f"fhir.resources.R4B.{resource_type.lower()}")
    return getattr(module, resource_type)


def validate_resource(resource: dict[str, Any], where: str) -> None:
    """Validate one resource (and, for a Bundle, each entry) with the R4B models."""
    rtype = resource.get("resourceType")
    if not isinstance(rtype, str):
        raise ExampleError(f"{where}: resourceType missing")
    try:
        _model(rtype).model_validate(copy.deepcopy(resource))
    except Exception as exc:  # pydantic.ValidationError, ImportError for an unknown type
        raise ExampleError(f"{where}: {rtype} is not valid FHIR R4B: {exc}") from exc
    if rtype == "Bundle":
        for i, entry in enumerate(resource.get("entry", [])):
            validate_resource(entry["resource"], f"{where}.entry[{i}].resource")


def check_no_empty(value: Any, where: str) -> None:
    """CDS Hooks / FHIR JSON: no null, "", [] or {} anywhere."""
    if value is None or value == "" or value == [] or value == {}:
        raise ExampleError(f"{where}: empty value ({value!r}) is not allowed")
    if isinstance(value, dict):
        for key, item in value.items():
            check_no_empty(item, f"{where}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_no_empty(item, f"{where}[{i}]")


# -- building ---------------------------------------------------------------------------


def load_patient_bundle(slug: str) -> list[dict[str, Any]]:
    path = PATIENTS / f"{slug}.json"
    bundle = json.loads(path.read_text(encoding="utf-8"))
    where = str(path.relative_to(HERE.parent))
    if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "collection":
        raise ExampleError(f"{where}: must be a Bundle of type collection")
    check_no_empty(bundle, where)
    validate_resource(bundle, where)
    resources = [entry["resource"] for entry in bundle["entry"]]
    patients = [r for r in resources if r["resourceType"] == "Patient"]
    if len(patients) != 1 or patients[0]["id"] != slug:
        raise ExampleError(f"{where}: needs exactly one Patient with id {slug!r}")
    tags = {(t.get("system"), t.get("code")) for t in patients[0].get("meta", {}).get("tag", [])}
    if ("urn:precision-cds:example", "demo") not in tags:
        raise ExampleError(f"{where}: Patient must carry the demo meta.tag")
    return resources


def searchset(resources: list[dict[str, Any]]) -> dict[str, Any]:
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "total": len(resources)}
    if resources:
        bundle["entry"] = [
            {"fullUrl": f"{FHIR_SERVER}/{r['resourceType']}/{r['id']}", "resource": r, "search": {"mode": "match"}}
            for r in resources
        ]
    return bundle


def _categories(resource: dict[str, Any]) -> set[str]:
    return {
        c.get("code")
        for cat in resource.get("category", [])
        for c in cat.get("coding", [])
        if c.get("system") == OBS_CATEGORY
    }


def _loinc_codes(resource: dict[str, Any]) -> set[str]:
    return {c.get("code") for c in resource.get("code", {}).get("coding", []) if c.get("system") == "http://loinc.org"}


def build_prefetch(resources: list[dict[str, Any]]) -> dict[str, Any]:
    """Split the patient's resources over the prefetch keys the service declares."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for res in resources:
        by_type.setdefault(res["resourceType"], []).append(res)
    observations = by_type.get("Observation", [])
    body = [o for o in observations if _loinc_codes(o) & BODY_MEASURE_LOINC]
    labs = [o for o in observations if o not in body and "laboratory" in _categories(o)]
    leftover = [o for o in observations if o not in body and o not in labs]
    if leftover:
        raise ExampleError(f"observations fit no prefetch key: {[o['id'] for o in leftover]}")
    return {
        "patient": by_type["Patient"][0],
        "medications": searchset(by_type.get("MedicationRequest", [])),
        "conditions": searchset(by_type.get("Condition", [])),
        "procedures": searchset(by_type.get("Procedure", [])),
        "observations": searchset(labs),
        "bodyMeasures": searchset(body),
        "coverage": searchset(by_type.get("Coverage", [])),
    }


def draft_order(slug: str, drug: str, *, priority: str | None = None) -> dict[str, Any]:
    spec = DRAFTS[drug]
    order: dict[str, Any] = {
        "resourceType": "MedicationRequest",
        "id": f"draft-{slug}-1",
        "status": "draft",
        "intent": "order",
    }
    if priority:
        order["priority"] = priority
    order.update({
        "medicationCodeableConcept": {
            "coding": [{"system": spec.get("system", RXNORM), "code": spec["code"], "display": spec["display"]}],
            "text": spec["text"],
        },
        "subject": {"reference": f"Patient/{slug}"},
        "encounter": {"reference": f"Encounter/enc-{slug}"},
        "authoredOn": AUTHORED_ON,
        "requester": {"reference": USER_ID},
        "dosageInstruction": [{
            "sequence": 1,
            "text": spec["sig"],
            "timing": {"repeat": {"frequency": spec.get("per_day", 1), "period": 1, "periodUnit": spec.get("period_unit", "d")}},
            "route": {"coding": [{"system": SNOMED, "code": spec.get("route", ("26643006", "Oral route"))[0],
                                  "display": spec.get("route", ("26643006", "Oral route"))[1]}]},
            "doseAndRate": [{"doseQuantity": {"value": spec.get("dose", 0), "unit": "mg", "system": UCUM, "code": "mg"}}],
        }],
        "dispenseRequest": {
            "quantity": {"value": spec.get("quantity", 30), "unit": spec.get("unit", "tablet"), "system": UCUM,
                         "code": spec.get("unit_code", "{tbl}")},
            "expectedSupplyDuration": {"value": spec.get("days", 30), "unit": "days", "system": UCUM, "code": "d"},
        },
    })
    if "dose" not in spec:  # dosed per protocol (e.g. by body surface area): no fixed dose on the draft
        del order["dosageInstruction"][0]["doseAndRate"]
    return order


def build_request(slug: str, hook: str, variant: str | None = None) -> tuple[str, dict[str, Any]]:
    """One hook request; variant is None, "stat" (urgent draft) or "no-prefetch" (patient only)."""
    drug, _ = PATIENT_ORDERS[slug]
    name = f"{slug}.{hook}" + (f".{variant}" if variant else "") + ".json"
    resources = load_patient_bundle(slug)
    order = draft_order(slug, drug, priority="stat" if variant == "stat" else None)
    context: dict[str, Any] = {
        "userId": USER_ID,
        "patientId": slug,
        "encounterId": f"enc-{slug}",
    }
    if hook == "order-select":
        context["selections"] = [f"MedicationRequest/{order['id']}"]
    context["draftOrders"] = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"resource": order}],
    }
    prefetch = build_prefetch(resources)
    if variant == "no-prefetch":
        prefetch = {"patient": prefetch["patient"]}
    request = {
        "hook": hook,
        "hookInstance": str(uuid.uuid5(UUID_NAMESPACE, name)),
        "fhirServer": FHIR_SERVER,
        "context": context,
        "prefetch": prefetch,
    }
    return name, request


# -- CDS Hooks request checks -------------------------------------------------------------


def check_request(name: str, req: dict[str, Any]) -> None:
    """A well-formed CDS Hooks 2.0 order-sign / order-select request (spec §Calling a CDS Service)."""
    unknown = set(req) - REQUEST_KEYS
    if unknown:
        raise ExampleError(f"{name}: unknown top-level fields {sorted(unknown)}")
    check_no_empty(req, name)
    hook = req.get("hook")
    if hook not in ("order-sign", "order-select"):
        raise ExampleError(f"{name}: hook must be order-sign or order-select")
    if not isinstance(req.get("hookInstance"), str) or not _UUID.match(req["hookInstance"]):
        raise ExampleError(f"{name}: hookInstance must be a lower-case UUID")
    if "fhirAuthorization" in req and "fhirServer" not in req:
        raise ExampleError(f"{name}: fhirAuthorization requires fhirServer (cds-r-1)")
    if "fhirServer" in req and not str(req["fhirServer"]).startswith("https://"):
        raise ExampleError(f"{name}: fhirServer must be https")
    ctx = req.get("context")
    if not isinstance(ctx, dict):
        raise ExampleError(f"{name}: context is required")
    user = ctx.get("userId")
    if not isinstance(user, str) or not re.match(r"^(Practitioner|PractitionerRole)/[A-Za-z0-9\-.]{1,64}$", user):
        raise ExampleError(f"{name}: context.userId must be Practitioner/<id> or PractitionerRole/<id>")
    patient_id = ctx.get("patientId")
    if not isinstance(patient_id, str) or not patient_id:
        raise ExampleError(f"{name}: context.patientId is required")
    if "encounterId" in ctx and not isinstance(ctx["encounterId"], str):
        raise ExampleError(f"{name}: context.encounterId must be a string")
    draft = ctx.get("draftOrders")
    if not isinstance(draft, dict) or draft.get("resourceType") != "Bundle":
        raise ExampleError(f"{name}: context.draftOrders must be a Bundle")
    validate_resource(draft, f"{name}: context.draftOrders")
    draft_refs = set()
    for i, entry in enumerate(draft.get("entry", [])):
        res = entry["resource"]
        where = f"{name}: context.draftOrders.entry[{i}]"
        if res["resourceType"] not in DRAFT_ORDER_TYPES:
            raise ExampleError(f"{where}: {res['resourceType']} is not an order resource")
        if res.get("status") != "draft":
            raise ExampleError(f"{where}: status must be draft")
        if res.get("subject", {}).get("reference") != f"Patient/{patient_id}":
            raise ExampleError(f"{where}: subject must be Patient/{patient_id}")
        draft_refs.add(f"{res['resourceType']}/{res['id']}")
    if not draft_refs:
        raise ExampleError(f"{name}: context.draftOrders has no orders")
    if hook == "order-select":
        selections = ctx.get("selections")
        if not isinstance(selections, list) or not selections:
            raise ExampleError(f"{name}: order-select needs context.selections")
        for sel in selections:
            if not isinstance(sel, str) or not _REFERENCE.match(sel) or sel not in draft_refs:
                raise ExampleError(f"{name}: selection {sel!r} is not a Type/id in draftOrders")
    elif "selections" in ctx:
        raise ExampleError(f"{name}: selections belongs to order-select only")
    extra = set(ctx) - {"userId", "patientId", "encounterId", "selections", "draftOrders"}
    if extra:
        raise ExampleError(f"{name}: unknown context fields {sorted(extra)}")

    prefetch = req.get("prefetch", {})
    unknown_keys = set(prefetch) - set(PREFETCH_KEYS)
    if unknown_keys:
        raise ExampleError(f"{name}: unknown prefetch keys {sorted(unknown_keys)}")
    for key, value in prefetch.items():
        where = f"{name}: prefetch.{key}"
        validate_resource(value, where)
        if key == "patient":
            if value.get("resourceType") != "Patient" or value.get("id") != patient_id:
                raise ExampleError(f"{where}: must be Patient/{patient_id}")
            continue
        if value.get("resourceType") != "Bundle" or value.get("type") != "searchset":
            raise ExampleError(f"{where}: must be a searchset Bundle")
        entries = value.get("entry", [])
        if value.get("total") != len(entries):
            raise ExampleError(f"{where}: total {value.get('total')} != {len(entries)} entries")
        for i, entry in enumerate(entries):
            res = entry["resource"]
            owner = res.get("subject") or res.get("beneficiary") or res.get("patient")
            if owner != {"reference": f"Patient/{patient_id}"}:
                raise ExampleError(f"{where}.entry[{i}]: belongs to {owner}, not Patient/{patient_id}")


# -- main ----------------------------------------------------------------------------------


def all_requests() -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for slug, (_, hooks) in PATIENT_ORDERS.items():
        for hook in hooks:
            name, req = build_request(slug, hook)
            out[name] = req
    for slug, hook, variant in (
        ("zhao-min-nsclc-egfr-l858r", "order-sign", "stat"),
        ("liu-yang-nsclc-egfr-untested", "order-sign", "stat"),
        ("li-na-nstemi-untested", "order-sign", "no-prefetch"),
    ):
        name, req = build_request(slug, hook, variant)
        out[name] = req
    missing = {p.stem for p in PATIENTS.glob("*.json")} - set(PATIENT_ORDERS)
    if missing:
        raise ExampleError(f"patients without a draft order in build_requests.py: {sorted(missing)}")
    for name, req in out.items():
        check_request(name, req)
    if len({r["hookInstance"] for r in out.values()}) != len(out):
        raise ExampleError("hookInstance values are not unique")
    return out


def render(req: dict[str, Any]) -> str:
    return json.dumps(req, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if a file is missing or stale")
    args = parser.parse_args(argv)
    try:
        requests = all_requests()
    except ExampleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stale = []
    REQUESTS.mkdir(exist_ok=True)
    for name, req in sorted(requests.items()):
        path = REQUESTS / name
        text = render(req)
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        stale.append(name)
        if not args.check:
            path.write_text(text, encoding="utf-8")
    extra = sorted(p.name for p in REQUESTS.glob("*.json") if p.name not in requests)
    if args.check:
        for name in stale:
            print(f"stale or missing: examples/requests/{name}", file=sys.stderr)
        for name in extra:
            print(f"not generated by this script: examples/requests/{name}", file=sys.stderr)
        return 1 if stale or extra else 0
    for name in extra:
        print(f"warning: examples/requests/{name} is not generated by this script", file=sys.stderr)
    print(f"{len(requests)} requests valid; {len(stale)} written")
    return 0


if __name__ == "__main__":
    sys.exit(main())
