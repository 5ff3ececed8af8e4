"""FHIR R4 interoperability with real clients from PyPI, against the built server: fhirclient (SMART on FHIR's strict R4
models) parses every resource Dermis serves, fhirpy searches, pages, creates conditionally, updates and refreshes."""
import json
import struct
import zlib

import pytest
import requests

from conftest import RunningServer, run_dermis

TINY_PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
PRACTITIONER = "ines.doctor@demo.dermis.test"


def png_bytes(width=32, height=16):
    """A real PNG (RGB, a gradient) from the standard library: what a clinic camera's export would be re-encoded from."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    rows = b"".join(b"\0" + b"".join(bytes((x * 8 % 256, y * 16 % 256, 128)) for x in range(width)) for y in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


class Api:
    """The JSON API and FHIR with one staff bearer token."""

    def __init__(self, base, token):
        self.base = base
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def call(self, method, path, body=None, if_match=None, expect=(200, 201, 204)):
        headers = {"If-Match": f'W/"{if_match}"'} if if_match is not None else {}
        response = self.session.request(method, self.base + path, json=body, headers=headers, timeout=30)
        assert response.status_code in expect, f"{method} {path}: {response.status_code} {response.text}"
        return response.json() if response.content else {}


@pytest.fixture(scope="module")
def clinic(tmp_path_factory):
    """The demo clinic with one patient's whole course charted through the JSON API: intake, screening, plan, consent, a
    signed session, outcome scores, a check-in that flags an infection (an adverse event) and a photo."""
    data = tmp_path_factory.mktemp("fhir") / "data"
    server = RunningServer(data, extra=("--demo",)).wait_ready()
    try:
        code, out, err = run_dermis("create-token", "--email", PRACTITIONER, "--data-dir", str(data))
        assert code == 0, err
        token = out.strip().splitlines()[-1]
        api = Api(server.base, token)
        patient = api.call("GET", "/api/v1/patients?q=Lefevre")["patients"][0]["id"]
        course = f"/api/v1/patients/{patient}"
        api.call("POST", course + "/intakes", {"dateOfBirth": "1988-03-14", "fitzpatrickType": 3, "pregnant": False,
                                               "nursing": False, "treatmentZones": ["cheeks", "forehead"]})
        plan = api.call("POST", course + "/plans", {"request": {
            "zones": [{"zone": "cheeks", "indication": "acne-scars"}, {"zone": "forehead", "indication": "fine-lines"}],
            "skin": "thick", "device": "skinpen", "practitionerMaxDepthMm": 1.5}, "adjustments": []})
        api.call("POST", course + f"/plans/{plan['planID']}/consents",
                 {"typedName": "zoe lefevre", "signature": "data:image/png;base64," + TINY_PNG})
        chart = api.call("POST", course + "/sessions")
        chart_id = chart["chartID"]
        numbed = api.call("POST", course + f"/sessions/{chart_id}/numbing", if_match=chart["version"])
        devices = api.session.get(server.base + "/fhir/R4/Device", timeout=30).json()["entry"]
        pen = next(e["resource"]["id"] for e in devices if "serialNumber" in e["resource"])
        lot = next(e["resource"]["id"] for e in devices if "lotNumber" in e["resource"] and e["resource"]["status"] == "active")
        saved = api.call("PUT", course + f"/sessions/{chart_id}", {
            "identityConfirmed": True, "skinCleansed": True, "deviceID": pen, "lotID": lot,
            "numbingOverrideReason": "Patient declined to wait the full numbing time",
            "zones": [{"zone": "cheeks", "depthMm": 1.5, "passes": 4, "pattern": "crosshatch", "secondsInZone": 20},
                      {"zone": "forehead", "depthMm": 0.25, "passes": 4, "pattern": "crosshatch", "secondsInZone": 12}],
            "painScore": 3, "erythemaGrade": 2, "pinpointBleeding": False, "notes": "Tolerated well"}, if_match=numbed["version"])
        api.call("POST", course + f"/sessions/{chart_id}/sign", if_match=saved["version"])
        api.call("PUT", course + f"/sessions/{chart_id}/outcomes", {"scores": {"goodman-baron.practitioner": 3, "gais.patient": 2}})
        link = api.call("POST", course + f"/sessions/{chart_id}/link")["url"]
        path = "/" + link.split("/", 3)[3]
        checked = requests.post(server.base + path + "/check-ins", data=[("redness", "2"), ("pain", "4"), ("signs[]", "pus")],
                                headers={"Origin": server.base}, allow_redirects=False, timeout=30)
        assert checked.status_code in (201, 303), checked.text
        photo = api.session.post(server.base + course + "/photos", data={"zone": "cheeks", "view": "front", "session": chart_id},
                                 files={"photo": ("photo.png", png_bytes(), "image/png")}, timeout=30)
        assert photo.status_code == 201, photo.text
        # FHIR ids are the lower-case form of Dermis's UUIDs.
        yield {"base": server.base + "/fhir/R4", "origin": server.base, "token": token, "patient": patient.lower(), "chart": chart_id.lower(),
               "api": api, "data": data}
    finally:
        server.stop()


def fhirclient_server(clinic):
    from fhirclient import server as fhirserver

    server = fhirserver.FHIRServer(None, base_uri=clinic["base"] + "/")
    server.session.headers["Authorization"] = f"Bearer {clinic['token']}"
    return server


def test_fhirclient_reads_the_capability_statement_and_parses_every_resource_strictly(clinic):
    from fhirclient.models import bundle

    server = fhirclient_server(clinic)
    server.get_capability()  # strict CapabilityStatement
    statement = server.capabilityStatement
    assert statement.fhirVersion == "4.0.1"
    served = [r.type for r in statement.rest[0].resource]
    seen = {}
    params = {r.type: {p.name for p in r.searchParam or []} for r in statement.rest[0].resource}
    for type_name in served:
        # Patient-linked types are searched by patient (a clinic-wide search of a clinical table is refused: $export).
        scope = f"&subject=Patient/{clinic['patient']}" if "subject" in params[type_name] else ""
        page = bundle.Bundle(server.request_json(f"{type_name}?_count=100{scope}"), strict=True)
        seen[type_name] = page.total
        for entry in page.entry or []:
            assert entry.resource.resource_type == type_name
            # Read one by one too, strictly, through the model's own read.
            again = type(entry.resource).read(entry.resource.id, server)
            assert again.id == entry.resource.id
    # The course put something behind every clinical type.
    for type_name in ["QuestionnaireResponse", "RiskAssessment", "CarePlan", "Consent", "Procedure", "Observation",
                      "AdverseEvent", "Media", "Provenance", "Device", "Appointment", "Schedule", "Group"]:
        if type_name != "Appointment":
            assert seen[type_name] >= 1, (type_name, seen)
    everything = bundle.Bundle(server.request_json(f"Patient/{clinic['patient']}/$everything"), strict=True)
    assert {e.resource.resource_type for e in everything.entry} >= {"Patient", "Procedure", "Observation", "AdverseEvent", "Media",
                                                                    "Consent", "CarePlan", "RiskAssessment", "QuestionnaireResponse"}


def test_the_procedure_carries_zones_depths_and_devices(clinic):
    from fhirclient.models.procedure import Procedure

    server = fhirclient_server(clinic)
    session = Procedure.read(clinic["chart"], server)
    assert session.status == "completed"
    assert [site.coding[0].code for site in session.bodySite] == ["36141000", "68698007"]
    assert len(session.usedReference) == 2
    cheeks = Procedure.read(clinic["chart"] + "-cheeks", server)
    depth = next(e for e in cheeks.extension if e.url.endswith("needle-depth"))
    assert depth.valueQuantity.value == 1.5 and depth.valueQuantity.code == "mm"
    assert cheeks.partOf[0].reference == f"Procedure/{clinic['chart']}"


def fhirpy_client(clinic):
    from fhirpy import SyncFHIRClient

    return SyncFHIRClient(clinic["base"], authorization=f"Bearer {clinic['token']}")


def test_fhirpy_searches_pages_counts_and_includes(clinic):
    client = fhirpy_client(clinic)
    for i in range(7):
        client.resource("Patient", name=[{"family": "Paging", "given": [f"Number{i}"]}], birthDate=f"1980-01-0{i + 1}").save()
    patients = client.resources("Patient").search(family="paging").limit(3)
    assert patients.count() == 7
    everyone = patients.fetch_all()  # follows the absolute next links, three at a time
    assert len(everyone) == 7 and len({p.id for p in everyone}) == 7
    assert len(client.resources("Patient").search(family="paging", birthdate__ge="1980-01-04").fetch_all()) == 4
    procedures = client.resources("Procedure").search(patient=clinic["patient"]).fetch_all()
    assert {p.id for p in procedures} == {clinic["chart"], clinic["chart"] + "-cheeks", clinic["chart"] + "-forehead"}
    observations = client.resources("Observation").search(subject=f"Patient/{clinic['patient']}").fetch_all()
    assert len(observations) == 3  # two outcome scores and the check-in
    bundle = client.resources("Observation").search(patient=clinic["patient"]).include("Observation", "part-of").fetch_raw()
    assert {e["search"]["mode"] for e in bundle.entry} == {"match", "include"}


def test_fhirpy_creates_conditionally_updates_and_refreshes(clinic):
    from fhirpy.base.exceptions import MultipleResourcesFound, OperationOutcome

    client = fhirpy_client(clinic)
    patient = client.resource("Patient", identifier=[{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"}],
                              name=[{"family": "Chalmers", "given": ["Peter"]}], birthDate="1974-12-25",
                              telecom=[{"system": "phone", "value": "+44 7700 900123"}])
    patient.create(identifier="urn:oid:1.2.36.146.595.217.0.1|12345")
    first_id = patient.id
    again = client.resource("Patient", name=[{"family": "Chalmers", "given": ["Peter"]}], birthDate="1974-12-25")
    again.create(identifier="urn:oid:1.2.36.146.595.217.0.1|12345")
    assert again.id == first_id  # found, not made twice
    found, created = client.resources("Patient").search(identifier="urn:oid:1.2.36.146.595.217.0.1|12345").get_or_create(again)
    assert not created and found.id == first_id
    patient["name"] = [{"family": "Chalmers", "given": ["Jim"]}]
    patient.save()  # PUT with the version read (meta.versionId)
    assert patient["meta"]["versionId"] == "2"
    patient.refresh()  # If-None-Match: 2 → 304, nothing changes
    assert patient["name"][0]["given"] == ["Jim"]
    stale = client.resource("Patient", id=first_id, meta={"versionId": "1"}, name=[{"family": "Stale", "given": ["X"]}],
                            birthDate="1974-12-25")
    with pytest.raises((OperationOutcome, MultipleResourcesFound)) as conflict:  # fhirpy reads any 412 as the latter
        stale.save()
    assert "at version 2, not 1" in str(conflict.value)
    assert client.reference("Patient", first_id).to_resource()["name"][0]["given"] == ["Jim"]
    with pytest.raises(OperationOutcome) as refused:
        client.resource("Patient", name=[{"family": "Future", "given": ["Kid"]}], birthDate="2999-01-01").save()
    assert "Patient.birthDate" in str(refused.value)


def test_bad_fhir_input_gets_an_operation_outcome_never_a_500(clinic):
    base, headers = clinic["base"], {"Authorization": f"Bearer {clinic['token']}", "Content-Type": "application/fhir+json"}
    cases = [
        ("POST", "/Patient", "{not json", 400),
        ("POST", "/Patient", json.dumps({"resourceType": "Practitioner"}), 400),
        ("POST", "/Patient", json.dumps({"resourceType": "Patient", "name": "Ada"}), 422),
        ("POST", "/Patient", json.dumps({"resourceType": "Patient", "birthDate": 19900101}), 422),
        ("POST", "/Appointment", json.dumps({"resourceType": "Appointment", "participant": [{"actor": {"reference": "Patient/x"}}]}), 422),
        ("GET", "/Patient?unknown-parameter=1", None, 400),
        ("GET", "/Patient?birthdate=gx2000", None, 400),
        ("GET", "/Appointment?date=tomorrow", None, 400),
        ("GET", "/Procedure?_include=Procedure:nothing", None, 400),
        ("GET", "/Nothing", None, 404),
        ("GET", "/Patient/not-a-uuid", None, 404),
        ("PUT", "/Observation/x", json.dumps({"resourceType": "Observation", "id": "x"}), 405),
    ]
    for method, path, body, status in cases:
        response = requests.request(method, base + path, data=body, headers=headers, timeout=30)
        assert response.status_code == status, (method, path, response.status_code, response.text)
        outcome = response.json()
        assert outcome["resourceType"] == "OperationOutcome" and outcome["issue"][0]["diagnostics"], (path, outcome)
        assert response.headers["Content-Type"].startswith("application/fhir+json")


def test_a_bulk_export_kicks_off_polls_and_streams_ndjson(clinic):
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {clinic['token']}"
    kick = session.get(clinic["base"] + "/$export?_type=Patient,Observation,Media", headers={
        "Prefer": "respond-async", "Accept": "application/fhir+json"}, timeout=30)
    assert kick.status_code == 202, kick.text
    manifest = session.get(kick.headers["Content-Location"], timeout=30).json()
    assert manifest["requiresAccessToken"] is True
    counts = {}
    for output in manifest["output"]:
        response = session.get(output["url"], timeout=60, stream=True)
        assert response.headers["Content-Type"] == "application/fhir+ndjson"
        lines = [json.loads(line) for line in response.iter_lines() if line]
        assert all(r["resourceType"] == output["type"] for r in lines)
        counts[output["type"]] = len(lines)
    assert counts["Patient"] == session.get(clinic["base"] + "/Patient?_summary=count", timeout=30).json()["total"]
    assert counts["Observation"] == 3 and counts["Media"] == 1
    # The exported file needs the token; without it, nothing.
    assert requests.get(manifest["output"][0]["url"], timeout=30).status_code == 401
