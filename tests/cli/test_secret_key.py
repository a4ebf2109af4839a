"""SECRET_KEY has no default: what serves refuses without it, `catalog dev` makes and keeps one."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import click
import pytest

from app.cli import dev_secret_key
from tests.ops.server import CATALOG, free_port

STRONG = "Zq8v-3kLx_P0wN7yR2tB5mJ9cH4dF6gS-0123"
ADMIN = {"username": "keeper@example.com", "password": "correct horse battery staple"}
SETTINGS_ENV = ("SECRET_KEY", "DATABASE_URL", "ENVIRONMENT", "PORT", "PROMETHEUS_MULTIPROC_DIR")


def clean_env(**values: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in SETTINGS_ENV}
    return {**env, **values}


def catalog(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(CATALOG), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


class TestDevSecretKey:
    def test_made_once_with_mode_0600_then_reused(self, tmp_path: Path) -> None:
        path = tmp_path / ".data" / "secret_key"  # .data does not exist yet
        key = dev_secret_key(path)
        assert len(key) >= 64
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert dev_secret_key(path) == key
        assert sorted(p.name for p in path.parent.iterdir()) == ["secret_key"]  # no draft left

    def test_each_clone_gets_its_own(self, tmp_path: Path) -> None:
        assert dev_secret_key(tmp_path / "a") != dev_secret_key(tmp_path / "b")

    def test_a_key_file_others_can_read_is_refused(self, tmp_path: Path) -> None:
        path = tmp_path / "secret_key"
        dev_secret_key(path)
        path.chmod(0o644)
        with pytest.raises(click.ClickException, match="chmod 600"):
            dev_secret_key(path)


@pytest.mark.parametrize("environment", ["development", "test", "production"])
def test_serve_refuses_without_secret_key(tmp_path: Path, environment: str) -> None:
    result = catalog("serve", cwd=tmp_path, env=clean_env(ENVIRONMENT=environment))
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1].startswith("Error: SECRET_KEY is not set")


def test_a_placeholder_key_stops_every_command_in_production(tmp_path: Path) -> None:
    placeholder = "change-me-in-production-please-32chars"
    env = clean_env(ENVIRONMENT="production", SECRET_KEY=placeholder)
    result = catalog("migrate", cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith("Error: invalid settings:")
    assert "SECRET_KEY" in line
    assert placeholder not in result.stderr + result.stdout


def request(url: str, *, form: dict[str, str] | None = None, token: str = "") -> tuple[int, str]:
    data = "&".join(f"{k}={urllib.request.quote(v)}" for k, v in (form or {}).items()).encode()
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    req = urllib.request.Request(url, data=data or None, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def start_dev(cwd: Path, database_url: str, port: int) -> subprocess.Popen[str]:
    env = clean_env(
        DATABASE_URL=database_url,
        PORT=str(port),
        FIRST_ADMIN_EMAIL=ADMIN["username"],
        FIRST_ADMIN_PASSWORD=ADMIN["password"],
    )
    return subprocess.Popen(
        [str(CATALOG), "dev"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def wait_ready(process: subprocess.Popen[str], base_url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if request(f"{base_url}/health/ready")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    process.kill()
    raise AssertionError(f"not ready:\n{process.communicate(timeout=30)[0]}")


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGTERM)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    return output


@pytest.mark.slow
def test_catalog_dev_keeps_its_key_so_tokens_survive_a_restart(
    tmp_path: Path, fresh_database_url: str
) -> None:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    first = start_dev(tmp_path, fresh_database_url, port)
    try:
        wait_ready(first, base_url)
        status, body = request(f"{base_url}/auth/token", form=ADMIN)
        assert status == 200, body
        token = json.loads(body)["access_token"]
    finally:
        output = stop(first)
    assert "generated a development key" in output
    key_file = tmp_path / ".data" / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text()
    assert key.strip() not in output

    second = start_dev(tmp_path, fresh_database_url, port)
    try:
        wait_ready(second, base_url)
        assert request(f"{base_url}/users/me", token=token)[0] == 200
    finally:
        output = stop(second)
    assert "generated a development key" not in output
    assert key_file.read_text() == key

    key_file.write_text(dev_secret_key(tmp_path / "another") + "\n")  # a new key: token refused
    third = start_dev(tmp_path, fresh_database_url, port)
    try:
        wait_ready(third, base_url)
        assert request(f"{base_url}/users/me", token=token)[0] == 401
    finally:
        stop(third)
