"""schemathesis against a live `catalog serve`: every check, as an admin, zero failures.

All of schemathesis's phases run (examples, coverage, fuzzing, stateful; the stateful phase
follows the links it derives from the document) with a fixed seed and a bounded number of
examples per operation, so a run takes well under a minute and finds the same cases each time.
`make fuzz` runs the same test for minutes (FUZZ_SECONDS) instead of bounded examples.

Accepted answers that no JSON Schema can express are allowed, operation by operation, in
tests/contract/schemathesis.toml; there is nothing else between schemathesis and a failure.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from app.core.config import Settings
from tests.conftest import Users, bearer
from tests.ops.server import running_server

pytestmark = pytest.mark.slow

HERE = Path(__file__).parent
ST = Path(sys.executable).parent / "st"
SEED = "20261202"
# Per operation and phase. The bounded run ends on this count (about 30 s on 2 cores), so the
# same seed sends the same cases; FUZZ_SECONDS (`make fuzz`) runs for that long instead, and
# schemathesis repeats its fuzzing and stateful phases until the time is spent.
MAX_EXAMPLES = "4"
BOUNDED_TIMEOUT_SECONDS = 120
# Fewer cases than this and the run was not the run it claims to be (the document not loaded,
# operations filtered out).
MIN_CASES = 300


def schemathesis_command(base_url: str, token_header: str, report: Path) -> list[str]:
    fuzz_seconds = os.environ.get("FUZZ_SECONDS")
    budget = ["--max-time", fuzz_seconds] if fuzz_seconds else ["--max-examples", MAX_EXAMPLES]
    return [
        str(ST),
        "--config-file",
        str(HERE / "schemathesis.toml"),
        "--no-color",
        "run",
        f"{base_url}/openapi.json",
        "--checks",
        "all",
        "--header",
        token_header,
        "--seed",
        SEED,
        *budget,
        "--workers",
        "1",
        "--generation-database",
        "none",  # no examples remembered from an earlier run: the same seed, the same cases
        "--request-timeout",
        "10",
        "--report",
        "junit",
        "--report-junit-path",
        str(report),
    ]


def test_schemathesis_finds_no_failure(settings: Settings, users: Users, tmp_path: Path) -> None:
    headers = bearer(settings, users.admin, "admin")
    token_header = f"Authorization: {headers['Authorization']}"
    # No Redis: the failed logins schemathesis sends throttle this server only, not the
    # 127.0.0.1 of every later test that logs in.
    with running_server(settings, tmp_path, REDIS_URL="") as server:
        document = httpx.get(f"{server.base_url}/openapi.json").json()
        operations = sum(
            method in ("get", "post", "put", "patch", "delete")
            for item in document["paths"].values()
            for method in item
        )
        command = schemathesis_command(server.base_url, token_header, tmp_path / "junit.xml")
        result = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=int(os.environ.get("FUZZ_SECONDS", "0")) + BOUNDED_TIMEOUT_SECONDS,
            cwd=tmp_path,
            stdin=subprocess.DEVNULL,
            check=False,
        )
    output = result.stdout + result.stderr
    print(output)  # shown with -s (make fuzz); a failure shows it in the assertion
    assert result.returncode == 0, f"schemathesis exited {result.returncode}:\n{output}"
    cases = re.search(r"(\d+) generated, (\d+) passed", output)
    assert cases is not None, output
    assert int(cases[1]) == int(cases[2]) >= MIN_CASES, output
    for phase in ("Examples", "Coverage", "Fuzzing", "Stateful"):
        assert f"✅ {phase}" in output, output
    assert f"Tested: {operations}\n" in output, output  # every operation in the document
