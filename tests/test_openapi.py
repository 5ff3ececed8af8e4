"""R17: schemathesis (PyPI) drives every operation of /api/v1/openapi.json against a demo server — examples, coverage
(including negative data), fuzzing and the stateful phase over the document's links — and fails on any 5xx or any answer
the document does not describe."""
import subprocess
import sys
from pathlib import Path

from conftest import ROOT, RunningServer, run_dermis


def test_schemathesis_finds_no_server_error_and_no_answer_the_document_does_not_describe(tmp_path):
    data = tmp_path / "data"
    server = RunningServer(data, extra=("--demo",)).wait_ready()
    try:
        # An admin's token: every operation is theirs to call. (Refusals for other roles are the role matrix's test.)
        code, out, err = run_dermis("create-token", "--email", "admin@demo.dermis.test", "--data-dir", str(data))
        assert code == 0, err
        token = out.strip().splitlines()[-1]
        report = tmp_path / "schemathesis.txt"
        done = subprocess.run(
            [str(Path(sys.executable).parent / "schemathesis"), "--config-file", str(ROOT / "tests" / "schemathesis.toml"),
             "run", f"{server.base}/api/v1/openapi.json",
             "--url", server.base,
             "-H", f"Authorization: Bearer {token}",
             "--phases", "examples,coverage,fuzzing,stateful",
             # Every check; tests/schemathesis.toml says which refusals of schema-valid data are the clinic's rules.
             # One worker: CPython 3.11's ast module is not thread-safe, and hypothesis parses lambdas with it.
             "--checks", "all", "--max-examples", "15", "--workers", "1", "--seed", "20261130",
             "--request-timeout", "30", "--suppress-health-check", "all", "--generation-database", "none"],
            capture_output=True, text=True, timeout=1500, cwd=tmp_path)
        report.write_text(done.stdout + done.stderr)
        assert done.returncode == 0, done.stdout[-12000:] + done.stderr[-3000:]
    finally:
        server.stop()
    assert "Internal Server Error" not in server.output()
