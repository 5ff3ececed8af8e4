"""`dermis screen` and `dermis plan`: the contract's JSON on stdout, bad input → exit 2 naming the field."""
import json

import pytest

from conftest import ROOT, run_dermis

INTAKE = str(ROOT / "examples" / "intake.json")
REQUEST = str(ROOT / "examples" / "plan-request.json")
SCREEN_KEYS = {"outcome", "reasons", "precautions", "protocolVersion"}
PLAN_KEYS = {"zones", "numbingMinutes", "procedureMinutes", "appointmentMinutes", "series", "downtimeDays",
             "aftercare", "protocolVersion"}
ZONE_KEYS = {"zone", "indication", "depthMm", "recommendedDepthMm", "passes", "pattern", "estimatedChannelsPerCm2"}


def test_screen_prints_the_contract_result_for_the_readme_example():
    code, out, err = run_dermis("screen", "--intake", INTAKE, "--on", "2026-11-27", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert SCREEN_KEYS <= result.keys()
    assert result["outcome"] == "deferred"
    assert result["until"] == "2027-01-01"
    assert [r["rule"] for r in result["reasons"]] == ["isotretinoin-recent", "botulinum-toxin-recent-in-area"]
    assert all(r["source"] for r in result["reasons"] + result["precautions"])
    assert [p["rule"] for p in result["precautions"]] == ["hsv-prophylaxis"]


def test_screen_on_the_day_the_deferrals_end_is_eligible_with_precautions():
    code, out, _ = run_dermis("screen", "--intake", INTAKE, "--on", "2027-01-01", "--json")
    assert code == 0
    assert json.loads(out)["outcome"] == "eligible-with-precautions"


def test_screen_report_for_a_person_names_outcome_reasons_and_sources():
    code, out, _ = run_dermis("screen", "--intake", INTAKE, "--on", "2026-11-27")
    assert code == 0
    assert out.startswith("Screening: Deferred until 2027-01-01")
    assert "source: Isotretinoin package insert" in out
    assert "the qualified practitioner decides" in out


def test_screen_reads_standard_input():
    code, out, _ = run_dermis("screen", "--intake", "-", "--on", "2026-11-27", "--json",
                              stdin=(ROOT / "examples" / "intake.json").read_text())
    assert code == 0 and json.loads(out)["outcome"] == "deferred"


def test_plan_from_a_file_and_from_flags_agree_with_the_contract_example():
    code, from_file, err = run_dermis("plan", "--request", REQUEST, "--json")
    assert code == 0, err
    code, from_flags, err = run_dermis("plan", "--zone", "cheeks:acne-scars", "--skin", "thick", "--device", "skinpen",
                                       "--max-depth", "1.5", "--fitzpatrick", "3", "--start", "2026-12-01", "--json")
    assert code == 0, err
    assert json.loads(from_file) == json.loads(from_flags)
    plan = json.loads(from_file)
    assert PLAN_KEYS <= plan.keys()
    zone = plan["zones"][0]
    assert ZONE_KEYS <= zone.keys()
    assert (zone["depthMm"], zone["recommendedDepthMm"], zone["limitedBy"]) == (1.5, 2.0, "practitioner")
    assert plan["series"]["proposedDates"] == ["2026-12-01", "2026-12-29", "2027-01-26"]
    assert plan["downtimeDays"]["min"] == 4 and plan["downtimeDays"]["max"] == 5
    assert plan["aftercare"][0] == {"fromHour": 0, "toHour": 8, "instruction": "Put nothing on the treated skin.",
                                    "id": "nothing-on-skin", "source": "Clinic SkinPen handouts"}


def test_plan_report_for_a_person():
    code, out, _ = run_dermis("plan", "--request", REQUEST)
    assert code == 0
    assert "cheeks — acne-scars: 1.5 mm (recommended 2.0 mm, limited by practitioner)" in out
    assert "Aftercare:" in out


@pytest.mark.parametrize("body, path, words", [
    ("{", "", "not valid JSON"),
    ('{"dateOfBirth":"1990-01-01","fitzpatrickType":3,"pregnant":false,"nursing":false,"treatmentZones":["cheek"]}',
     "treatmentZones[0]", "unknown zone 'cheek'"),
    ('{"dateOfBirth":"1990-02-30","fitzpatrickType":3,"pregnant":false,"nursing":false,"treatmentZones":["cheeks"]}',
     "dateOfBirth", "not a real date"),
    ('{"dateOfBirth":"1990-01-01","fitzpatrickType":3,"nursing":false,"treatmentZones":["cheeks"]}',
     "pregnant", "required"),
    ('{"dateOfBirth":"1990-01-01","fitzpatrickType":3,"pregnant":false,"nursing":false,"treatmentZones":["cheeks"],'
     '"medications":[{"code":"accutane"}]}', "medications[0].code", "isotretinoin"),
])
def test_bad_intake_exits_2_naming_the_field_with_nothing_on_stdout(tmp_path, body, path, words):
    intake = tmp_path / "intake.json"
    intake.write_text(body)
    code, out, err = run_dermis("screen", "--intake", str(intake), "--on", "2026-11-27", "--json")
    assert code == 2
    assert out == ""
    assert words in err
    if path:
        assert err.startswith(path + ":")


@pytest.mark.parametrize("args, words", [
    (["--zone", "cheek:acne-scars", "--skin", "thick", "--device", "skinpen", "--max-depth", "1.5"], "--zone #1: unknown zone 'cheek'"),
    (["--zone", "cheeks", "--skin", "thick", "--device", "skinpen", "--max-depth", "1.5"], "is not ZONE:INDICATION"),
    (["--zone", "cheeks:acne-scars", "--skin", "thick", "--device", "skinpen"], "--max-depth: is required"),
    (["--zone", "cheeks:acne-scars", "--skin", "thick", "--device", "skinpen", "--max-depth", "deep"], "not a depth"),
    (["--zone", "cheeks:acne-scars", "--skin", "thick", "--device", "pen9", "--max-depth", "1.5"], "--device: unknown device 'pen9'"),
    (["--zone", "cheeks:acne-scars", "--skin", "thick", "--device", "skinpen", "--max-depth", "1.5", "--start", "2026-02-29"], "--start"),
    (["--zone", "cheeks:acne-scars", "--fitzpatrick", "three"], "fitzpatrick"),
    (["--request", REQUEST, "--zone", "cheeks:acne-scars"], "not both"),
    (["--request", "/no/such/file.json"], "cannot read"),
    (["--bogus-flag"], "bogus-flag"),
])
def test_bad_plan_input_exits_2(args, words):
    code, out, err = run_dermis("plan", *args)
    assert code == 2, err
    assert out == ""
    assert words in err


def test_an_invalid_protocol_override_is_refused_naming_the_field(tmp_path):
    code, out, _ = run_dermis("protocol")
    assert code == 0
    protocol = json.loads(out)
    protocol["devices"][0]["depthStepMm"] = 0
    override = tmp_path / "protocol.json"
    override.write_text(json.dumps(protocol))
    code, out, err = run_dermis("plan", "--request", REQUEST, "--protocol", str(override))
    assert code == 2 and out == ""
    assert "devices[0].depthStepMm: must be above 0" in err
    code, _, err = run_dermis("protocol", "--check", env={"DERMIS_PROTOCOL_FILE": str(override)})
    assert code == 2 and "devices[0].depthStepMm" in err


def test_an_unreadable_protocol_file_is_refused():
    code, out, err = run_dermis("plan", "--request", REQUEST, "--protocol", "/no/such/protocol.json")
    assert code == 2 and out == ""
    assert "/no/such/protocol.json" in err and "cannot be read" in err
