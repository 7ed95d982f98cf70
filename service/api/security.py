"""Authentication (CDS Hooks 2.0 JWT), CORS and the OpenAPI document.

`init_app(app, settings)` is called once by `create_app`. It:

* serves `GET /openapi.yaml` (no token needed, like `/status`);
* answers CORS preflights and echoes `Access-Control-Allow-Origin` for the
  origins in `Settings.cors_origins` only;
* when `Settings.auth_enabled`, checks the Bearer JWT on every
  `/cds-services*` call (discovery, invocation, feedback) as the CDS Hooks
  2.0 security section asks: an issuer allowlist with each issuer's JWKS
  (from a URL, cached, or a file), asymmetric algorithms only, `aud` equal
  to the endpoint URL, `exp` / `iat` with a small leeway, a `jti` replay
  cache, an optional `tenant` and an optional `jku` allowlist.

Any failure is `Unauthorized` (401, no detail in the body); the reason is
logged at INFO, never the token. The issuer and JWKS settings are a
`SecuritySettings`, read from `PCDS_AUTH_*` variables and/or the TOML file
named by `PCDS_AUTH_CONFIG` (see docs/auth.md).
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import time
import tomllib
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, Mapping

import jwt
import requests
from flask import Blueprint, Flask, Response, g, request

from ..config import Settings
from ..errors import Unauthorized

log = logging.getLogger(__name__)

#: Asymmetric algorithms this service can verify. `none` and HMAC (HS*) are never accepted:
#: a symmetric key would have to be shared with every EHR, and HS* with a public key is
#: the classic algorithm-confusion attack.
SUPPORTED_ALGORITHMS = ("ES256", "ES384", "ES512", "RS256", "RS384", "RS512")
_EC_CURVES = {"ES256": "P-256", "ES384": "P-384", "ES512": "P-521"}
_PRIVATE_JWK_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "k")
_BEARER = re.compile(r"^Bearer +([A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*) *$", re.IGNORECASE)
_PROTECTED_PREFIX = "/cds-services"
OPENAPI_PATH = Path(__file__).resolve().parent.parent / "openapi.yaml"
CORS_ALLOWED_METHODS = ("GET", "POST", "OPTIONS")
CORS_ALLOWED_HEADERS = ("Authorization", "Content-Type", "Accept", "Accept-Language")
CORS_MAX_AGE_SECONDS = 600


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class IssuerConfig:
    """One allowlisted `iss` and where its signing keys come from."""

    iss: str
    #: JWKS URL, fetched with requests (cached; re-fetched on an unknown kid, rate-limited).
    jwks_url: str = ""
    #: JWKS file (JSON `{"keys": [...]}`), re-read when it changes.
    jwks_file: Path | None = None
    #: `jku` header values accepted for this issuer; a token whose jku is not listed is refused.
    jku: tuple[str, ...] = ()
    #: Required `tenant` claim for this issuer; empty: `SecuritySettings.tenant`.
    tenant: str = ""


@dataclass(frozen=True)
class SecuritySettings:
    """Authentication settings beyond `Settings.auth_enabled` (see docs/auth.md)."""

    issuers: tuple[IssuerConfig, ...] = ()
    #: The service's public base URL; `aud` must equal audience_base + request path.
    audience_base: str = ""
    leeway_seconds: float = 30.0
    algorithms: tuple[str, ...] = ("ES384", "RS384", "ES256", "RS256", "ES512", "RS512")
    #: Required `tenant` claim for every issuer without its own; empty: not checked.
    tenant: str = ""
    #: Tokens whose exp - iat exceeds this are refused (CDS Hooks tokens live minutes).
    max_token_lifetime_seconds: float = 3600.0
    max_token_bytes: int = 16384
    jwks_connect_timeout: float = 2.0
    jwks_read_timeout: float = 3.0
    #: A fetched key set is used this long before it is fetched again.
    jwks_cache_seconds: float = 3600.0
    #: At most one fetch per key-set URL in this interval (unknown kid, failures).
    jwks_refetch_interval_seconds: float = 60.0
    jwks_max_bytes: int = 1_000_000


_SCALARS = {f.name: f for f in fields(SecuritySettings) if f.name != "issuers"}
_ISSUER_KEYS = {f.name for f in fields(IssuerConfig)}


def _coerce(name: str, raw: Any) -> Any:
    default = getattr(SecuritySettings(), name)
    if isinstance(default, tuple):
        if isinstance(raw, (list, tuple)):
            return tuple(str(x).strip() for x in raw if str(x).strip())
        return tuple(s.strip() for s in str(raw).split(",") if s.strip())
    if isinstance(default, float):
        return float(raw)
    if isinstance(default, int):
        return int(raw)
    return str(raw).strip()


def _issuer_from(data: Mapping[str, Any], base_dir: Path | None, where: str) -> IssuerConfig:
    unknown = set(data) - _ISSUER_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown issuer setting(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(_ISSUER_KEYS))})")
    iss = str(data.get("iss") or "").strip()
    if not iss:
        raise ValueError(f"{where}: 'iss' is required")
    jwks_file = data.get("jwks_file") or None
    path: Path | None = None
    if jwks_file:
        path = Path(str(jwks_file)).expanduser()
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
    jku = data.get("jku") or ()
    if isinstance(jku, str):
        jku = tuple(s.strip() for s in jku.split(",") if s.strip())
    return IssuerConfig(
        iss=iss,
        jwks_url=str(data.get("jwks_url") or "").strip(),
        jwks_file=path,
        jku=tuple(str(u) for u in jku),
        tenant=str(data.get("tenant") or "").strip(),
    )


def load_security_settings(
    environ: Mapping[str, str] | None = None, config_file: str | os.PathLike[str] | None = None
) -> SecuritySettings:
    """Defaults < TOML file (`PCDS_AUTH_CONFIG` or argument) < `PCDS_AUTH_<NAME>` variables.

    Variables: one per scalar setting (`PCDS_AUTH_AUDIENCE_BASE`, `PCDS_AUTH_LEEWAY_SECONDS`, ...),
    plus a one-issuer shorthand appended to the file's issuers: `PCDS_AUTH_ISSUER` with
    `PCDS_AUTH_JWKS_URL`, `PCDS_AUTH_JWKS_FILE` and/or `PCDS_AUTH_JKU` (comma-separated).
    """
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    issuers: list[IssuerConfig] = []
    path = config_file or env.get("PCDS_AUTH_CONFIG")
    if path:
        text = Path(path).read_text(encoding="utf-8")
        data = tomllib.loads(text)
        base_dir = Path(path).resolve().parent
        for key, value in data.items():
            if key == "issuers":
                if not isinstance(value, list):
                    raise ValueError(f"{path}: 'issuers' must be an array of tables ([[issuers]])")
                issuers.extend(_issuer_from(v, base_dir, f"{path}: issuers[{i}]") for i, v in enumerate(value))
            elif key in _SCALARS:
                values[key] = value
            else:
                raise ValueError(f"{path}: unknown setting '{key}' (known: issuers, {', '.join(sorted(_SCALARS))})")
    for name in _SCALARS:
        env_name = f"PCDS_AUTH_{name.upper()}"
        if env_name in env:
            values[name] = env[env_name]
    if env.get("PCDS_AUTH_ISSUER"):
        issuers.append(
            _issuer_from(
                {
                    "iss": env["PCDS_AUTH_ISSUER"],
                    "jwks_url": env.get("PCDS_AUTH_JWKS_URL", ""),
                    "jwks_file": env.get("PCDS_AUTH_JWKS_FILE", ""),
                    "jku": env.get("PCDS_AUTH_JKU", ""),
                },
                Path.cwd(),
                "PCDS_AUTH_ISSUER",
            )
        )
    coerced = {k: _coerce(k, v) for k, v in values.items()}
    return replace(SecuritySettings(), issuers=tuple(issuers), **coerced)


def validate_security_settings(sec: SecuritySettings) -> SecuritySettings:
    """Refuse to start with authentication on but unusable (never 'accept all' or 'refuse all')."""
    problems: list[str] = []
    base = sec.audience_base.rstrip("/")
    if not re.match(r"^https?://[^/\s]+(/\S*)?$", base):
        problems.append("PCDS_AUTH_AUDIENCE_BASE must be the service's public base URL, e.g. https://cds.example.org")
    elif base.startswith("http://"):
        log.warning("PCDS_AUTH_AUDIENCE_BASE is http://: CDS Hooks requires TLS in production")
    bad = [a for a in sec.algorithms if a not in SUPPORTED_ALGORITHMS]
    if bad or not sec.algorithms:
        problems.append(f"algorithms must be a non-empty subset of {', '.join(SUPPORTED_ALGORITHMS)} (got {', '.join(bad) or 'none'})")
    if not sec.issuers:
        problems.append("no issuers configured ([[issuers]] in PCDS_AUTH_CONFIG, or PCDS_AUTH_ISSUER)")
    seen: set[str] = set()
    for issuer in sec.issuers:
        if issuer.iss in seen:
            problems.append(f"issuer {issuer.iss} is configured twice")
        seen.add(issuer.iss)
        if not (issuer.jwks_url or issuer.jwks_file or issuer.jku):
            problems.append(f"issuer {issuer.iss}: needs jwks_url, jwks_file or jku")
        if issuer.jwks_url and issuer.jwks_file:
            problems.append(f"issuer {issuer.iss}: give jwks_url or jwks_file, not both")
        for url in (issuer.jwks_url, *issuer.jku):
            if url and not re.match(r"^https?://", url):
                problems.append(f"issuer {issuer.iss}: {url!r} is not an http(s) URL")
            elif url.startswith("http://"):
                log.warning("issuer %s: key set URL %s is http:// (use https in production)", issuer.iss, url)
        if issuer.jwks_file is not None and not issuer.jwks_file.is_file():
            problems.append(f"issuer {issuer.iss}: jwks_file {issuer.jwks_file} does not exist")
    if not 0 <= sec.leeway_seconds <= 300:
        problems.append("leeway_seconds must be between 0 and 300")
    if sec.max_token_lifetime_seconds <= 0:
        problems.append("max_token_lifetime_seconds must be positive")
    if sec.jwks_connect_timeout <= 0 or sec.jwks_read_timeout <= 0:
        problems.append("JWKS timeouts must be positive")
    if problems:
        raise ValueError("authentication is enabled but misconfigured:\n  " + "\n  ".join(problems))
    return replace(sec, audience_base=base)


# ---------------------------------------------------------------- key sets


def _parse_jwks(data: Any) -> dict[str, dict[str, Any]]:
    """kid -> JWK for the public signing keys in a JWKS document."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError("not a JWKS document (no 'keys' array)")
    out: dict[str, dict[str, Any]] = {}
    for jwk in data["keys"]:
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
            continue
        if jwk.get("use", "sig") != "sig":
            continue
        if any(m in jwk for m in _PRIVATE_JWK_MEMBERS):
            log.warning("JWKS key %.40r carries private or symmetric key material; ignored", jwk["kid"])
            continue
        out[jwk["kid"]] = jwk
    return out


class JwksFile:
    """A JWKS from a file, re-read whenever its modification time or size changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int] | None = None
        self._keys: dict[str, dict[str, Any]] = {}
        try:  # strict at start-up: a broken key file must stop the service, not refuse everyone
            self._keys = _parse_jwks(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            raise ValueError(f"JWKS file {path}: {exc}") from None
        st = path.stat()
        self._stamp = (st.st_mtime_ns, st.st_size)

    def _load(self) -> None:
        try:
            st = self.path.stat()
            stamp: tuple[int, int] | None = (st.st_mtime_ns, st.st_size)
        except OSError:
            stamp = None
        if stamp == self._stamp:
            return
        self._stamp = stamp  # warn once per change, not once per request
        try:
            if stamp is None:
                raise FileNotFoundError(str(self.path))
            keys = _parse_jwks(json.loads(self.path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as exc:
            log.warning("JWKS file %s unreadable (%s); keeping %d known keys", self.path, type(exc).__name__, len(self._keys))
            return
        self._keys = keys

    def key_for(self, kid: str) -> dict[str, Any] | None:
        with self._lock:
            self._load()
            return self._keys.get(kid)


class JwksUrl:
    """A JWKS from a URL: cached, re-fetched after `cache_seconds` or on an unknown kid,
    but at most once per `refetch_interval` (so unknown kids cannot make us hammer the
    issuer, and an unreachable issuer costs one timeout per interval, not one per request)."""

    def __init__(self, url: str, sec: SecuritySettings, session: requests.Session | None = None) -> None:
        self.url = url
        self._sec = sec
        self._session = session or requests.Session()
        self._lock = threading.Lock()
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched_at: float | None = None
        self._attempted_at: float | None = None
        self.fetches = 0

    def _may_fetch(self, now: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at >= self._sec.jwks_refetch_interval_seconds

    def _fetch(self) -> None:
        self._attempted_at = time.monotonic()
        self.fetches += 1
        try:
            with self._session.get(
                self.url,
                timeout=(self._sec.jwks_connect_timeout, self._sec.jwks_read_timeout),
                headers={"Accept": "application/json"},
                allow_redirects=False,
                stream=True,
            ) as resp:
                if resp.status_code != 200:
                    raise ValueError(f"HTTP {resp.status_code}")
                body = b""
                for chunk in resp.iter_content(65536):
                    body += chunk
                    if len(body) > self._sec.jwks_max_bytes:
                        raise ValueError("JWKS larger than jwks_max_bytes")
            keys = _parse_jwks(json.loads(body))
        except (requests.RequestException, ValueError, OSError) as exc:
            reason = str(exc) if isinstance(exc, ValueError) and str(exc).startswith(("HTTP", "JWKS", "not a")) else type(exc).__name__
            log.warning("JWKS fetch from %s failed (%s); keeping %d known keys", self.url, reason, len(self._keys))
            return
        self._keys = keys
        self._fetched_at = time.monotonic()
        log.info("JWKS fetched from %s: %d signing keys", self.url, len(keys))

    def key_for(self, kid: str) -> dict[str, Any] | None:
        with self._lock:
            now = time.monotonic()
            stale = self._fetched_at is None or now - self._fetched_at >= self._sec.jwks_cache_seconds
            if stale and self._may_fetch(now):
                self._fetch()
            jwk = self._keys.get(kid)
            if jwk is None and self._may_fetch(time.monotonic()):
                self._fetch()  # key rotation: the issuer may have published a new key
                jwk = self._keys.get(kid)
            return jwk


class ReplayCache:
    """(iss, jti) pairs seen, each kept until its token can no longer be accepted.

    In memory, per process: with several workers a replay to another worker is not
    caught; a shared store (the database) is the upgrade path (docs/auth.md).
    """

    def __init__(self) -> None:
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        self._next_purge = 0.0

    def __len__(self) -> int:
        return len(self._seen)

    def add_if_new(self, iss: str, jti: str, keep_until: float) -> bool:
        now = time.time()
        with self._lock:
            if now >= self._next_purge:
                self._seen = {k: v for k, v in self._seen.items() if v > now}
                self._next_purge = now + 30.0
            key = (iss, jti)
            until = self._seen.get(key)
            if until is not None and until > now:
                return False
            self._seen[key] = keep_until
            return True


# ---------------------------------------------------------------- verification


class AuthFailure(Exception):
    """Internal: why a token was refused (logged, never sent to the client)."""


def _safe(value: Any, limit: int = 80) -> str:
    """An attacker-supplied value made safe for one log line."""
    return re.sub(r"[^\x20-\x7e]", "?", str(value)[:limit])


def _numeric(claims: Mapping[str, Any], name: str) -> float:
    value = claims.get(name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise AuthFailure(f"claim {name} is not a number")
    return float(value)


class Authenticator:
    """Checks one request's Bearer JWT against the configured issuers."""

    def __init__(self, sec: SecuritySettings, session: requests.Session | None = None) -> None:
        self.sec = sec
        self.session = session or requests.Session()
        self.issuers = {i.iss: i for i in sec.issuers}
        self.replay = ReplayCache()
        self._sources: dict[str, JwksFile | JwksUrl] = {}
        for issuer in sec.issuers:
            if issuer.jwks_file is not None:
                self._sources[f"file:{issuer.jwks_file}"] = JwksFile(issuer.jwks_file)
            for url in (issuer.jwks_url, *issuer.jku):
                if url and url not in self._sources:
                    self._sources[url] = JwksUrl(url, sec, self.session)

    def source(self, key: str) -> JwksFile | JwksUrl | None:
        return self._sources.get(key)

    def _key_source(self, issuer: IssuerConfig, header: Mapping[str, Any]) -> JwksFile | JwksUrl:
        if "jku" in header:
            jku = header["jku"]
            if not isinstance(jku, str) or jku not in issuer.jku:
                raise AuthFailure(f"jku {_safe(jku)} is not allowlisted for issuer {_safe(issuer.iss)}")
            return self._sources[jku]
        if issuer.jwks_file is not None:
            return self._sources[f"file:{issuer.jwks_file}"]
        if issuer.jwks_url:
            return self._sources[issuer.jwks_url]
        raise AuthFailure(f"issuer {_safe(issuer.iss)} only accepts tokens with an allowlisted jku")

    @staticmethod
    def _public_key(jwk: Mapping[str, Any], alg: str) -> Any:
        kty = jwk.get("kty")
        if alg.startswith("ES") and (kty != "EC" or jwk.get("crv") != _EC_CURVES[alg]):
            raise AuthFailure(f"key {_safe(jwk.get('kid'))} ({_safe(kty)}/{_safe(jwk.get('crv'))}) does not fit {alg}")
        if alg.startswith("RS") and kty != "RSA":
            raise AuthFailure(f"key {_safe(jwk.get('kid'))} ({_safe(kty)}) does not fit {alg}")
        if "alg" in jwk and jwk["alg"] != alg:
            raise AuthFailure(f"key {_safe(jwk.get('kid'))} is for {_safe(jwk['alg'])}, token uses {alg}")
        try:
            return jwt.PyJWK(dict(jwk), algorithm=alg).key
        except (jwt.PyJWTError, ValueError, TypeError, KeyError) as exc:
            raise AuthFailure(f"key {_safe(jwk.get('kid'))} unusable ({type(exc).__name__})") from None

    def verify(self, authorization: str | None, path: str) -> dict[str, Any]:
        """The verified claims, or AuthFailure with a loggable reason."""
        sec = self.sec
        if not authorization:
            raise AuthFailure("no Authorization header")
        match = _BEARER.match(authorization)
        if not match:
            raise AuthFailure("Authorization header is not 'Bearer <JWT>'")
        token = match.group(1)
        if len(token) > sec.max_token_bytes:
            raise AuthFailure("token larger than max_token_bytes")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except (jwt.PyJWTError, ValueError, TypeError):
            raise AuthFailure("token is not a decodable JWS") from None
        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in sec.algorithms:
            raise AuthFailure(f"algorithm {_safe(alg)} is not accepted")
        typ = header.get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.upper() != "JWT"):
            raise AuthFailure(f"typ {_safe(typ)} is not JWT")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthFailure("no kid in the token header")
        iss = unverified.get("iss")
        issuer = self.issuers.get(iss) if isinstance(iss, str) else None
        if issuer is None:
            raise AuthFailure(f"issuer {_safe(iss)} is not allowlisted")
        jwk = self._key_source(issuer, header).key_for(kid)
        if jwk is None:
            raise AuthFailure(f"unknown kid {_safe(kid)} for issuer {_safe(iss)}")
        key = self._public_key(jwk, alg)
        audience = sec.audience_base + path
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=audience,
                issuer=issuer.iss,
                leeway=sec.leeway_seconds,
                options={
                    "require": ["iss", "aud", "exp", "iat", "jti"],
                    "verify_signature": True,
                    "verify_exp": True,
                    "verify_iat": True,
                    "verify_nbf": True,
                    "verify_aud": True,
                    "verify_iss": True,
                    "enforce_minimum_key_length": True,
                },
            )
        except jwt.ExpiredSignatureError:
            raise AuthFailure("token expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthFailure("token iat or nbf is in the future") from None
        except jwt.InvalidAudienceError:
            raise AuthFailure(f"aud does not equal {audience}") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthFailure(f"claim {exc.claim} missing") from None
        except jwt.InvalidSignatureError:
            raise AuthFailure("signature does not verify") from None
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise AuthFailure(f"token invalid ({type(exc).__name__})") from None
        now = time.time()
        iat, exp = _numeric(claims, "iat"), _numeric(claims, "exp")
        if iat > now + sec.leeway_seconds:  # PyJWT checks this too; kept explicit
            raise AuthFailure("token iat is in the future")
        if exp - iat > sec.max_token_lifetime_seconds:
            raise AuthFailure(f"token lifetime {exp - iat:.0f} s exceeds max_token_lifetime_seconds")
        tenant = issuer.tenant or sec.tenant
        if tenant and claims.get("tenant") != tenant:
            raise AuthFailure(f"tenant {_safe(claims.get('tenant'))} is not {_safe(tenant)}")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 0 < len(jti) <= 256:
            raise AuthFailure("jti must be a string of 1..256 characters")
        # Last, so that only fully valid tokens occupy the cache.
        if not self.replay.add_if_new(issuer.iss, jti, exp + sec.leeway_seconds):
            raise AuthFailure(f"jti replayed (issuer {_safe(iss)})")
        return claims


# ---------------------------------------------------------------- Flask wiring


def _is_protected(path: str) -> bool:
    return path == _PROTECTED_PREFIX or path.startswith(_PROTECTED_PREFIX + "/")


def _normalise_origin(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


def init_app(app: Flask, settings: Settings, security: SecuritySettings | None = None) -> None:
    """Register /openapi.yaml, CORS and (when enabled) JWT authentication on `app`."""
    # urllib3 logs every request line (FHIR search URLs carry patient ids) at DEBUG.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    app.register_blueprint(_openapi_blueprint())
    _init_cors(app, settings)
    if not settings.auth_enabled:
        if os.environ.get("PCDS_AUTH_CONFIG") or os.environ.get("PCDS_AUTH_ISSUER"):
            log.warning("PCDS_AUTH_CONFIG / PCDS_AUTH_ISSUER are set but auth_enabled is false: tokens are NOT checked")
        return
    sec = validate_security_settings(security if security is not None else load_security_settings())
    authenticator = Authenticator(sec)
    app.extensions["precision_cds_auth"] = authenticator
    log.info(
        "JWT authentication on /cds-services*: %d issuer(s), algorithms %s, audience base %s",
        len(sec.issuers), ",".join(sec.algorithms), sec.audience_base,
    )

    @app.before_request
    def _authenticate() -> None:
        if request.method == "OPTIONS" or not _is_protected(request.path):
            return
        try:
            g.auth_claims = authenticator.verify(request.headers.get("Authorization"), request.path)
        except AuthFailure as exc:
            log.info("authentication refused for %s %s: %s", request.method, _safe(request.path, 120), exc)
            raise Unauthorized("unauthorized") from None
        except Exception as exc:  # noqa: BLE001 - fail closed, never a 500 from a bad token
            log.warning("authentication error for %s %s: %s; refused", request.method, _safe(request.path, 120), type(exc).__name__)
            raise Unauthorized("unauthorized") from None

    @app.after_request
    def _challenge(response: Response) -> Response:
        if response.status_code == 401 and _is_protected(request.path):
            response.headers.setdefault("WWW-Authenticate", "Bearer")
        return response


def _init_cors(app: Flask, settings: Settings) -> None:
    allowed = {_normalise_origin(o) for o in settings.cors_origins if o.strip()}
    if "*" in allowed:
        raise ValueError("cors_origins: list the EHR origins explicitly ('*' is not supported)")

    def origin_allowed() -> str | None:
        origin = request.headers.get("Origin")
        if origin and _normalise_origin(origin) in allowed:
            return origin
        return None

    @app.before_request
    def _preflight() -> Response | None:
        if request.method != "OPTIONS" or "Access-Control-Request-Method" not in request.headers:
            return None
        if request.url_rule is None:  # unknown path: let routing answer 404
            return None
        origin = origin_allowed()
        if origin is None:
            return None  # Flask's automatic OPTIONS answer, without CORS headers
        response = Response(status=204)
        response.headers["Allow"] = ", ".join(sorted(request.url_rule.methods or ()))
        response.headers["Access-Control-Allow-Origin"] = origin
        response.headers["Access-Control-Allow-Methods"] = ", ".join(CORS_ALLOWED_METHODS)
        response.headers["Access-Control-Allow-Headers"] = ", ".join(CORS_ALLOWED_HEADERS)
        response.headers["Access-Control-Max-Age"] = str(CORS_MAX_AGE_SECONDS)
        return response

    @app.after_request
    def _cors_headers(response: Response) -> Response:
        if not allowed:
            return response
        response.vary.add("Origin")
        origin = origin_allowed()
        if origin is not None:
            response.headers["Access-Control-Allow-Origin"] = origin
        return response


def _openapi_blueprint() -> Blueprint:
    bp = Blueprint("openapi", __name__)
    document = OPENAPI_PATH.read_bytes()

    @bp.get("/openapi.yaml")
    def openapi() -> Response:
        return Response(document, status=200, mimetype="application/yaml")

    return bp


__all__ = [
    "Authenticator",
    "IssuerConfig",
    "JwksFile",
    "JwksUrl",
    "ReplayCache",
    "SecuritySettings",
    "SUPPORTED_ALGORITHMS",
    "init_app",
    "load_security_settings",
    "validate_security_settings",
]
