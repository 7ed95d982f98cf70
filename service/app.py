"""`create_app(config)`: the one place where the service is wired together.

Nothing happens at import. Packs and knowledge load inside create_app, so a
broken pack set fails the start-up loudly (with file:line) instead of
serving nothing; later reloads keep the last good set instead.
"""

from __future__ import annotations

import logging
import secrets
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Mapping

from flask import Flask, Response, g, jsonify, request
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from .api import security
from .api.discovery import SERVICES
from .api.routes import bp
from .config import Settings, load_settings
from .engine.holder import RuleSetHolder
from .errors import BadRequest, CdsError, PatientDataUnavailable
from .storage import InvocationRecord, Store

log = logging.getLogger(__name__)


@dataclass
class ServiceState:
    settings: Settings
    holder: RuleSetHolder
    store: Store


def _hash_key(settings: Settings) -> bytes:
    """The audit hash key: configured, or generated once and kept beside the database."""
    if settings.audit_hash_key:
        return settings.audit_hash_key.encode()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    path = settings.data_dir / "audit-hash.key"
    if not path.exists():
        path.write_text(secrets.token_hex(32), encoding="utf-8")
        path.chmod(0o600)
    return path.read_text(encoding="utf-8").strip().encode()


def create_app(config: Settings | Mapping[str, Any] | None = None, prebuilt: Any = None) -> Flask:
    """The WSGI app. `prebuilt` = (RuleSet, file fingerprint) built by the caller, to skip compiling."""
    settings = config if isinstance(config, Settings) else load_settings(config or {})
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.json.ensure_ascii = False  # type: ignore[attr-defined]
    started = time.perf_counter()
    holder = RuleSetHolder(settings.rules_dir, settings.knowledge_dir, settings.include_draft_packs, initial=prebuilt)
    store = Store(settings.effective_database_url, _hash_key(settings), spool_dir=settings.data_dir / "spool")
    app.extensions["precision_cds"] = ServiceState(settings, holder, store)
    if not settings.auth_enabled:
        log.warning(
            "AUTHENTICATION IS OFF: any caller can invoke this service. "
            "Configure JWT issuers before exposing it beyond this machine."
        )
    holder.watch(settings.reload_interval_seconds)
    _install_sighup(holder)
    app.register_blueprint(bp)
    _register_error_handlers(app)
    security.init_app(app, settings)  # CDS Hooks JWT authentication, CORS, /openapi.yaml

    @app.after_request
    def security_headers(response: Response) -> Response:
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Cache-Control", "no-store")
        response.headers.setdefault("Referrer-Policy", "no-referrer")
        response.headers.setdefault("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
        return response

    log.info(
        "precision-cds ready: %d rules in %d packs (version %s), loaded in %.0f ms",
        len(holder.current.rules), len(holder.current.packs), holder.current.version,
        (time.perf_counter() - started) * 1000,
    )
    return app


def _install_sighup(holder: RuleSetHolder) -> None:
    """SIGHUP reloads packs and knowledge (only possible from the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        signal.signal(signal.SIGHUP, lambda *_: holder.reload())
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX or embedded
        pass


def _error_response(status: int, message: str, field: str | None = None) -> Response:
    """Errors as an OperationOutcome (CDS Hooks 3.0 SHOULD); `expression` names the bad field."""
    code = {400: "invalid", 401: "login", 404: "not-found", 412: "not-found", 413: "too-long", 503: "transient"}.get(status, "exception")
    issue: dict[str, Any] = {"severity": "error", "code": code, "diagnostics": message}
    if field:
        issue["expression"] = [field]
    response = jsonify({"resourceType": "OperationOutcome", "issue": [issue]})
    response.status_code = status
    return response


def _audit_failure(status: int, outcome: str) -> None:
    """Invocations that end in an error are audited too (no card, the outcome says why)."""
    audit = g.get("audit")
    if not audit or g.get("audit_written"):
        return
    from flask import current_app

    state = current_app.extensions["precision_cds"]
    state.store.record_invocation(
        InvocationRecord(
            service_id=audit["service"], hook=audit["hook"], hook_instance=audit["hookInstance"],
            patient_id=audit["patient"], rules_fired=[], cards=[], duration_ms=0.0,
            outcome=outcome, http_status=status, ruleset_version=state.holder.current.version,
        )
    )


def _register_error_handlers(app: Flask) -> None:
    @app.errorhandler(CdsError)
    def cds_error(exc: CdsError) -> Response:
        if exc.status == 401:
            return _error_response(401, "unauthorized")
        if isinstance(exc, PatientDataUnavailable):
            _audit_failure(412, "412-data-unavailable")
            log.warning("invocation answered 412: prefetch key %s unavailable (%s)", exc.key, exc.reason)
        field = exc.field if isinstance(exc, BadRequest) else None
        if exc.status >= 500:
            log.error("%s: %s", type(exc).__name__, exc.message)
        return _error_response(exc.status, exc.message, field)

    @app.errorhandler(RequestEntityTooLarge)
    def too_large(exc: RequestEntityTooLarge) -> Response:
        limit = app.config["MAX_CONTENT_LENGTH"]
        return _error_response(413, f"request body exceeds {limit} bytes", "(body)")

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        return _error_response(exc.code or 500, exc.description or exc.name)

    @app.errorhandler(Exception)
    def unexpected(exc: Exception) -> Response:
        # Logged with the type and location only: the message could carry patient data.
        log.error("unexpected %s in %s %s", type(exc).__name__, request.method, request.path, exc_info=False)
        log.debug("traceback", exc_info=exc)
        return _error_response(500, "internal error; the event was logged without patient data")


__all__ = ["create_app", "SERVICES"]
