"""No password and no token ever reaches a log line, and no response repeats one, except the
token responses that hand the tokens out."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog
from fastapi import FastAPI

from app.core.config import Settings
from tests.conftest import Users, bearer

pytestmark = pytest.mark.usefixtures("users", "isolated_throttle")

CATALOG = Path(sys.executable).parent / "catalog"


class LogOutput:
    """What the root handler's formatter renders, and the access lines, which the service writes
    straight to stderr (app.core.logging.write_access_line)."""

    def __init__(self, buffer: io.StringIO, capsys: pytest.CaptureFixture[str]) -> None:
        self.buffer = buffer
        self.capsys = capsys
        self.stderr = ""

    def getvalue(self) -> str:
        self.stderr += self.capsys.readouterr().err
        direct = [line for line in self.stderr.splitlines() if line.startswith("{")]
        return self.buffer.getvalue() + "".join(f"{line}\n" for line in direct)


@pytest.fixture
def log_output(capsys: pytest.CaptureFixture[str]) -> Iterator[LogOutput]:
    """Every log line, rendered by the same structlog formatter the service writes with."""
    capsys.readouterr()
    root = logging.getLogger()
    formatter = next(
        handler.formatter
        for handler in root.handlers
        if isinstance(handler.formatter, structlog.stdlib.ProcessorFormatter)
    )
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(formatter)
    root.addHandler(handler)
    try:
        yield LogOutput(buffer, capsys)
    finally:
        root.removeHandler(handler)


class Recorder:
    def __init__(self) -> None:
        self.responses: list[tuple[str, str]] = []

    async def __call__(self, response: httpx.Response) -> None:
        await response.aread()
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.items())
        self.responses.append((response.request.url.path, f"{headers}\n{response.text}"))


def make_client(app: FastAPI, recorder: Recorder, headers: dict[str, str] | None = None) -> Any:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://test",
        headers=headers,
        event_hooks={"response": [recorder]},
    )


async def test_auth_flows_leak_no_secret(
    app: FastAPI, settings: Settings, users: Users, log_output: LogOutput
) -> None:
    recorder = Recorder()
    too_short = "Sh0rt!x"
    first_password = "first-Secret-password-4711"
    wrong_password = "wrong-Secret-password-0815"
    second_password = "second-Secret-password-2342"
    async with (
        make_client(app, recorder, bearer(settings, users.admin, "admin")) as admin,
        make_client(app, recorder) as anonymous,
    ):
        body = {"email": "leak@example.com", "password": too_short}
        assert (await admin.post("/users", json=body)).status_code == 422
        body["password"] = first_password
        created = await admin.post("/users", json=body)
        assert created.status_code == 201
        user_id = created.json()["id"]

        form = {"username": "leak@example.com", "password": wrong_password}
        assert (await anonymous.post("/auth/token", data=form)).status_code == 401
        form["password"] = first_password
        first = (await anonymous.post("/auth/token", data=form)).json()

        me = await anonymous.get(
            "/users/me", headers={"Authorization": f"Bearer {first['access_token']}"}
        )
        assert me.status_code == 200
        second_response = await anonymous.post(
            "/auth/refresh", json={"refresh_token": first["refresh_token"]}
        )
        second = second_response.json()
        reuse = await anonymous.post(
            "/auth/refresh", json={"refresh_token": first["refresh_token"]}
        )
        assert reuse.status_code == 401
        bogus = await anonymous.get(
            "/products", headers={"Authorization": f"Bearer {first['refresh_token']}"}
        )
        assert bogus.status_code == 401
        patched = await admin.patch(f"/users/{user_id}", json={"password": second_password})
        assert patched.status_code == 200
        logout = await anonymous.post(
            "/auth/logout",
            json={"refresh_token": second["refresh_token"]},
            headers={"Authorization": f"Bearer {second['access_token']}"},
        )
        assert logout.status_code == 204

    logs = log_output.getvalue()
    # The capture works: the flows above did log.
    for event in ("user created", "login failed", "spent refresh token presented again"):
        assert event in logs
    access_lines = [
        line for line in logs.splitlines() if json.loads(line).get("event") == "request"
    ]
    assert len(access_lines) == len(recorder.responses)

    passwords = [too_short, first_password, wrong_password, second_password]
    tokens = {
        "/auth/token": [first["access_token"], first["refresh_token"]],
        "/auth/refresh": [second["access_token"], second["refresh_token"]],
    }
    all_tokens = [token for pair in tokens.values() for token in pair]
    signatures = [token.rsplit(".", 1)[-1] for token in all_tokens if token.count(".") == 2]
    for secret in passwords + all_tokens + signatures:
        assert secret not in logs

    for path, text in recorder.responses:
        for password in passwords:
            assert password not in text, path
        for token in all_tokens:
            if token in text:
                # Only in the one response that hands it out.
                assert token in tokens.get(path, []), path
    assert sum(first["refresh_token"] in text for _, text in recorder.responses) == 1


def test_create_user_command_leaks_no_password(settings: Settings) -> None:
    password = "cli-Secret-password-9001"
    result = subprocess.run(
        [
            str(CATALOG),
            "create-user",
            "cli-leak@example.com",
            "--role",
            "editor",
            "--password-stdin",
        ],
        input=password + "\n",
        env={**os.environ, "DATABASE_URL": str(settings.database_url), "LOG_LEVEL": "DEBUG"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "user created" in result.stderr
    assert password not in result.stdout + result.stderr
