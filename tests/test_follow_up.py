"""Follow-up over real HTTP against the built server: limits that only a real server enforces."""
import json
import urllib.error
import urllib.request

from conftest import run_dermis

DOCTOR = "ines.doctor@demo.dermis.test"


def api(server, token, path, data=None, content_type="application/json"):
    request = urllib.request.Request(server.base + path, data=data, method="POST" if data is not None else "GET",
                                     headers={"Authorization": f"Bearer {token}", "Content-Type": content_type})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_an_oversize_photo_is_refused_before_it_is_read_and_nothing_is_kept(server, data_dir):
    code, out, err = run_dermis("create-token", "--email", DOCTOR, "--data-dir", str(data_dir))
    assert code == 0, err
    token = out.strip().split()[-1]
    status, body = api(server, token, "/api/v1/patients?q=zoe")
    assert status == 200, body
    patient = json.loads(body)["patients"][0]["id"]

    boundary = "dermis-oversize"
    payload = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"zone\"\r\n\r\ncheeks\r\n"
               f"--{boundary}\r\nContent-Disposition: form-data; name=\"view\"\r\n\r\nfront\r\n"
               f"--{boundary}\r\nContent-Disposition: form-data; name=\"photo\"; filename=\"big.jpg\"\r\n"
               "Content-Type: image/jpeg\r\n\r\n").encode() + b"\xff\xd8\xff" + b"\0" * (17 * 1024 * 1024) + f"\r\n--{boundary}--\r\n".encode()
    status, _ = api(server, token, f"/api/v1/patients/{patient}/photos", payload, f"multipart/form-data; boundary={boundary}")
    assert status == 413
    status, body = api(server, token, f"/api/v1/patients/{patient}/photos")
    assert status == 200 and json.loads(body) == []
    photos = data_dir / "photos"
    assert not photos.exists() or not any(photos.iterdir())
