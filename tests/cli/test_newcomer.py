"""A newcomer's first `make run`: a fresh copy of this working tree, `make install`, then
`make run` where nothing answers on localhost:5432 and no SECRET_KEY is set.

`make run` runs in a network namespace with only its own loopback, so neither the machine's
PostgreSQL nor any other service can stand in for the embedded one. The copy is what git
would commit plus what it would add (`--cached --others --exclude-standard`), so work not yet
committed is what gets tested.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import psutil
import pytest

from app.core.config import Settings

pytestmark = pytest.mark.slow

REPOSITORY = Path(__file__).resolve().parents[2]
INSTALL_TIMEOUT = 900.0  # a cold package cache downloads every wheel
READY_TIMEOUT = 120.0  # initdb, migrations and startup on a loaded 2-core machine
STOP_TIMEOUT = 60.0
ADMIN = {"username": "newcomer@example.com", "password": "correct horse battery staple"}
# Inside the namespace loopback is the namespace's own: the default port cannot collide.
BASE_URL = "http://127.0.0.1:8000"

# Runs inside the namespace: one request, printed as [status, body]; 0 when nothing answers.
_REQUEST = """
import json, sys, urllib.error, urllib.request
method, url, form, token = json.loads(sys.argv[1])
request = urllib.request.Request(url, data=form.encode() or None, method=method)
if form:
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
if token:
    request.add_header("Authorization", "Bearer " + token)
try:
    with urllib.request.urlopen(request, timeout=5) as response:
        print(json.dumps([response.status, response.read().decode()]))
except urllib.error.HTTPError as error:
    print(json.dumps([error.code, error.read().decode()]))
except OSError as error:
    print(json.dumps([0, str(error)]))
"""


def newcomer_env() -> dict[str, str]:
    """This shell's environment without any setting of the service: a fresh terminal."""
    settings = {(field.validation_alias or name) for name, field in Settings.model_fields.items()}
    dropped = {str(name).upper() for name in settings}
    dropped |= {"PROMETHEUS_MULTIPROC_DIR", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"}
    env = {key: value for key, value in os.environ.items() if key.upper() not in dropped}
    env["FIRST_ADMIN_EMAIL"] = ADMIN["username"]
    env["FIRST_ADMIN_PASSWORD"] = ADMIN["password"]
    return env


def copy_working_tree(destination: Path) -> None:
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPOSITORY,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = REPOSITORY / name
        if not source.exists():  # deleted in the working tree, not yet in the index
            continue
        target = destination / name
        target.parent.mkdir(parents=True, exist_ok=True)
        # copy2 keeps mtimes: the install stamp stays newer than the requirements, so
        # `make run` in the namespace (no registry there) does not reinstall.
        shutil.copy2(source, target, follow_symlinks=False)


@pytest.fixture
def netns() -> Iterator[str]:
    """A network namespace with only loopback up: nothing listens on 127.0.0.1:5432 there."""
    if os.geteuid() != 0:
        pytest.skip("making a network namespace (ip netns add) needs root")
    if shutil.which("ip") is None:
        pytest.skip("no `ip` command (iproute2) to make a network namespace")
    name = f"catalog-newcomer-{uuid.uuid4().hex[:8]}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True, timeout=30)
    if made.returncode != 0:
        pytest.skip(f"this machine cannot make a network namespace: {made.stderr.strip()}")
    try:
        subprocess.run(
            ["ip", "netns", "exec", name, "ip", "link", "set", "lo", "up"], check=True, timeout=30
        )
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False, timeout=30)


@pytest.fixture
def clone(tmp_path: Path, netns: str) -> Iterator[Path]:
    """The working tree copied and `make install`ed (outside the namespace: it needs the
    package registry)."""
    directory = tmp_path / "clone"
    copy_working_tree(directory)
    installed = subprocess.run(
        ["make", "install"],
        cwd=directory,
        env=newcomer_env(),
        capture_output=True,
        text=True,
        timeout=INSTALL_TIMEOUT,
        check=False,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    try:
        yield directory
    finally:
        # Whatever a failed run left behind (the embedded server detaches from `make`).
        for process in processes_of(directory):
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()


def processes_of(directory: Path) -> list[psutil.Process]:
    """Processes started from the clone: its catalog, its pgserver postgres."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(str(directory) in part for part in process.info["cmdline"] or ()):
            found.append(process)
    return found


def request(
    netns: str, method: str, path: str, *, form: dict[str, str] | None = None, token: str = ""
) -> tuple[int, str]:
    payload = json.dumps([method, BASE_URL + path, urlencode(form or {}), token])
    done = subprocess.run(
        ["ip", "netns", "exec", netns, sys.executable, "-c", _REQUEST, payload],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    status, body = json.loads(done.stdout)
    return int(status), str(body)


class MakeRun:
    """`make run` in the namespace, its output in a file."""

    def __init__(self, clone: Path, netns: str, log: Path) -> None:
        self.clone, self.netns, self.log = clone, netns, log
        with log.open("wb") as out:
            # `ip netns exec` execs its command: this process is `make` itself.
            self.make = subprocess.Popen(
                ["ip", "netns", "exec", netns, "make", "run"],
                cwd=clone,
                env=newcomer_env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            assert self.make.poll() is None, f"make run exited:\n{self.output()}"
            if request(self.netns, "GET", "/health/ready")[0] == 200:
                return
            time.sleep(0.5)
        raise AssertionError(f"not ready within {READY_TIMEOUT}s:\n{self.output()}")

    def service(self) -> psutil.Process:
        [catalog] = [
            child
            for child in psutil.Process(self.make.pid).children(recursive=True)
            if "catalog" in " ".join(child.cmdline()) and "dev" in child.cmdline()
        ]
        return catalog

    def stop(self) -> int:
        """SIGTERM to the service, as a supervisor stops it; `make` then ends with its status.

        (SIGTERM to `make` itself would end make with 143 whatever the service does: GNU make
        passes the signal on, then re-raises it on itself.)
        """
        self.service().send_signal(signal.SIGTERM)
        try:
            return self.make.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"not stopped in {STOP_TIMEOUT}s:\n{self.output()}") from None


def login(netns: str) -> str:
    status, body = request(netns, "POST", "/auth/token", form=ADMIN)
    assert status == 200, body
    return str(json.loads(body)["access_token"])


def test_make_run_on_a_fresh_clone_without_postgres_or_secret_key(
    clone: Path, netns: str, tmp_path: Path
) -> None:
    first = MakeRun(clone, netns, tmp_path / "first-run.log")
    first.wait_ready()
    token = login(netns)
    assert request(netns, "GET", "/users/me", token=token)[0] == 200
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    assert request(netns, "GET", "/users/me", token=tampered)[0] == 401
    key_file = clone / ".data" / "secret_key"
    key = key_file.read_text()
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert first.stop() == 0, first.output()
    assert "EMBEDDED PostgreSQL" in first.output()
    assert not (clone / ".data" / "postgres" / "postmaster.pid").exists(), first.output()
    assert processes_of(clone) == [], first.output()

    second = MakeRun(clone, netns, tmp_path / "second-run.log")
    second.wait_ready()
    # Signed with the key of the first run: 200 only because that key was kept.
    status, body = request(netns, "GET", "/users/me", token=token)
    assert status == 200, body
    assert json.loads(body)["email"] == ADMIN["username"]
    assert key_file.read_text() == key
    assert second.stop() == 0, second.output()
    assert processes_of(clone) == [], second.output()
