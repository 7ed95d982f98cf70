"""CDS Hooks 2.0 JWT authentication and CORS (service/api/security.py).

Keys are generated here (EC P-384, RSA 2048); JWKS come from a file or from a
local HTTP server. Every refusal must be a 401 whose body says nothing more
than "unauthorized", with the reason logged at INFO and the token never logged.
"""

from __future__ import annotations

import json
import logging
import socket
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

import pytest

from service.api.security import SecuritySettings, load_security_settings, validate_security_settings
from tests.conftest import example_request
from tests.keys import (
    AUDIENCE_BASE,
    ISSUER,
    SigningKey,
    claims,
    close_app,
    ec_key,
    jwks,
    jwks_server,
    make_app,
    rsa_key,
    token,
    unsigned_token,
    write_auth_config,
    write_jwks,
)

DISCOVERY = "/cds-services"
SIGN = "/cds-services/precision-cds-order-sign"
SELECT = "/cds-services/precision-cds-order-select"
FEEDBACK = "/cds-services/precision-cds-order-sign/feedback"
SANDBOX = "https://sandbox.cds-hooks.org"
UNAUTHORIZED_BODY = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "login", "diagnostics": "unauthorized"}]}


@pytest.fixture(scope="module")
def es384() -> SigningKey:
    return ec_key("ec-384", "ES384")


@pytest.fixture(scope="module")
def rs384() -> SigningKey:
    return rsa_key("rsa-384", "RS384")


@pytest.fixture(scope="module")
def other_key() -> SigningKey:
    """A key the service does not know (same kid as es384: a forged signature)."""
    return ec_key("ec-384", "ES384")


@pytest.fixture(scope="module")
def auth_app(tmp_path_factory: pytest.TempPathFactory, es384: SigningKey, rs384: SigningKey) -> Iterator[Any]:
    """One app for the module (creating one loads every pack); each token has its own jti."""
    tmp_path = tmp_path_factory.mktemp("auth")
    write_jwks(tmp_path / "keys" / "ehr.jwks.json", es384, rs384)
    config = write_auth_config(
        tmp_path / "auth.toml",
        [
            {"iss": ISSUER, "jwks_file": "keys/ehr.jwks.json"},
            {"iss": "https://tenant-ehr.example.org", "jwks_file": "keys/ehr.jwks.json", "tenant": "hospital-a"},
        ],
        leeway_seconds=5,
    )
    app = make_app(tmp_path / "data", config, cors_origins=(SANDBOX,))
    yield app
    close_app(app)


@pytest.fixture
def client(auth_app: Any) -> Any:
    return auth_app.test_client()


def bearer(tok: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {tok}"}


def post(client: Any, path: str, body: Any, tok: str | None, **headers: str) -> Any:
    hdrs = dict(headers)
    if tok is not None:
        hdrs["Authorization"] = f"Bearer {tok}"
    return client.post(path, data=json.dumps(body), content_type="application/json", headers=hdrs)


def assert_refused(response: Any) -> None:
    assert response.status_code == 401, response.get_data(as_text=True)
    assert response.get_json() == UNAUTHORIZED_BODY
    assert response.headers["WWW-Authenticate"] == "Bearer"


# -- accepted ------------------------------------------------------------------------


def test_valid_es384_token_from_a_jwks_file_is_accepted(client: Any, es384: SigningKey) -> None:
    r = client.get(DISCOVERY, headers=bearer(token(es384, DISCOVERY)))
    assert r.status_code == 200
    assert {s["id"] for s in r.get_json()["services"]} == {"precision-cds-order-sign", "precision-cds-order-select"}
    r = post(client, SIGN, example_request("zhang-wei-acs-cyp2c19-pm.order-sign"), token(es384, SIGN))
    assert r.status_code == 200, r.get_data(as_text=True)
    assert len(r.get_json()["cards"]) == 1
    r = post(client, SELECT, example_request("zhang-wei-acs-cyp2c19-pm.order-select"), token(es384, SELECT))
    assert r.status_code == 200


def test_valid_rs384_token_is_accepted(client: Any, rs384: SigningKey) -> None:
    r = client.get(DISCOVERY, headers=bearer(token(rs384, DISCOVERY)))
    assert r.status_code == 200


def test_feedback_needs_and_accepts_a_token(client: Any, es384: SigningKey) -> None:
    card = post(client, SIGN, example_request("zhang-wei-acs-cyp2c19-pm.order-sign"), token(es384, SIGN)).get_json()["cards"][0]
    entry = {"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-11-22T10:00:00Z",
             "acceptedSuggestions": [{"id": card["suggestions"][0]["uuid"]}]}
    assert_refused(post(client, FEEDBACK, {"feedback": [entry]}, None))
    r = post(client, FEEDBACK, {"feedback": [entry]}, token(es384, FEEDBACK))
    assert r.status_code == 200


def test_matching_tenant_is_accepted(client: Any, es384: SigningKey) -> None:
    tok = token(es384, DISCOVERY, iss="https://tenant-ehr.example.org", tenant="hospital-a")
    assert client.get(DISCOVERY, headers=bearer(tok)).status_code == 200


def test_small_clock_skew_within_the_leeway_is_accepted(client: Any, es384: SigningKey) -> None:
    now = int(time.time())
    tok = token(es384, DISCOVERY, iat=now + 3, exp=now + 120)
    assert client.get(DISCOVERY, headers=bearer(tok)).status_code == 200


def test_status_and_openapi_need_no_token(client: Any) -> None:
    assert client.get("/status").status_code == 200
    r = client.get("/openapi.yaml")
    assert r.status_code == 200 and r.mimetype == "application/yaml"


def test_unknown_service_with_no_token_is_401_before_404(client: Any, es384: SigningKey) -> None:
    assert_refused(post(client, "/cds-services/nope", {}, None))
    assert post(client, "/cds-services/nope", {}, token(es384, "/cds-services/nope")).status_code == 404


# -- refused -------------------------------------------------------------------------


def _refusals(es384: SigningKey, other_key: SigningKey) -> dict[str, tuple[dict[str, str], str]]:
    """name -> (request headers, the reason logged)."""
    now = int(time.time())
    good = claims(DISCOVERY)
    return {
        "missing Authorization": ({}, "no Authorization header"),
        "Basic scheme": ({"Authorization": "Basic dXNlcjpwYXNz"}, "not 'Bearer <JWT>'"),
        "Bearer without token": ({"Authorization": "Bearer "}, "not 'Bearer <JWT>'"),
        "two segments": ({"Authorization": "Bearer abc.def"}, "not 'Bearer <JWT>'"),
        "garbage segments": ({"Authorization": "Bearer a.b.c"}, "not a decodable JWS"),
        "unknown issuer": (bearer(token(es384, DISCOVERY, iss="https://evil.example.org")), "is not allowlisted"),
        "wrong aud (other path)": (bearer(token(es384, DISCOVERY, aud=AUDIENCE_BASE + SIGN)), "aud does not equal"),
        "wrong aud (other host)": (bearer(token(es384, DISCOVERY, aud="https://other.example.org" + DISCOVERY)), "aud does not equal"),
        "expired": (bearer(token(es384, DISCOVERY, iat=now - 600, exp=now - 60)), "token expired"),
        "iat in the future": (bearer(token(es384, DISCOVERY, iat=now + 120, exp=now + 400)), "in the future"),
        "lifetime too long": (bearer(token(es384, DISCOVERY, iat=now, exp=now + 86400)), "exceeds max_token_lifetime_seconds"),
        "no jti": (bearer(token(es384, DISCOVERY, jti=None)), "claim jti missing"),
        "no exp": (bearer(token(es384, DISCOVERY, exp=None)), "claim exp missing"),
        "no iat": (bearer(token(es384, DISCOVERY, iat=None)), "claim iat missing"),
        "alg none": (bearer(unsigned_token({"alg": "none", "typ": "JWT", "kid": es384.kid}, good)), "algorithm none is not accepted"),
        "HS256 with the public key (algorithm confusion)": (
            bearer(unsigned_token({"alg": "HS256", "typ": "JWT", "kid": es384.kid}, good, secret=es384.public_pem())),
            "algorithm HS256 is not accepted",
        ),
        "HS256 with the public JWK": (
            bearer(unsigned_token({"alg": "HS256", "typ": "JWT", "kid": es384.kid}, good, secret=json.dumps(es384.public_jwk).encode())),
            "algorithm HS256 is not accepted",
        ),
        "unknown kid": (bearer(token(es384, DISCOVERY, headers={"kid": "no-such-kid"})), "unknown kid"),
        "no kid": (bearer(unsigned_token({"alg": "ES384", "typ": "JWT"}, good)), "no kid"),
        "signed by another key": (bearer(token(other_key, DISCOVERY)), "signature does not verify"),
        "wrong tenant": (bearer(token(es384, DISCOVERY, iss="https://tenant-ehr.example.org", tenant="hospital-b")), "tenant"),
        "tenant missing": (bearer(token(es384, DISCOVERY, iss="https://tenant-ehr.example.org")), "tenant"),
        "jku not allowlisted": (bearer(token(es384, DISCOVERY, headers={"jku": "https://evil.example.org/jwks.json"})), "jku"),
        "typ not JWT": (bearer(token(es384, DISCOVERY, headers={"typ": "at+jwt"})), "typ"),
    }


REFUSAL_NAMES = [
    "missing Authorization", "Basic scheme", "Bearer without token", "two segments", "garbage segments",
    "unknown issuer", "wrong aud (other path)", "wrong aud (other host)", "expired", "iat in the future",
    "lifetime too long", "no jti", "no exp", "no iat", "alg none", "HS256 with the public key (algorithm confusion)",
    "HS256 with the public JWK", "unknown kid", "no kid", "signed by another key", "wrong tenant", "tenant missing",
    "jku not allowlisted", "typ not JWT",
]


@pytest.mark.parametrize("name", REFUSAL_NAMES)
def test_bad_tokens_are_401_with_no_detail(client: Any, es384: SigningKey, other_key: SigningKey, name: str, caplog: Any) -> None:
    caplog.set_level(logging.DEBUG)
    headers, reason = _refusals(es384, other_key)[name]
    assert_refused(client.get(DISCOVERY, headers=headers))
    refusals = [r for r in caplog.records if r.name == "service.api.security" and "authentication refused" in r.getMessage()]
    assert len(refusals) == 1 and refusals[0].levelno == logging.INFO
    assert reason in refusals[0].getMessage()
    auth = headers.get("Authorization", "")
    for part in auth.removeprefix("Bearer ").split("."):
        if len(part) > 8:
            assert part not in caplog.text  # no token (or any segment of it) in the logs


def test_refusal_list_is_complete(es384: SigningKey, other_key: SigningKey) -> None:
    assert sorted(REFUSAL_NAMES) == sorted(_refusals(es384, other_key))


def test_invocation_with_a_bad_token_is_refused_before_the_body_is_read(client: Any, es384: SigningKey) -> None:
    assert_refused(post(client, SIGN, example_request("zhang-wei-acs-cyp2c19-pm.order-sign"), token(es384, DISCOVERY)))
    assert_refused(client.post(SIGN, data=b"{not json", content_type="application/json"))


def test_replayed_jti_is_refused(client: Any, es384: SigningKey) -> None:
    tok = token(es384, DISCOVERY)
    assert client.get(DISCOVERY, headers=bearer(tok)).status_code == 200
    assert_refused(client.get(DISCOVERY, headers=bearer(tok)))
    # The same jti re-signed into a new token is a replay too.
    again = claims(DISCOVERY)
    import jwt as pyjwt

    first = pyjwt.decode(tok, options={"verify_signature": False})
    again["jti"] = first["jti"]
    forged = pyjwt.encode(again, es384.private_key, algorithm="ES384", headers={"kid": es384.kid})
    assert_refused(client.get(DISCOVERY, headers=bearer(forged)))


def test_key_of_the_wrong_type_for_the_algorithm_is_refused(client: Any, es384: SigningKey, rs384: SigningKey) -> None:
    # An ES384 token naming the RSA key's kid.
    tok = token(es384, DISCOVERY, headers={"kid": rs384.kid})
    assert_refused(client.get(DISCOVERY, headers=bearer(tok)))


def test_a_rejected_token_does_not_burn_its_jti(client: Any, es384: SigningKey) -> None:
    """Only fully valid tokens enter the replay cache: a forged one cannot block the real one."""
    good = token(es384, DISCOVERY)
    import jwt as pyjwt

    jti = pyjwt.decode(good, options={"verify_signature": False})["jti"]
    assert_refused(client.get(DISCOVERY, headers=bearer(token(es384, DISCOVERY, jti=jti, aud=AUDIENCE_BASE + "/x"))))
    assert client.get(DISCOVERY, headers=bearer(good)).status_code == 200


# -- JWKS from a URL -----------------------------------------------------------------


def _url_app(tmp_path: Path, issuer: dict[str, Any], **scalars: Any) -> Any:
    config = write_auth_config(tmp_path / "auth.toml", [issuer], **scalars)
    return make_app(tmp_path / "data", config)


def test_jwks_url_rotation_on_unknown_kid(tmp_path: Path) -> None:
    old, new = ec_key("2026-01", "ES384"), ec_key("2026-02", "ES384")
    with jwks_server({"/jwks.json": jwks(old)}) as srv:
        app = _url_app(tmp_path, {"iss": ISSUER, "jwks_url": srv.url("/jwks.json")}, jwks_refetch_interval_seconds=0.2)
        try:
            client = app.test_client()
            assert client.get(DISCOVERY, headers=bearer(token(old, DISCOVERY))).status_code == 200
            assert client.get(DISCOVERY, headers=bearer(token(old, DISCOVERY))).status_code == 200
            assert srv.hits["/jwks.json"] == 1  # cached
            srv.documents["/jwks.json"] = jwks(old, new)  # the issuer rotates
            time.sleep(0.25)
            assert client.get(DISCOVERY, headers=bearer(token(new, DISCOVERY))).status_code == 200
            assert srv.hits["/jwks.json"] == 2
            assert client.get(DISCOVERY, headers=bearer(token(old, DISCOVERY))).status_code == 200
        finally:
            close_app(app)


def test_unknown_kids_refetch_at_most_once_per_interval(tmp_path: Path) -> None:
    known, stranger = ec_key("k1", "ES384"), ec_key("k-unknown", "ES384")
    with jwks_server({"/jwks.json": jwks(known)}) as srv:
        app = _url_app(tmp_path, {"iss": ISSUER, "jwks_url": srv.url("/jwks.json")}, jwks_refetch_interval_seconds=60)
        try:
            client = app.test_client()
            assert client.get(DISCOVERY, headers=bearer(token(known, DISCOVERY))).status_code == 200
            for _ in range(5):
                assert_refused(client.get(DISCOVERY, headers=bearer(token(stranger, DISCOVERY))))
            assert srv.hits["/jwks.json"] == 1  # the first fetch was < 60 s ago: no hammering
        finally:
            close_app(app)


def test_unreachable_jwks_url_is_401_quickly(tmp_path: Path, caplog: Any) -> None:
    key = ec_key("k1", "ES384")
    with socket.socket() as sock:  # a free port with nothing listening: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    app = _url_app(tmp_path, {"iss": ISSUER, "jwks_url": f"http://127.0.0.1:{port}/jwks.json"},
                   jwks_connect_timeout=0.5, jwks_read_timeout=0.5)
    try:
        client = app.test_client()
        started = time.monotonic()
        assert_refused(client.get(DISCOVERY, headers=bearer(token(key, DISCOVERY))))
        assert time.monotonic() - started < 3
        assert any("JWKS fetch" in r.getMessage() and r.levelno == logging.WARNING for r in caplog.records)
    finally:
        close_app(app)


def test_jwks_url_that_never_answers_times_out_as_401(tmp_path: Path) -> None:
    key = ec_key("k1", "ES384")
    with socket.socket() as listener:  # accepts connections (backlog) but never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        app = _url_app(tmp_path, {"iss": ISSUER, "jwks_url": f"http://127.0.0.1:{port}/jwks.json"},
                       jwks_connect_timeout=0.5, jwks_read_timeout=0.5, jwks_refetch_interval_seconds=60)
        try:
            client = app.test_client()
            started = time.monotonic()
            assert_refused(client.get(DISCOVERY, headers=bearer(token(key, DISCOVERY))))
            assert time.monotonic() - started < 3
            started = time.monotonic()  # within the refetch interval: no second wait
            assert_refused(client.get(DISCOVERY, headers=bearer(token(key, DISCOVERY))))
            assert time.monotonic() - started < 0.5
        finally:
            close_app(app)


def test_allowlisted_jku_is_used_and_others_are_never_fetched(tmp_path: Path) -> None:
    key = ec_key("sandbox-1", "ES384")
    with jwks_server({"/sandbox/jwks.json": jwks(key), "/evil/jwks.json": jwks(key)}) as srv:
        allowed = srv.url("/sandbox/jwks.json")
        app = _url_app(tmp_path, {"iss": "https://sandbox.cds-hooks.org", "jku": [allowed]})
        try:
            client = app.test_client()
            ok = token(key, DISCOVERY, iss="https://sandbox.cds-hooks.org", headers={"jku": allowed})
            assert client.get(DISCOVERY, headers=bearer(ok)).status_code == 200
            evil = token(key, DISCOVERY, iss="https://sandbox.cds-hooks.org", headers={"jku": srv.url("/evil/jwks.json")})
            assert_refused(client.get(DISCOVERY, headers=bearer(evil)))
            no_jku = token(key, DISCOVERY, iss="https://sandbox.cds-hooks.org")  # this issuer has no jwks_url
            assert_refused(client.get(DISCOVERY, headers=bearer(no_jku)))
            assert srv.hits.get("/evil/jwks.json", 0) == 0
        finally:
            close_app(app)


def test_jwks_file_rotation_is_picked_up(tmp_path: Path) -> None:
    old, new = ec_key("f1", "ES384"), ec_key("f2", "ES384")
    path = write_jwks(tmp_path / "ehr.jwks.json", old)
    app = _url_app(tmp_path, {"iss": ISSUER, "jwks_file": str(path)})
    try:
        client = app.test_client()
        assert_refused(client.get(DISCOVERY, headers=bearer(token(new, DISCOVERY))))
        time.sleep(0.01)
        write_jwks(path, old, new)
        assert client.get(DISCOVERY, headers=bearer(token(new, DISCOVERY))).status_code == 200
    finally:
        close_app(app)


# -- configuration -------------------------------------------------------------------


def test_auth_on_without_issuers_refuses_to_start(tmp_path: Path) -> None:
    config = write_auth_config(tmp_path / "auth.toml", [])
    with pytest.raises(ValueError, match="no issuers configured"):
        make_app(tmp_path / "data", config)


def test_auth_on_without_audience_base_refuses_to_start(tmp_path: Path) -> None:
    write_jwks(tmp_path / "k.json", ec_key())
    config = write_auth_config(tmp_path / "auth.toml", [{"iss": ISSUER, "jwks_file": "k.json"}], audience_base="")
    with pytest.raises(ValueError, match="AUDIENCE_BASE"):
        make_app(tmp_path / "data", config)


def test_hmac_algorithms_cannot_be_configured() -> None:
    sec = SecuritySettings(issuers=(), audience_base=AUDIENCE_BASE, algorithms=("HS256", "ES384"))
    with pytest.raises(ValueError, match="HS256"):
        validate_security_settings(sec)


def test_environment_settings_and_single_issuer_shorthand(tmp_path: Path) -> None:
    config = write_auth_config(tmp_path / "auth.toml", [{"iss": "a", "jwks_url": "https://a.example/jwks"}], leeway_seconds=10)
    sec = load_security_settings({
        "PCDS_AUTH_CONFIG": str(config),
        "PCDS_AUTH_LEEWAY_SECONDS": "15",
        "PCDS_AUTH_AUDIENCE_BASE": "https://cds.example.org/",
        "PCDS_AUTH_ISSUER": "b",
        "PCDS_AUTH_JKU": "https://b.example/jwks,https://b.example/jwks2",
        "PCDS_AUTH_ALGORITHMS": "ES384,RS384",
    })
    assert sec.leeway_seconds == 15.0
    assert sec.algorithms == ("ES384", "RS384")
    assert [i.iss for i in sec.issuers] == ["a", "b"]
    assert sec.issuers[1].jku == ("https://b.example/jwks", "https://b.example/jwks2")
    assert validate_security_settings(sec).audience_base == "https://cds.example.org"


def test_unknown_setting_in_the_auth_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "auth.toml"
    path.write_text('audience_base = "https://x"\nleway_seconds = 5\n', encoding="utf-8")
    with pytest.raises(ValueError, match="leway_seconds"):
        load_security_settings({}, config_file=path)


def test_auth_off_by_default_leaves_cds_services_open(tmp_path: Path) -> None:
    app = make_app(tmp_path / "data", None)
    try:
        assert app.test_client().get(DISCOVERY).status_code == 200
    finally:
        close_app(app)


# -- CORS ----------------------------------------------------------------------------


def test_cors_preflight_for_an_allowed_origin(client: Any) -> None:
    r = client.options(SIGN, headers={"Origin": SANDBOX, "Access-Control-Request-Method": "POST",
                                      "Access-Control-Request-Headers": "authorization, content-type"})
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Origin"] == SANDBOX
    allowed_headers = {h.strip().lower() for h in r.headers["Access-Control-Allow-Headers"].split(",")}
    assert {"authorization", "content-type"} <= allowed_headers
    assert "POST" in r.headers["Access-Control-Allow-Methods"]
    assert "Origin" in r.headers["Vary"]


def test_cors_actual_request_from_an_allowed_origin(client: Any, es384: SigningKey) -> None:
    r = client.get(DISCOVERY, headers={"Origin": SANDBOX, **bearer(token(es384, DISCOVERY))})
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == SANDBOX
    # A refused call is readable by the browser client too (so it can show "unauthorized").
    r = client.get(DISCOVERY, headers={"Origin": SANDBOX})
    assert r.status_code == 401 and r.headers["Access-Control-Allow-Origin"] == SANDBOX


@pytest.mark.parametrize("origin", ["https://evil.example.org", "https://sandbox.cds-hooks.org.evil.example", "null"])
def test_cors_other_origins_get_no_cors_headers(client: Any, es384: SigningKey, origin: str) -> None:
    r = client.options(SIGN, headers={"Origin": origin, "Access-Control-Request-Method": "POST",
                                      "Access-Control-Request-Headers": "authorization, content-type"})
    assert r.status_code in (200, 204)
    assert "Access-Control-Allow-Origin" not in r.headers
    assert "Access-Control-Allow-Headers" not in r.headers
    r = client.get(DISCOVERY, headers={"Origin": origin, **bearer(token(es384, DISCOVERY))})
    assert r.status_code == 200
    assert "Access-Control-Allow-Origin" not in r.headers


def test_short_rsa_keys_are_refused(tmp_path: Path) -> None:
    weak = rsa_key("rsa-1024", "RS384", bits=1024)
    write_jwks(tmp_path / "weak.json", weak)
    app = _url_app(tmp_path, {"iss": ISSUER, "jwks_file": "weak.json"})
    with warnings.catch_warnings():  # PyJWT warns when *signing* with a short key; the test wants that token
        warnings.simplefilter("ignore")
        weak_token = token(weak, DISCOVERY)
    try:
        assert_refused(app.test_client().get(DISCOVERY, headers=bearer(weak_token)))
    finally:
        close_app(app)


def test_wrong_curve_for_the_algorithm_is_refused(tmp_path: Path) -> None:
    p256 = ec_key("p256", "ES256")
    write_jwks(tmp_path / "k.json", p256)
    app = _url_app(tmp_path, {"iss": ISSUER, "jwks_file": "k.json"})
    try:
        client = app.test_client()
        assert client.get(DISCOVERY, headers=bearer(token(p256, DISCOVERY))).status_code == 200  # ES256 is accepted
        # The P-256 key claimed for ES384: refused (even before any signature maths).
        forged = p256.public_jwk | {"alg": "ES384"}
        (tmp_path / "k.json").write_text(json.dumps({"keys": [forged]}), encoding="utf-8")
        tok = unsigned_token({"alg": "ES384", "typ": "JWT", "kid": "p256"}, claims(DISCOVERY), secret=b"x")
        assert_refused(client.get(DISCOVERY, headers=bearer(tok)))
    finally:
        close_app(app)
