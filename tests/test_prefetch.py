"""Prefetch gathering: every shape a client may send, every way a FHIR server may fail."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import pytest
import requests

from service.errors import BadRequest, PatientDataUnavailable
from service.fhir.client import (
    FhirClient,
    FhirConnectionError,
    FhirFetchError,
    FhirForeignUrl,
    FhirInvalidJson,
    FhirNotAResource,
    FhirOperationOutcome,
    FhirStatusError,
    FhirTimeout,
)
from service.fhir.prefetch import (
    FetchSettings,
    GatheredData,
    gather,
    render_template,
    user_ids_from_context,
)

try:
    from tests.fhir_fake import FakeFhirServer, Route, bundle, fake_fhir_server
except ImportError:  # tests/ is not a package: pytest puts tests/ itself on sys.path
    from fhir_fake import FakeFhirServer, Route, bundle, fake_fhir_server  # type: ignore[no-redef]

TOKEN = "s3cr3t-access-token-xyz"
AUTH = {"access_token": TOKEN, "token_type": "Bearer", "expires_in": 300,
        "scope": "patient/*.read", "subject": "cds-service"}
CONTEXT = {"patientId": "p1", "userId": "Practitioner/doc 7", "encounterId": "e1",
           "draftOrders": {"resourceType": "Bundle", "entry": []}}
PATIENT = {"resourceType": "Patient", "id": "p1"}
OUTCOME = {"resourceType": "OperationOutcome",
           "issue": [{"severity": "error", "code": "processing"}]}


def obs(i: int | str) -> dict:
    return {"resourceType": "Observation", "id": f"o{i}", "status": "final"}


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.trust_env = False  # no proxies from the environment for 127.0.0.1
        yield s


@pytest.fixture
def fhir() -> Iterator[FakeFhirServer]:
    with fake_fhir_server() as server:
        yield server


def run(templates: dict[str, str], prefetch: dict | None, fhir_server: str | None,
        session: requests.Session, required: set[str] = frozenset(), **limits: float) -> GatheredData:
    return gather(templates, prefetch, CONTEXT, fhir_server, AUTH,
                  FetchSettings(**limits), set(required), session=session)


# --- template rendering ------------------------------------------------------

def test_render_context_tokens_are_url_encoded() -> None:
    assert render_template("Patient/{{context.patientId}}", CONTEXT) == "Patient/p1"
    assert render_template("Observation?patient={{ context.patientId }}&encounter={{context.encounterId}}",
                           CONTEXT) == "Observation?patient=p1&encounter=e1"
    assert render_template("X?a={{context.v}}", {"v": "a&b=c/d"}) == "X?a=a%26b%3Dc%2Fd"
    assert render_template("X?n={{context.n}}&f={{context.f}}", {"n": 3, "f": True}) == "X?n=3&f=true"
    assert render_template("Patient?_count=10", {}) == "Patient?_count=10"


def test_render_user_tokens_from_user_id() -> None:
    assert render_template("Practitioner/{{userPractitionerId}}", CONTEXT) == "Practitioner/doc%207"
    role = {"userId": "PractitionerRole/r9"}
    assert render_template("PractitionerRole/{{userPractitionerRoleId}}", role) == "PractitionerRole/r9"
    assert render_template("Patient/{{userPatientId}}", {"userId": "Patient/p3"}) == "Patient/p3"
    assert render_template("RelatedPerson/{{userRelatedPersonId}}",
                           {"userId": "https://ehr/fhir/RelatedPerson/rp1"}) == "RelatedPerson/rp1"
    assert user_ids_from_context({"userId": "Device/d1"}) == {}
    assert render_template("P/{{userPractitionerId}}", {}, {"userPractitionerId": "x"}) == "P/x"


@pytest.mark.parametrize("template", [
    "Practitioner/{{userPractitionerId}}",            # user is a PractitionerRole
    "Patient/{{context.missing}}",                     # not in context
    "Bundle?x={{context.draftOrders}}",                # not a primitive
    "Patient/{{context.patientId.id}}",                # nested path
    "Patient/{{%patient.id}}",                         # FHIRPath (3.0) not supported
    "Patient/{{context.{{context.patientId}}}}",       # nested tokens (CRD #296)
    "Patient/{{unknownToken}}",
])
def test_render_unfillable_token_returns_none(template: str) -> None:
    ctx = dict(CONTEXT, userId="PractitionerRole/r9")
    assert render_template(template, ctx) is None


# --- prefetch shapes -------------------------------------------------------

def test_prefetched_resource_used_without_calling_server(fhir: FakeFhirServer, session) -> None:
    got = run({"patient": "Patient/{{context.patientId}}"}, {"patient": PATIENT}, fhir.base_url,
              session, {"patient"})
    assert got.resources == {"patient": [PATIENT]}
    assert got.sources == {"patient": "prefetch"}
    assert got.problems == {}
    assert fhir.requests == []


def test_prefetched_bundle_is_flattened_and_outcome_entries_ignored(fhir, session) -> None:
    b = bundle([obs(1), obs(2)])
    b["entry"].append({"resource": OUTCOME, "search": {"mode": "outcome"}})
    only_outcomes = {"resourceType": "Bundle", "type": "searchset",
                     "entry": [{"resource": OUTCOME, "search": {"mode": "outcome"}}]}
    got = run({"obs": "Observation?patient={{context.patientId}}", "meds": "MedicationRequest"},
              {"obs": b, "meds": only_outcomes}, fhir.base_url, session)
    assert got.resources["obs"] == [obs(1), obs(2)]
    assert got.sources == {"obs": "prefetch", "meds": "empty"}
    assert got.resources["meds"] == []
    assert fhir.requests == []


def test_prefetched_bundle_next_pages_followed_up_to_max_pages(fhir, session) -> None:
    fhir.routes["/Observation"] = Route(pages=[[obs(1)], [obs(2)], [obs(3)], [obs(4)]])
    first = bundle([obs(0)], f"{fhir.base_url}/Observation?patient=p1&_page=2")
    got = run({"obs": "Observation?patient={{context.patientId}}"}, {"obs": first},
              fhir.base_url, session, {"obs"})
    assert [r["id"] for r in got.resources["obs"]] == ["o0", "o2", "o3", "o4"]
    assert got.sources["obs"] == "prefetch"
    assert [r.query["_page"] for r in fhir.requests] == [["2"], ["3"], ["4"]]
    assert all(r.authorization == f"Bearer {TOKEN}" for r in fhir.requests)

    fhir.requests.clear()
    got = run({"obs": "x"}, {"obs": first}, fhir.base_url, session, max_pages=2)
    assert [r["id"] for r in got.resources["obs"]] == ["o0", "o2"]
    assert got.sources["obs"] == "prefetch"
    assert got.problems["obs"] == "stopped after 2 pages"
    assert len(fhir.requests) == 1


def test_fetched_bundle_pages_followed(fhir, session) -> None:
    fhir.routes["/Observation"] = Route(pages=[[obs(1), obs(2)], [obs(3)], [obs(4)]])
    got = run({"obs": "Observation?patient={{context.patientId}}"}, {}, fhir.base_url, session)
    assert [r["id"] for r in got.resources["obs"]] == ["o1", "o2", "o3", "o4"]
    assert got.sources["obs"] == "fetched"
    assert [r.query for r in fhir.requests] == [
        {"patient": ["p1"]}, {"patient": ["p1"], "_page": ["2"]}, {"patient": ["p1"], "_page": ["3"]}]


def test_next_page_failure_makes_required_key_unavailable(fhir, session) -> None:
    fhir.routes["/Observation"] = Route(status=500, body=OUTCOME)
    first = bundle([obs(0)], f"{fhir.base_url}/Observation?_page=2")
    got = run({"obs": "x"}, {"obs": first}, fhir.base_url, session)
    assert got.sources["obs"] == "unavailable"
    assert got.resources["obs"] == [obs(0)]  # the part that did arrive stays visible
    assert got.problems["obs"] == "page 2: FHIR server answered 500"
    with pytest.raises(PatientDataUnavailable) as err:
        run({"obs": "x"}, {"obs": first}, fhir.base_url, session, {"obs"})
    assert err.value.status == 412 and err.value.key == "obs"


def test_next_link_to_another_host_is_refused(fhir, session) -> None:
    with fake_fhir_server({"/Observation": Route(pages=[[obs(1)], [obs(2)]])}) as other:
        evil = [f"{other.base_url}/Observation?_page=2",
                f"{fhir.base_url}.evil.example/Observation",
                f"{fhir.base_url}/../admin/Observation"]
        for url in evil:
            got = run({"obs": "x"}, {"obs": bundle([obs(0)], url)}, fhir.base_url, session)
            assert got.sources["obs"] == "unavailable"
            assert "refused" in got.problems["obs"] or "escapes" in got.problems["obs"]
        assert other.requests == []
    assert fhir.requests == []


def test_next_link_without_fhir_server(session) -> None:
    got = run({"obs": "x"}, {"obs": bundle([obs(0)], "Observation?_page=2")}, None, session)
    assert got.sources["obs"] == "unavailable"
    assert got.problems["obs"] == "next page needs fhirServer"


@pytest.mark.parametrize("supplied", [None, OUTCOME, "junk"], ids=["null", "outcome", "junk"])
def test_null_or_outcome_prefetch_is_fetched(fhir, session, supplied) -> None:
    fhir.routes["/Patient/p1"] = Route(body=PATIENT)
    got = run({"patient": "Patient/{{context.patientId}}"}, {"patient": supplied}, fhir.base_url,
              session, {"patient"})
    assert got.resources["patient"] == [PATIENT]
    assert got.sources["patient"] == "fetched"
    assert len(fhir.requests) == 1


def test_missing_key_fetched_with_bearer_token(fhir, session) -> None:
    fhir.routes["/Patient/p1"] = Route(body=PATIENT)
    fhir.routes["/Observation?patient=p1&code=84413-4"] = Route(body=bundle([obs(1)]))
    fhir.routes["/Practitioner/doc 7"] = Route(body={"resourceType": "Practitioner", "id": "doc 7"})
    templates = {"patient": "Patient/{{context.patientId}}",
                 "genotypes": "Observation?patient={{context.patientId}}&code=84413-4",
                 "user": "Practitioner/{{userPractitionerId}}"}
    got = run(templates, None, fhir.base_url + "/", session, set(templates))
    assert got.sources == {"patient": "fetched", "genotypes": "fetched", "user": "fetched"}
    assert got.resources["genotypes"] == [obs(1)]
    assert sorted(r.path for r in fhir.requests) == ["/Observation", "/Patient/p1", "/Practitioner/doc 7"]
    assert [r.authorization for r in fhir.requests] == [f"Bearer {TOKEN}"] * 3


def test_fetched_empty_bundle_is_empty(fhir, session) -> None:
    fhir.routes["/MedicationStatement"] = Route(body=bundle([]))
    got = run({"meds": "MedicationStatement"}, {}, fhir.base_url, session, {"meds"})
    assert got.sources["meds"] == "empty" and got.resources["meds"] == []


def test_no_authorization_sends_no_header(fhir, session) -> None:
    fhir.routes["/Patient/p1"] = Route(body=PATIENT)
    gather({"p": "Patient/{{context.patientId}}"}, None, CONTEXT, fhir.base_url, None,
           FetchSettings(), set(), session=session)
    assert fhir.requests[0].authorization is None


@pytest.mark.parametrize("authorization", [
    {"access_token": TOKEN, "token_type": "MAC"},
    {"token_type": "Bearer"},
    "Bearer x",
])
def test_non_bearer_authorization_is_bad_request(fhir, session, authorization) -> None:
    with pytest.raises(BadRequest):
        gather({"p": "Patient/1"}, None, CONTEXT, fhir.base_url, authorization,  # type: ignore[arg-type]
               FetchSettings(), set(), session=session)
    assert fhir.requests == []


# --- failures ------------------------------------------------------------------

FAILURES = [
    (Route(status=500, body=OUTCOME), "FHIR server answered 500"),
    (Route(status=404, body=OUTCOME), "FHIR server answered 404"),
    (Route(status=401, body=OUTCOME), "FHIR server answered 401"),
    (Route(status=302, body={}), "FHIR server answered 302"),
    (Route(invalid_json=True), "invalid JSON"),
    (Route(drop=True), "connection to FHIR server failed"),
    (Route(body=[1, 2]), "response is not a FHIR resource"),
    (Route(body={"id": "x"}), "response is not a FHIR resource"),
    (Route(body=OUTCOME), "FHIR server answered with an OperationOutcome"),
]
FAILURE_IDS = ["500", "404", "401", "redirect", "invalid-json", "drop", "list", "no-type", "outcome"]


@pytest.mark.parametrize(("route", "reason"), FAILURES, ids=FAILURE_IDS)
def test_failure_for_required_key_raises_412(fhir, session, route, reason) -> None:
    fhir.routes["/Patient/p1"] = route
    with pytest.raises(PatientDataUnavailable) as err:
        run({"patient": "Patient/{{context.patientId}}"}, {}, fhir.base_url, session, {"patient"})
    assert err.value.status == 412
    assert err.value.key == "patient"
    assert err.value.reason == reason
    assert "p1" not in err.value.message and TOKEN not in err.value.message


@pytest.mark.parametrize(("route", "reason"), FAILURES, ids=FAILURE_IDS)
def test_failure_for_optional_key_is_unavailable(fhir, session, route, reason) -> None:
    fhir.routes["/Patient/p1"] = Route(body=PATIENT)
    fhir.routes["/Observation"] = route
    got = run({"patient": "Patient/{{context.patientId}}", "obs": "Observation?patient=p1"},
              {}, fhir.base_url, session, {"patient"})
    assert got.sources == {"patient": "fetched", "obs": "unavailable"}
    assert got.resources["obs"] == []
    assert got.problems == {"obs": reason}


def test_connection_refused(session) -> None:
    with fake_fhir_server() as gone:
        url = gone.base_url  # port is free again after the block
    got = run({"obs": "Observation"}, {}, url, session)
    assert got.problems["obs"] == "connection to FHIR server failed"


def test_missing_key_without_fhir_server(session) -> None:
    got = run({"obs": "Observation", "p": "Patient/1"}, {"p": PATIENT}, None, session)
    assert got.sources == {"obs": "unavailable", "p": "prefetch"}
    assert got.problems == {"obs": "not in prefetch and no fhirServer"}
    with pytest.raises(PatientDataUnavailable, match="no fhirServer"):
        run({"obs": "Observation"}, {}, None, session, {"obs"})
    with pytest.raises(PatientDataUnavailable, match="OperationOutcome"):
        run({"obs": "Observation"}, {"obs": OUTCOME}, None, session, {"obs"})


def test_unfillable_template_is_unavailable(fhir, session) -> None:
    got = run({"enc": "Encounter/{{context.nothing}}"}, {}, fhir.base_url, session)
    assert got.sources["enc"] == "unavailable"
    assert got.problems["enc"] == "template token cannot be filled"
    with pytest.raises(PatientDataUnavailable):
        run({"enc": "Encounter/{{context.nothing}}"}, {}, fhir.base_url, session, {"enc"})
    assert fhir.requests == []


# --- time budget and parallelism ---------------------------------------------

@pytest.mark.parametrize("required", [set(), {"slow"}], ids=["optional", "required"])
def test_slow_server_bounded_by_total_budget(fhir, session, required) -> None:
    fhir.routes["/Observation"] = Route(body=bundle([obs(1)]), delay=30)
    fhir.routes["/Patient/p1"] = Route(body=PATIENT)
    templates = {"slow": "Observation", "fast": "Patient/p1"}
    started = time.monotonic()
    if required:
        with pytest.raises(PatientDataUnavailable, match="timed out"):
            run(templates, {}, fhir.base_url, session, required,
                total_budget=1.0, timeout_read=20, timeout_connect=20)
    else:
        got = run(templates, {}, fhir.base_url, session, required,
                  total_budget=1.0, timeout_read=20, timeout_connect=20)
        assert got.sources == {"slow": "unavailable", "fast": "fetched"}
        assert got.problems == {"slow": "timed out"}
    assert time.monotonic() - started < 1.0 + 0.5


def test_read_timeout_reported(fhir, session) -> None:
    fhir.routes["/Observation"] = Route(body=bundle([]), delay=30)
    started = time.monotonic()
    got = run({"obs": "Observation"}, {}, fhir.base_url, session, timeout_read=0.3, total_budget=3)
    assert got.problems["obs"] == "timed out"
    assert time.monotonic() - started < 1.5


def test_fetches_run_in_parallel(fhir, session) -> None:
    for i in range(3):
        fhir.routes[f"/Observation/o{i}"] = Route(body=obs(i), delay=1.0)
    templates = {f"k{i}": f"Observation/o{i}" for i in range(3)}
    started = time.monotonic()
    got = run(templates, {}, fhir.base_url, session, set(templates), total_budget=2.5)
    assert time.monotonic() - started < 2.5
    assert got.sources == {k: "fetched" for k in templates}
    assert got.all_resources() == [obs(0), obs(1), obs(2)]


def test_queued_fetches_share_the_budget(fhir, session) -> None:
    for i in range(3):
        fhir.routes[f"/Observation/o{i}"] = Route(body=obs(i), delay=0.8)
    templates = {f"k{i}": f"Observation/o{i}" for i in range(3)}
    started = time.monotonic()
    got = run(templates, {}, fhir.base_url, session, max_workers=1, total_budget=1.2)
    assert time.monotonic() - started < 1.2 + 0.5
    assert got.sources["k0"] == "fetched"
    assert got.sources["k1"] == got.sources["k2"] == "unavailable"


# --- caps and helpers -------------------------------------------------------------

def test_entry_cap_per_key_and_overall(fhir, session) -> None:
    got = run({"obs": "x"}, {"obs": bundle([obs(i) for i in range(20)])}, fhir.base_url, session,
              max_entries=5)
    assert len(got.resources["obs"]) == 5
    assert got.sources["obs"] == "prefetch"
    assert "truncated" in got.problems["obs"]

    got = run({"a": "x", "b": "y"},
              {"a": bundle([obs(i) for i in range(4)]), "b": bundle([obs(i) for i in range(4, 8)])},
              fhir.base_url, session, max_entries=5)
    assert [len(got.resources["a"]), len(got.resources["b"])] == [4, 1]
    assert "a" not in got.problems and "truncated" in got.problems["b"]


def test_entry_cap_stops_paging(fhir, session) -> None:
    fhir.routes["/Observation"] = Route(pages=[[obs(i) for i in range(3)]] * 5)
    got = run({"obs": "Observation"}, {}, fhir.base_url, session, max_entries=5)
    assert len(got.resources["obs"]) == 5
    assert len(fhir.requests) == 2


def test_all_resources_deduplicates_by_type_and_id() -> None:
    data = GatheredData(resources={"a": [PATIENT, obs(1)], "b": [dict(PATIENT), obs(2)],
                                   "c": [{"resourceType": "Observation"}] * 2})
    assert data.all_resources() == [PATIENT, obs(1), obs(2), {"resourceType": "Observation"},
                                    {"resourceType": "Observation"}]


def test_keys_outside_templates_are_ignored(fhir, session) -> None:
    got = run({"p": "Patient/1"}, {"p": PATIENT, "extra": PATIENT}, fhir.base_url, session)
    assert set(got.resources) == {"p"}


# --- client ---------------------------------------------------------------------

def test_client_errors_are_typed(fhir, session) -> None:
    fhir.routes.update({"/a": Route(status=503, body=OUTCOME), "/b": Route(invalid_json=True),
                        "/c": Route(drop=True), "/d": Route(body="text"),
                        "/e": Route(body=OUTCOME), "/f": Route(body=PATIENT, delay=5)})
    client = FhirClient(fhir.base_url, TOKEN, session, (1.0, 0.2))
    expected = {"a": FhirStatusError, "b": FhirInvalidJson, "c": FhirConnectionError,
                "d": FhirNotAResource, "e": FhirOperationOutcome, "f": FhirTimeout}
    for path, kind in expected.items():
        with pytest.raises(kind) as err:
            client.get(path)
        assert isinstance(err.value, FhirFetchError)
    with pytest.raises(FhirStatusError) as err:
        client.get("a")
    assert err.value.status == 503
    with pytest.raises(FhirForeignUrl):
        client.get("http://example.org/fhir/Patient/1")
    assert repr(client).count(TOKEN) == 0


def test_client_deadline_and_size_limit(fhir, session) -> None:
    fhir.routes["/big"] = Route(body=bundle([obs(i) for i in range(100)]))
    with pytest.raises(FhirTimeout):
        FhirClient(fhir.base_url, None, session, deadline=time.monotonic() - 1).get("big")
    assert fhir.requests == []
    client = FhirClient(fhir.base_url, None, session, max_bytes=1000)
    with pytest.raises(FhirFetchError, match="too large"):
        client.get("big")


def test_client_resolve() -> None:
    client = FhirClient("https://ehr.example/fhir/", None, requests.Session())
    assert client.resolve("Patient/1") == "https://ehr.example/fhir/Patient/1"
    assert client.resolve("/Patient/1") == "https://ehr.example/fhir/Patient/1"
    assert client.resolve("HTTPS://EHR.example/fhir/Patient?_page=2") == \
        "HTTPS://EHR.example/fhir/Patient?_page=2"
    for bad in ["https://ehr.example/other/Patient", "http://ehr.example/fhir/Patient",
                "https://ehr.example.evil/fhir/Patient", "https://ehr.example/fhirx/Patient",
                "Patient/../../admin", "https://user@ehr.example/fhir/Patient"]:
        with pytest.raises(FhirForeignUrl):
            client.resolve(bad)
    client._session.close()


# --- logging -------------------------------------------------------------------

def test_token_and_patient_data_never_logged(fhir, session, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    fhir.routes["/Patient/p1"] = Route(body=PATIENT)
    fhir.routes["/Observation"] = Route(pages=[[obs("secret-value")], [obs(2)]])
    fhir.routes["/Condition"] = Route(status=500, body=OUTCOME)
    fhir.routes["/Encounter"] = Route(invalid_json=True)
    templates = {"patient": "Patient/{{context.patientId}}", "obs": "Observation",
                 "cond": "Condition", "enc": "Encounter", "meds": "MedicationRequest"}
    got = run(templates, {"meds": bundle([obs(9)])}, fhir.base_url, session)
    with pytest.raises(PatientDataUnavailable):
        run(templates, {}, fhir.base_url, session, {"cond"})
    assert got.sources["obs"] == "fetched"
    ours = [r for r in caplog.records if r.name.startswith("service.")]
    assert ours, "expected DEBUG records from service.fhir"
    for record in caplog.records:
        text = record.getMessage() + repr(record.args)
        assert TOKEN not in text
    for record in ours:
        text = record.getMessage()
        assert "secret-value" not in text and "p1" not in text
