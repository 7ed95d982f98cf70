"""Validate a CDS Hooks 2.0 invocation (order-sign / order-select) and its draft orders.

Every rejection names the field, so an EHR integrator can fix the client
without reading our code. Real clients differ from the letter of the spec
(the CDS Hooks sandbox sends `draftOrders` without `Bundle.type`); we accept
what is harmless and refuse what would make advice wrong.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from fhir.resources.R4B.medicationrequest import MedicationRequest
from fhir.resources.R4B.servicerequest import ServiceRequest
from pydantic import ValidationError

from ..errors import BadRequest

HOOKS = ("order-sign", "order-select")
_REFERENCE = re.compile(r"^[A-Z][A-Za-z]+/[A-Za-z0-9\-.]{1,64}$")
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_ORDER_MODELS = {"MedicationRequest": MedicationRequest, "ServiceRequest": ServiceRequest}
#: Other request types a hook may carry; kept, but no rule reads them yet.
_OTHER_ORDERS = {"DeviceRequest", "NutritionOrder", "VisionPrescription", "CommunicationRequest", "Task", "ImmunizationRecommendation"}


@dataclass(frozen=True, slots=True)
class HookRequest:
    hook: str
    hook_instance: str
    user_id: str
    patient_id: str
    encounter_id: str | None
    draft_orders: list[dict[str, Any]]
    selections: list[str]
    fhir_server: str | None
    fhir_authorization: dict[str, Any] | None
    prefetch: dict[str, Any] | None
    context: dict[str, Any]

    def orders_in_scope(self) -> list[dict[str, Any]]:
        """order-select: only the selected orders; order-sign: all draft orders."""
        if self.hook != "order-select":
            return self.draft_orders
        wanted = set(self.selections)
        return [o for o in self.draft_orders if f"{o['resourceType']}/{o['id']}" in wanted]


def _require_str(obj: dict[str, Any], key: str, path: str) -> str:
    if key not in obj or obj[key] is None:
        raise BadRequest(path, "is required")
    value = obj[key]
    if not isinstance(value, str) or not value.strip():
        raise BadRequest(path, "must be a non-empty string")
    return value


def parse_hook_request(body: Any, expected_hook: str) -> HookRequest:
    """Raise BadRequest (field named) unless `body` is a valid invocation of `expected_hook`."""
    if not isinstance(body, dict):
        raise BadRequest("(body)", "must be a JSON object")
    hook = _require_str(body, "hook", "hook")
    if hook != expected_hook:
        raise BadRequest("hook", f"'{hook[:40]}' does not match this service's hook '{expected_hook}'")
    instance = _require_str(body, "hookInstance", "hookInstance")
    try:
        uuid.UUID(instance)
    except ValueError:
        raise BadRequest("hookInstance", "must be a UUID") from None
    fhir_server = body.get("fhirServer")
    if fhir_server is not None and (not isinstance(fhir_server, str) or not re.match(r"^https?://", fhir_server)):
        raise BadRequest("fhirServer", "must be an http(s) URL")
    auth = body.get("fhirAuthorization")
    if auth is not None:
        if not isinstance(auth, dict):
            raise BadRequest("fhirAuthorization", "must be an object")
        if fhir_server is None:
            raise BadRequest("fhirServer", "is required when fhirAuthorization is present (cds-r-1)")
        for key in ("access_token", "token_type", "scope", "subject"):
            _require_str(auth, key, f"fhirAuthorization.{key}")
        if auth["token_type"] != "Bearer":
            raise BadRequest("fhirAuthorization.token_type", "must be 'Bearer'")
        if "expires_in" not in auth or isinstance(auth["expires_in"], bool) or not isinstance(auth["expires_in"], (int, float)):
            raise BadRequest("fhirAuthorization.expires_in", "is required and must be a number")
    context = body.get("context")
    if context is None:
        raise BadRequest("context", "is required")
    if not isinstance(context, dict):
        raise BadRequest("context", "must be an object")
    user_id = _require_str(context, "userId", "context.userId")
    if not _REFERENCE.match(user_id) or user_id.split("/")[0] not in ("Practitioner", "PractitionerRole", "Patient", "RelatedPerson"):
        raise BadRequest("context.userId", "must be a reference such as 'Practitioner/123'")
    patient_id = _require_str(context, "patientId", "context.patientId")
    if not _ID.match(patient_id):
        raise BadRequest("context.patientId", "must be a FHIR id (letters, digits, '-', '.'; at most 64)")
    encounter = context.get("encounterId")
    if encounter is not None and (not isinstance(encounter, str) or not _ID.match(encounter)):
        raise BadRequest("context.encounterId", "must be a FHIR id")
    orders = _draft_orders(context.get("draftOrders"))
    selections: list[str] = []
    if hook == "order-select":
        raw = context.get("selections")
        if raw is None:
            raise BadRequest("context.selections", "is required for order-select")
        if not isinstance(raw, list) or not raw or not all(isinstance(s, str) for s in raw):
            raise BadRequest("context.selections", "must be a non-empty array of references")
        known = {f"{o['resourceType']}/{o['id']}" for o in orders}
        for i, sel in enumerate(raw):
            if sel not in known:
                raise BadRequest(f"context.selections[{i}]", "does not refer to a resource in context.draftOrders")
        selections = list(raw)
    prefetch = body.get("prefetch")
    if prefetch is not None and not isinstance(prefetch, dict):
        raise BadRequest("prefetch", "must be an object")
    return HookRequest(
        hook=hook,
        hook_instance=instance,
        user_id=user_id,
        patient_id=patient_id,
        encounter_id=encounter,
        draft_orders=orders,
        selections=selections,
        fhir_server=fhir_server.rstrip("/") if isinstance(fhir_server, str) else None,
        fhir_authorization=auth,
        prefetch=prefetch,
        context=context,
    )


def _draft_orders(bundle: Any) -> list[dict[str, Any]]:
    path = "context.draftOrders"
    if bundle is None:
        raise BadRequest(path, "is required")
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise BadRequest(path, "must be a FHIR Bundle")
    if "type" in bundle and not isinstance(bundle["type"], str):
        raise BadRequest(f"{path}.type", "must be a string")
    entries = bundle.get("entry", [])
    if not isinstance(entries, list):
        raise BadRequest(f"{path}.entry", "must be an array")
    orders: list[dict[str, Any]] = []
    seen: set[str] = set()
    for i, entry in enumerate(entries):
        where = f"{path}.entry[{i}].resource"
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            raise BadRequest(where, "is required and must be a FHIR resource")
        rtype = resource.get("resourceType")
        if not isinstance(rtype, str):
            raise BadRequest(f"{where}.resourceType", "is required")
        rid = resource.get("id")
        if not isinstance(rid, str) or not _ID.match(rid):
            raise BadRequest(f"{where}.id", "is required (suggestions delete and replace drafts by id)")
        model = _ORDER_MODELS.get(rtype)
        if model is None:
            if rtype in _OTHER_ORDERS:
                continue
            raise BadRequest(f"{where}.resourceType", f"'{rtype[:40]}' is not an order type this service accepts")
        try:
            model.model_validate(_lenient(resource))
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first.get("loc", ()) if p != "__root__")
            raise BadRequest(f"{where}{'.' + loc if loc else ''}", _short(first.get("msg", "is invalid"))) from None
        except (ValueError, TypeError) as exc:
            raise BadRequest(where, _short(str(exc))) from None
        ref = f"{rtype}/{rid}"
        if ref in seen:
            raise BadRequest(f"{where}.id", f"{ref} appears twice in draftOrders")
        seen.add(ref)
        orders.append(resource)
    return orders


def _lenient(resource: dict[str, Any]) -> dict[str, Any]:
    """Fill what real clients omit in a draft but R4 requires (the sandbox sends bare drafts)."""
    fixed = dict(resource)
    fixed.setdefault("status", "draft")
    fixed.setdefault("intent", "order")
    fixed.setdefault("subject", {"reference": "Patient/unknown"})
    if fixed.get("resourceType") == "MedicationRequest" and not any(
        k in fixed for k in ("medicationCodeableConcept", "medicationReference")
    ):
        fixed["medicationCodeableConcept"] = {"text": "not yet chosen"}
    return fixed


def _short(message: str) -> str:
    message = message.replace("\n", " ")
    return message[:200]
