"""HTTP endpoints: discovery, invocation, feedback, status, admin reload."""

from __future__ import annotations

import orjson
import logging
import time
from datetime import date
from typing import Any

from flask import Blueprint, Response, current_app, g, jsonify, request

from ..cards.invariants import feedback_violations
from ..errors import BadRequest, ServiceNotFound, Unauthorized
from ..fhir.prefetch import FetchSettings, gather
from ..hooks.request import parse_hook_request
from ..pipeline import run_hook
from ..storage import InvocationRecord
from .discovery import PREFETCH, REQUIRED, SERVICES

log = logging.getLogger(__name__)
bp = Blueprint("cds", __name__)


def _state() -> Any:
    return current_app.extensions["precision_cds"]


def _json_body() -> Any:
    raw = request.get_data(cache=False)
    if not raw:
        raise BadRequest("(body)", "a JSON body is required")
    try:
        return orjson.loads(raw)  # strict RFC 8259 (no NaN), depth-limited, ~3x faster than json
    except (ValueError, RecursionError):
        raise BadRequest("(body)", "is not valid JSON") from None


def _locale() -> str:
    best = request.accept_languages.best_match(["en", "zh-CN", "zh"])
    if best in ("zh", "zh-CN"):
        return "zh-CN"
    if best == "en":
        return "en"
    return str(_state().settings.default_locale)


@bp.get("/cds-services")
def discovery() -> Response:
    return jsonify({"services": [s.discovery() for s in SERVICES.values()]})


@bp.post("/cds-services/<service_id>")
def invoke(service_id: str) -> Response:
    state = _state()
    service = SERVICES.get(service_id)
    if service is None:
        raise ServiceNotFound(f"no CDS service '{service_id[:64]}'")
    started = time.perf_counter()
    body = _json_body()
    hook_request = parse_hook_request(body, service.hook)
    g.audit = {"service": service_id, "hook": service.hook, "hookInstance": hook_request.hook_instance, "patient": hook_request.patient_id}
    settings = state.settings
    fetch = FetchSettings(
        timeout_connect=settings.fhir_connect_timeout,
        timeout_read=settings.fhir_read_timeout,
        total_budget=settings.fhir_total_budget,
        max_pages=settings.fhir_max_pages,
    )
    gathered = gather(
        PREFETCH, hook_request.prefetch, hook_request.context, hook_request.fhir_server,
        hook_request.fhir_authorization, fetch, set(REQUIRED),
    )
    ruleset = state.holder.current
    already_shown = None
    if settings.suppress_repeat_at_sign and service.hook == "order-sign":
        store = state.store
        already_shown = lambda f: store.card_issued_for(f.rule.id, f.order.reference, "order-select")  # noqa: E731
    result = run_hook(ruleset, hook_request, gathered.all_resources(), _locale(), date.today(), already_shown=already_shown)
    duration = (time.perf_counter() - started) * 1000
    state.store.record_invocation(
        InvocationRecord(
            service_id=service_id,
            hook=service.hook,
            hook_instance=hook_request.hook_instance,
            patient_id=hook_request.patient_id,
            rules_fired=[f.rule.id for f, _ in result.cards],
            cards=[(c["uuid"], f.rule.id, f.order.reference) for f, c in result.cards],
            duration_ms=duration,
            outcome="ok" if not gathered.problems else "ok-partial-data",
            http_status=200,
            ruleset_version=ruleset.version,
        )
    )
    g.audit_written = True
    log.info(
        "invocation service=%s cards=%d rules=%d duration_ms=%.1f partial=%s",
        service_id, len(result.cards), len(result.firings), duration, ",".join(sorted(gathered.problems)) or "-",
    )
    return jsonify(result.response)


@bp.post("/cds-services/<service_id>/feedback")
def feedback(service_id: str) -> Response:
    state = _state()
    if service_id not in SERVICES:
        raise ServiceNotFound(f"no CDS service '{service_id[:64]}'")
    body = _json_body()
    problems = feedback_violations(body)
    if problems:
        field, reason = problems[0]
        raise BadRequest(field, reason)
    stored = state.store.record_feedback(service_id, body["feedback"])
    log.info("feedback service=%s entries=%d", service_id, stored)
    return Response(status=200)


@bp.get("/status")
def status() -> Response:
    state = _state()
    out = state.holder.status()
    out["database"] = "ok" if state.store.ping() else "unavailable"
    return jsonify(out)


@bp.post("/admin/reload")
def admin_reload() -> Response:
    state = _state()
    token = state.settings.admin_token
    header = request.headers.get("Authorization", "")
    if not token or header != f"Bearer {token}":
        raise Unauthorized("unauthorized")
    outcome = state.holder.reload()
    code = 200 if outcome.ok else 422
    return jsonify({"ok": outcome.ok, "version": outcome.version, "problems": [p.as_dict() for p in outcome.problems]}), code  # type: ignore[return-value]
