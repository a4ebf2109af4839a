"""Logs: one JSON object per line with the request's context, uvicorn folded in, no secrets."""

from __future__ import annotations

import io
import json
import logging
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.core.config import Settings
from app.core.logging import configure_logging, get_logger
from tests.conftest import Users, bearer
from tests.ops.server import running_server

DSN_PASSWORD = "s3cr3t-dsn-password"


@contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """What the root handler writes, through the same formatter, into a buffer."""
    root = logging.getLogger()
    handler = logging.StreamHandler(io.StringIO())
    handler.setFormatter(root.handlers[0].formatter)
    root.addHandler(handler)
    try:
        yield handler.stream
    finally:
        root.removeHandler(handler)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def access_lines(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line.get("logger") == "app.access"]


def stderr_lines(capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    """The JSON lines written to stderr since the last call (access lines go straight there)."""
    return [
        json.loads(line) for line in capsys.readouterr().err.splitlines() if line.startswith("{")
    ]


class TestAccessLine:
    async def test_one_json_line_with_the_request_context(
        self, app: object, users: Users, settings: Settings, capsys: pytest.CaptureFixture[str]
    ) -> None:
        headers = {**bearer(settings, users.viewer, "viewer"), "X-Request-ID": "trace-42"}
        transport = httpx.ASGITransport(app=app)  # type: ignore[arg-type]
        stderr_lines(capsys)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.get("/products/42", headers=headers)
        assert response.status_code == 404

        [line] = access_lines(stderr_lines(capsys))
        assert line["event"] == "request"
        assert line["level"] == "info"
        assert line["request_id"] == "trace-42" == response.headers["x-request-id"]
        assert (line["method"], line["route"], line["status"]) == (
            "GET",
            "/products/{product_id}",
            404,
        )
        assert line["user_id"] == users.viewer
        assert isinstance(line["duration_ms"], float | int)
        assert line["duration_ms"] >= 0
        assert datetime.fromisoformat(line["time"]).utcoffset() is not None

    async def test_anonymous_request_has_no_user_and_a_generated_id(
        self, client: httpx.AsyncClient, capsys: pytest.CaptureFixture[str]
    ) -> None:
        stderr_lines(capsys)
        response = await client.get("/health", headers={"X-Request-ID": "bad id!"})
        [line] = access_lines(stderr_lines(capsys))
        assert line["user_id"] is None
        assert line["request_id"] == response.headers["x-request-id"] != "bad id!"


class TestNoSecrets:
    async def test_bearer_token_never_reaches_the_log(
        self,
        client: httpx.AsyncClient,
        settings: Settings,
        users: Users,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        valid = bearer(settings, users.admin, "admin")["Authorization"]
        forged = "Bearer " + "x" * 40 + ".forged.signature"
        capsys.readouterr()
        with captured_logs() as out:
            await client.get("/users/me", headers={"Authorization": valid})
            await client.get("/users/me", headers={"Authorization": forged})
        text = out.getvalue() + capsys.readouterr().err
        assert len(access_lines(json_lines(text))) == 2
        assert valid.split()[1] not in text
        assert "forged.signature" not in text

    def test_secret_fields_dsn_passwords_and_tracebacks_are_redacted(self) -> None:
        log = get_logger("tests.ops")
        dsn = f"postgresql://catalog:{DSN_PASSWORD}@db:5432/catalog"
        with captured_logs() as out:
            log.info("connecting", url=dsn, password="hunter2", authorization="Bearer abc.def")
            log.info("header was Bearer abc.def.ghi")
            try:
                raise ConnectionError(f"cannot reach {dsn}")
            except ConnectionError:
                log.exception("database down")
        text = out.getvalue()
        lines = json_lines(text)
        assert len(lines) == 3
        for secret in (DSN_PASSWORD, "hunter2", "abc.def"):
            assert secret not in text
        assert lines[0]["password"] == "[redacted]"
        assert "ConnectionError" in lines[2]["exception"]


class TestConsoleFormat:
    def test_console_format_is_for_humans(self) -> None:
        root_level = logging.getLevelName(logging.getLogger().level)
        configure_logging(root_level, "console")
        try:
            with captured_logs() as out:
                get_logger("app.access").info("request", method="GET", route="/health")
        finally:
            configure_logging(root_level, "json")
        line = out.getvalue().strip()
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)
        assert "request" in line
        assert "route=/health" in line


# --------------------------------------------------------------------------- a real server


def _send_garbage(port: int) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        raw.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        return raw.recv(1024)


@pytest.mark.slow
def test_serve_writes_only_json_lines(settings: Settings, users: Users, tmp_path: Path) -> None:
    """Startup, access, uvicorn's own warnings and shutdown: every line of output is JSON."""
    token = bearer(settings, users.editor, "editor")
    with running_server(settings, tmp_path) as server:
        response = httpx.get(f"{server.base_url}/products/7", headers=token, timeout=5)
        assert response.status_code == 404
        assert _send_garbage(server.port).startswith(b"HTTP/1.1 400")
        server.terminate()
        assert server.wait() == 0

    lines = server.lines()
    parsed = [json.loads(line) for line in lines]  # raises on the first line that is not JSON
    events = [line["event"] for line in parsed]
    assert any(event.startswith("Uvicorn running on") for event in events)
    assert "Application startup complete." in events
    assert "Invalid HTTP request received." in events
    assert "stopped: connection pool closed" in events
    assert all({"time", "level", "event"} <= line.keys() for line in parsed)
    assert not any("color_message" in line for line in parsed)
    [access] = [line for line in access_lines(parsed) if line["route"] == "/products/{product_id}"]
    assert access["user_id"] == users.editor
    assert access["status"] == 404
    assert access["request_id"] == response.headers["x-request-id"]
    # uvicorn's own access line ('"GET /products/7 HTTP/1.1" 404') is folded away.
    assert not any("HTTP/1.1" in line for line in lines)
    assert token["Authorization"].split()[1] not in server.output()


@pytest.mark.slow
def test_serve_with_console_format(settings: Settings, tmp_path: Path) -> None:
    with running_server(settings, tmp_path, LOG_FORMAT="console") as server:
        assert httpx.get(f"{server.base_url}/health", timeout=5).status_code == 200
    lines = server.lines()
    assert any("Application startup complete" in line for line in lines)
    assert any("request" in line and "route=/health" in line for line in lines)
    for line in lines:
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)
