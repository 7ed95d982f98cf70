"""Test key material, generated at run time (nothing secret is committed).

Helpers for the security tests: EC / RSA signing keys with their public JWKs,
JWKS files, CDS Hooks client tokens, an auth TOML config, an app with
authentication on, a local JWKS HTTP server and a live WSGI server.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from werkzeug.serving import make_server

from service.app import create_app
from service.config import load_settings

AUDIENCE_BASE = "https://cds.example.org"
ISSUER = "https://ehr.example.org"
_CURVES = {"ES256": ec.SECP256R1, "ES384": ec.SECP384R1, "ES512": ec.SECP521R1}


@dataclass
class SigningKey:
    kid: str
    alg: str
    private_key: Any
    public_jwk: dict[str, Any]

    def public_pem(self) -> bytes:
        return self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


def _jwk(private_key: Any, kid: str, alg: str) -> dict[str, Any]:
    algo = jwt.algorithms.ECAlgorithm if alg.startswith("ES") else jwt.algorithms.RSAAlgorithm
    data = json.loads(algo.to_jwk(private_key.public_key()))
    data.update({"kid": kid, "use": "sig", "alg": alg})
    return data


def ec_key(kid: str = "ec-1", alg: str = "ES384") -> SigningKey:
    key = ec.generate_private_key(_CURVES[alg]())
    return SigningKey(kid, alg, key, _jwk(key, kid, alg))


def rsa_key(kid: str = "rsa-1", alg: str = "RS384", bits: int = 2048) -> SigningKey:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    return SigningKey(kid, alg, key, _jwk(key, kid, alg))


def jwks(*keys: SigningKey) -> dict[str, Any]:
    return {"keys": [k.public_jwk for k in keys]}


def write_jwks(path: Path, *keys: SigningKey) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(jwks(*keys)), encoding="utf-8")
    return path


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(path: str, *, iss: str = ISSUER, base: str = AUDIENCE_BASE, lifetime: int = 300, **extra: Any) -> dict[str, Any]:
    now = int(time.time())
    out: dict[str, Any] = {"iss": iss, "aud": base + path, "exp": now + lifetime, "iat": now, "jti": str(uuid.uuid4())}
    out.update(extra)
    return {k: v for k, v in out.items() if v is not None}


def token(key: SigningKey, path: str, *, headers: dict[str, Any] | None = None, **claim_overrides: Any) -> str:
    """A CDS Hooks client JWT for `path` (a fresh jti each call); overrides set/clear (None) claims."""
    hdr = {"kid": key.kid, "typ": "JWT", **(headers or {})}
    return jwt.encode(claims(path, **claim_overrides), key.private_key, algorithm=key.alg, headers=hdr)


def unsigned_token(header: dict[str, Any], payload: dict[str, Any], secret: bytes | None = None) -> str:
    """Hand-made JWS: alg none (no secret) or HS256 keyed with `secret` (PyJWT refuses both)."""
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(payload).encode())}"
    if secret is None:
        return signing_input + "."
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value))


def write_auth_config(path: Path, issuers: list[dict[str, Any]], **scalars: Any) -> Path:
    """A PCDS_AUTH_CONFIG TOML file."""
    scalars.setdefault("audience_base", AUDIENCE_BASE)
    lines = [f"{k} = {_toml(v)}" for k, v in scalars.items()]
    for issuer in issuers:
        lines.append("\n[[issuers]]")
        lines.extend(f"{k} = {_toml(v)}" for k, v in issuer.items())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_app(data_dir: Path, auth_config: Path | None, **overrides: Any) -> Any:
    """The real app on SQLite in `data_dir`; authentication on when `auth_config` is given."""
    values: dict[str, Any] = {
        "data_dir": data_dir, "reload_interval_seconds": 0, "audit_hash_key": "test-key",
        "auth_enabled": auth_config is not None,
    }
    values.update(overrides)
    settings = load_settings(values, environ={})
    with pytest.MonkeyPatch.context() as mp:
        import os

        for name in [n for n in os.environ if n.startswith("PCDS_AUTH_")]:
            mp.delenv(name)
        if auth_config is not None:
            mp.setenv("PCDS_AUTH_CONFIG", str(auth_config))
        return create_app(settings)


def close_app(app: Any) -> None:
    state = app.extensions["precision_cds"]
    state.holder.stop()
    state.store.close()


# ------------------------------------------------------------------ servers


@dataclass
class JwksServer:
    """Serves JSON documents by path on 127.0.0.1 and counts the requests per path."""

    documents: dict[str, Any] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    base_url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str) -> str:
        return self.base_url + path


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


@contextmanager
def jwks_server(documents: dict[str, Any] | None = None) -> Iterator[JwksServer]:
    state = JwksServer(dict(documents or {}))

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

        def do_GET(self) -> None:  # noqa: N802
            with state.lock:
                state.hits[self.path] = state.hits.get(self.path, 0) + 1
                doc = state.documents.get(self.path)
            body = json.dumps(doc if doc is not None else {"error": "not found"}).encode()
            self.send_response(200 if doc is not None else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = _QuietServer(("127.0.0.1", 0), Handler)
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@contextmanager
def live_server(app: Any) -> Iterator[str]:
    """Run `app` with werkzeug on 127.0.0.1:<ephemeral> in a thread; yields the base URL."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="live-app", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
