"""docker-compose.yml, read without Docker: its commands exist, its variables and connections are
declared, and it holds no secret."""

from __future__ import annotations

import ast
import re
import shlex
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
# `${VAR}`, `${VAR:-default}`, `${VAR:?message}` and `$VAR`; `$$` is compose's escaped dollar.
VARIABLE = re.compile(r"(?<!\$)\$(?:\{([A-Za-z_][A-Za-z0-9_]*)[^}]*\}|([A-Za-z_][A-Za-z0-9_]*))")
INTERPOLATED = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(?::?[-?][^}]*)?\}$")
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|(?<![A-Z])KEY(?![A-Z])|_KEY$|^KEY_")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    return compose["services"]


def env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            name, value = line.split("=", 1)
            values[name.strip()] = value.strip()
    return values


def _argv(value) -> list[str]:
    if value is None:
        return []
    return shlex.split(value) if isinstance(value, str) else [str(part) for part in value]


def commands_of(service: dict) -> list[list[str]]:
    """The programs a service runs, each as argv: the image's entrypoint runs `airflow <command>`
    (apache/airflow), `lienthong <command>` when the entrypoint is lienthong, and each step of a
    `bash -c "a && b"` script."""
    entrypoint, command = _argv(service.get("entrypoint")), _argv(service.get("command"))
    if not entrypoint:
        return [["airflow", *command]] if command else []
    if Path(entrypoint[0]).name == "bash":
        script = " ".join(entrypoint[1:] + command).removeprefix("-c").strip()
        return [shlex.split(step) for step in script.split("&&")]
    return [[*entrypoint, *command]]


def _parse_lienthong(argv: list[str]) -> None:
    from pipeline.cli import build_parser

    build_parser().parse_args(argv)


def _parse_airflow(argv: list[str]) -> None:
    from airflow.cli.cli_parser import get_parser

    get_parser().parse_args(argv)


def test_every_service_command_is_a_lienthong_or_airflow_command(services, monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__EXECUTOR", "CeleryExecutor")  # as in the compose file
    env = env_example()
    run = []
    for name, service in services.items():
        for argv in commands_of(service):
            # the compose file's ${VAR} as .env.example gives them (e.g. the seed of the simulators)
            argv = [VARIABLE.sub(lambda m: env.get(m.group(1) or m.group(2), ""), part) for part in argv]
            program, args = argv[0], argv[1:]
            assert program in {"airflow", "lienthong"}, f"{name}: runs {program!r}, neither airflow nor lienthong"
            try:
                (_parse_airflow if program == "airflow" else _parse_lienthong)(args)
            except SystemExit as exc:
                pytest.fail(f"{name}: `{shlex.join(argv)}` is not a command of {program} (exit {exc.code})")
            run.append((name, shlex.join(argv[:3])))
    programs = [command for _, command in run]
    for expected in ("airflow api-server", "airflow scheduler", "airflow dag-processor", "airflow triggerer",
                     "airflow db migrate", "lienthong db upgrade", "lienthong simulate portal",
                     "lienthong simulate lgsp"):
        assert expected in programs, f"no service runs `{expected}`"
    assert programs.count("airflow celery worker") == 2  # two Celery workers


def test_the_stack_has_its_databases_broker_and_health_checks(services, compose):
    env = compose["x-airflow-common"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
    assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:")
    assert "@airflow-db/" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]
    assert env["WAREHOUSE_URL"].startswith("postgresql+psycopg://") and "@warehouse/" in env["WAREHOUSE_URL"]
    assert {services[db]["image"].split(":")[0] for db in ("airflow-db", "warehouse")} == {"postgres"}
    assert services["redis"]["image"].startswith("redis:")
    one_shot = {"airflow-init", "sim-generate", "sim-sources"}
    for name, service in services.items():
        if name not in one_shot:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
    # the init runs before any Airflow component, the simulators' data before the simulators
    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer",
                 "airflow-worker-1", "airflow-worker-2"):
        assert services[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"


def strings_of(node) -> list[str]:
    """Every string of the parsed compose file (keys and values; comments are not part of it)."""
    if isinstance(node, dict):
        return [text for key, value in node.items() for text in (*strings_of(key), *strings_of(value))]
    if isinstance(node, list):
        return [text for item in node for text in strings_of(item)]
    return [node] if isinstance(node, str) else []


def test_every_variable_of_the_compose_file_is_in_env_example(compose):
    used = {m.group(1) or m.group(2) for text in strings_of(compose) for m in VARIABLE.finditer(text)}
    assert used, "the compose file takes its configuration from .env"
    missing = sorted(used - set(env_example()))
    assert not missing, f"referenced in docker-compose.yml but not in .env.example: {missing}"


def _dag_connection_ids() -> set[str]:
    """Connection ids named in the DAG files: `BaseHook.get_connection("…")`."""
    ids = set()
    for path in (ROOT / "dags").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "get_connection"
                    and node.args and isinstance(node.args[0], ast.Constant)):
                ids.add(node.args[0].value)
    return ids


def test_every_connection_the_dags_use_is_defined(compose, services):
    from pipeline.sources import SOURCES

    defined = {name for name in env_example() if name.startswith("AIRFLOW_CONN_")}
    airflow_env: dict = {}
    for service in services.values():
        if service.get("image", "").startswith("lienthong-airflow"):
            airflow_env.update(service.get("environment") or {})
    defined |= {name for name in airflow_env if name.startswith("AIRFLOW_CONN_")}
    # the one-stop source has one connection per agency database, listed in LIENTHONG_ONESTOP_CONNECTIONS
    # (its plan's connection id names the family, not a connection)
    onestop = [c.strip() for c in airflow_env.get("LIENTHONG_ONESTOP_CONNECTIONS", "").split(",") if c.strip()]
    assert onestop, "no one-stop-shop database configured for sync_one_stop"
    needed = ({plan.connection_id for plan in SOURCES.values() if plan.name != "one_stop"}
              | _dag_connection_ids() | set(onestop))
    missing = sorted(conn_id for conn_id in needed if f"AIRFLOW_CONN_{conn_id.upper()}" not in defined)
    assert not missing, f"connections used by the DAGs but not defined: {missing}"


def _literal_secret(name: str, value: str) -> bool:
    return bool(SECRET_NAME.search(name.upper())) and bool(value) and not INTERPOLATED.match(value.strip())


def test_no_literal_secret_in_the_compose_file(compose, services):
    assert "-----BEGIN" not in COMPOSE.read_text(encoding="utf-8")  # no key material
    for text in strings_of(compose):
        assert not re.search(r"(?i)(password|secret|key)\s*=\s*(?!\$\{)\S", text), f"a literal secret in {text!r}"
        # user:password@ in a URL: the password must be a ${VAR}
        for match in re.finditer(r"://[^/\s:@]+:(.+?)@[\w.-]+[:/]", text):
            assert INTERPOLATED.match(match.group(1)), f"literal credentials in {text!r}"
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            assert not _literal_secret(key, str(value)), f"{name}: {key} is a literal, not a ${{VAR}} from .env"
        argv = _argv(service.get("command"))
        for flag, value in zip(argv, argv[1:], strict=False):
            if flag.startswith("--") and SECRET_NAME.search(flag.upper()):
                assert INTERPOLATED.match(value), f"{name}: {flag} is a literal, not a ${{VAR}} from .env"


def test_the_image_never_takes_a_local_env_file():
    assert ".env" in (ROOT / ".dockerignore").read_text(encoding="utf-8").split()


def test_the_documented_backfill_command_is_airflows(monkeypatch):
    # docs/operations.md's `airflow backfill create …` (shell continuation lines joined)
    text = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8").replace("\\\n", " ")
    commands = [shlex.split(line.split("exec airflow-scheduler ", 1)[1]) for line in text.splitlines()
                if "airflow backfill create" in line and "exec airflow-scheduler" in line]
    assert commands and commands[0][:2] == ["airflow", "backfill"]
    for argv in commands:
        _parse_airflow(argv[1:])
        assert argv[argv.index("--dag-id") + 1] in {"sync_national_portal", "sync_one_stop"}
