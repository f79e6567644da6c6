"""The container image, compose file and Helm values in `deploy/` say what the rest of the project
says: the image installs the package the way CI does, runs as a non-root user from a pinned base,
bakes in no secret; compose runs the five services with the same code-server command as docs/deployment.md
and the image; compose and the chart queue runs as `deploy/dagster.yaml` does; and no committed file
holds a secret value. No image is built and no cluster is reached here: these read the files.
"""

from __future__ import annotations

import re
import shlex
import subprocess
from fnmatch import fnmatch
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from assets_pipeline.config.settings import SECRETS
from assets_pipeline_tests.conftest import REPO

DEPLOY = REPO / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
COMPOSE = DEPLOY / "compose.yaml"
HELM_VALUES = DEPLOY / "helm" / "values.yaml"
INSTANCE = DEPLOY / "dagster.yaml"
WORKSPACE = DEPLOY / "workspace.yaml"
ENV_EXAMPLE = DEPLOY / "env.example"
DEPLOYMENT_DOC = REPO / "docs" / "deployment.md"

#: The code server, as `dagster api grpc` options: what the image, compose, the chart and the
#: deployment page must all serve.
CODE_SERVER = {"-m": "assets_pipeline.definitions", "-h": "0.0.0.0", "-p": "4000"}
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_KEY|CREDENTIAL", re.IGNORECASE)
PLACEHOLDER = "change-me"


# --- reading the files ------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of each instruction, continuation lines joined, comments dropped."""
    instructions, pending = [], ""
    for line in text.splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        whole = (pending + stripped).strip()
        pending = ""
        keyword, _, arguments = whole.partition(" ")
        instructions.append((keyword.upper(), arguments.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return instructions


def declared_variables(instructions: list[tuple[str, str]]) -> dict[str, str]:
    """The names ENV and ARG set, with their values ('' for an ARG without a default)."""
    found = {}
    for keyword, arguments in instructions:
        if keyword not in {"ENV", "ARG"}:
            continue
        for word in shlex.split(arguments):
            name, _, value = word.partition("=")
            found[name] = value
    return found


def exec_form(arguments: str) -> list[str]:
    return yaml.safe_load(arguments)


def grpc_options(command: list[str]) -> dict[str, str]:
    """`dagster api grpc` options of a command, as {option: value}."""
    start = command.index("grpc") + 1
    words = command[start:]
    return dict(zip(words[::2], words[1::2], strict=True))


def image() -> list[tuple[str, str]]:
    return dockerfile_instructions(DOCKERFILE.read_text())


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def helm() -> dict:
    return yaml.safe_load(HELM_VALUES.read_text())


def env_example() -> dict[str, str]:
    pairs = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value.strip()
    return pairs


def committed_secret(name: str, value: object) -> bool:
    """Whether `value`, committed under `name`, looks like a real secret: a secret's name with a
    literal that is not empty, an interpolation or the placeholder; or a URL with a password."""
    if not isinstance(value, str):  # a switch or a number keeps nothing secret
        return False
    text = value
    if text.startswith("${") or text in {"", PLACEHOLDER}:
        return False
    if name.lower().endswith("secretname"):  # the name of a Kubernetes secret, not its value
        return False
    if "://" in text:
        return urlsplit(text).password not in {None, PLACEHOLDER}
    return bool(SECRET_NAME.search(name)) or name in SECRETS


def mappings(node: object) -> list[tuple[str, object]]:
    """Every (key, scalar value) pair anywhere in a YAML document."""
    if isinstance(node, dict):
        pairs = []
        for key, value in node.items():
            if isinstance(value, dict | list):
                pairs += mappings(value)
            else:
                pairs.append((str(key), value))
        return pairs
    if isinstance(node, list):
        return [pair for item in node for pair in mappings(item)]
    return []


# --- the image --------------------------------------------------------------------------------


def test_every_deployment_file_parses():
    for path in (COMPOSE, HELM_VALUES, INSTANCE, WORKSPACE):
        assert isinstance(yaml.safe_load(path.read_text()), dict), path
    keywords = {keyword for keyword, _ in image()}
    known = {"FROM", "ENV", "ARG", "RUN", "WORKDIR", "COPY", "USER", "EXPOSE", "CMD", "LABEL"}
    assert keywords <= known, keywords - known
    assert env_example(), "deploy/env.example lists no variable"


def test_the_image_starts_from_python_3_11_pinned_to_a_release_and_a_digest():
    # CI runs Python 3.11 (pyproject: ruff's target); a tag alone can move, a digest cannot.
    bases = [arguments for keyword, arguments in image() if keyword == "FROM"]
    assert len(bases) == 1
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm@sha256:[0-9a-f]{64}", bases[0]), bases


def test_the_image_serves_as_a_numeric_non_root_user():
    instructions = image()
    users = [
        (i, arguments) for i, (keyword, arguments) in enumerate(instructions) if keyword == "USER"
    ]
    serve = next(i for i, (keyword, _) in enumerate(instructions) if keyword == "CMD")
    assert users and users[-1][0] < serve, "no USER before the CMD"
    user, _, group = users[-1][1].partition(":")
    # numeric, so Kubernetes' runAsNonRoot can check it; the chart's values run as the same uid
    assert user.isdigit() and int(user) != 0 and group != "0"
    deployment = helm()["dagster-user-deployments"]["deployments"][0]
    assert deployment["podSecurityContext"]["runAsUser"] == int(user)
    assert deployment["podSecurityContext"]["runAsNonRoot"] is True


def test_no_build_argument_or_environment_variable_of_the_image_holds_a_secret():
    variables = declared_variables(image())
    assert "DAGSTER_HOME" in variables
    for name in (*SECRETS, "DAGSTER_PG_PASSWORD"):
        assert name not in variables, f"{name} is baked into the image"
    assert [name for name in variables if SECRET_NAME.search(name)] == []


def test_the_image_has_no_entrypoint_because_the_chart_and_compose_give_the_whole_command():
    # The chart sets the container's args to `dagster api grpc ...`; an ENTRYPOINT would prefix it.
    assert "ENTRYPOINT" not in {keyword for keyword, _ in image()}


def test_the_image_copies_no_secret_and_the_build_context_leaves_local_state_out():
    ignored = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for needed in (".git", ".venv", ".dagster_home", "**/.env", "assets_pipeline_tests"):
        assert needed in ignored, f".dockerignore does not leave out {needed}"
    sources = [
        word
        for keyword, arguments in image()
        if keyword == "COPY"
        for word in arguments.split()[:-1]
        if not word.startswith("--")
    ]
    assert "deploy/dagster.yaml" in sources
    for source in sources:
        assert not any(fnmatch(source, pattern) for pattern in ignored), source
        assert ".env" not in Path(source).name, f"the image copies {source}"


# --- one install step for CI and the image ----------------------------------------------------


def installs(mode: str, tmp_path: Path) -> list[list[str]]:
    """The pip commands `deploy/install.sh` runs in `mode`, recorded by a stand-in for pip."""
    log = tmp_path / f"pip-{mode}.log"
    pip = tmp_path / "pip"
    pip.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
    pip.chmod(0o755)
    subprocess.run(["sh", str(DEPLOY / "install.sh"), str(pip), mode], check=True, cwd=tmp_path)
    return [line.split() for line in log.read_text().splitlines()]


def test_make_and_the_image_install_with_the_same_script_and_constraints(tmp_path):
    make = (REPO / "Makefile").read_text()
    assert "sh deploy/install.sh $(BIN)/pip dev" in make
    assert "pip install" not in make.split("$(STAMP):")[1].split("\n\n")[0]
    runs = [arguments for keyword, arguments in image() if keyword == "RUN"]
    assert "sh deploy/install.sh pip image" in runs
    dev, image_install = installs("dev", tmp_path), installs("image", tmp_path)
    constraint = ["--constraint", "deploy/constraints.txt"]
    for command in dev + image_install:
        assert " ".join(constraint) in " ".join(command), command
    assert dev[-1][-2:] == ["--editable", ".[dev]"]  # the test tools, for CI only
    # the image adds dagster-k8s: each run of the chart's K8sRunLauncher is a pod of this image
    assert image_install[-1][-1] == ".[k8s]"
    assert dev[0] == image_install[0]  # the same pip, from the same constraints


def test_the_install_script_refuses_an_unknown_mode(tmp_path):
    result = subprocess.run(
        ["sh", str(DEPLOY / "install.sh"), "pip", "prod"], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "'dev' or 'image', not 'prod'" in result.stderr


def test_the_constraints_pin_every_package_this_environment_runs_on():
    """The image gets the versions the test suite ran on: every installed distribution of this
    environment is pinned in deploy/constraints.txt at its installed version (after a dependency
    changed, `make constraints` then `make` brings them together again)."""
    from importlib import metadata

    pins = {}
    for line in (DEPLOY / "constraints.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonical(name)] = version
    assert pins["dagster"] == "1.13.27" and pins["dagster-postgres"] == "0.29.27"
    installed = {
        canonical(dist.metadata["Name"]): dist.version
        for dist in metadata.distributions()
        if canonical(dist.metadata["Name"]) not in {"assets-pipeline", "setuptools", "wheel"}
    }
    differing = {
        name: (version, pins.get(name))
        for name, version in installed.items()
        if pins.get(name) != version
    }
    assert differing == {}, "installed vs pinned; run `make` to install the pinned versions"


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


# --- the code server's command, everywhere ----------------------------------------------------


def test_the_code_server_command_is_the_same_in_the_image_compose_the_chart_and_the_readme():
    command = next(exec_form(arguments) for keyword, arguments in image() if keyword == "CMD")
    assert command[:3] == ["dagster", "api", "grpc"]
    assert grpc_options(command) == CODE_SERVER
    assert compose()["services"]["code-server"]["command"] == command
    deployment = helm()["dagster-user-deployments"]["deployments"][0]
    chart = ["dagster", "api", "grpc", "-h", "0.0.0.0", "-p", str(deployment["port"])]
    assert grpc_options(chart + deployment["dagsterApiGrpcArgs"]) == CODE_SERVER
    # every code-server command the deployment page shows, in a code block or in running text
    readme = [
        ["dagster", "api", "grpc", *found.split()]
        for found in re.findall(
            r"dagster api grpc((?:\s+-[a-z]\s+[^\s`]+)+)", DEPLOYMENT_DOC.read_text()
        )
    ]
    assert readme, "docs/deployment.md shows no code-server command"
    for line in readme:
        assert grpc_options(line) == CODE_SERVER, line


def test_compose_runs_the_five_services_and_the_webserver_and_daemon_load_the_code_server():
    services = compose()["services"]
    assert set(services) == {"postgres", "redis", "migrate", "code-server", "webserver", "daemon"}
    # the one shot before the services: Dagster's tables, then the trading database's
    assert services["migrate"]["command"] == [
        "sh", "-c", "dagster instance migrate && assets-pipeline migrate",
    ]  # fmt: skip
    assert services["migrate"]["restart"] == "no"
    workspace_path = "/opt/dagster/workspace.yaml"
    assert services["webserver"]["command"] == [
        "dagster-webserver", "-h", "0.0.0.0", "-p", "3000", "-w", workspace_path,
    ]  # fmt: skip
    assert services["daemon"]["command"] == ["dagster-daemon", "run", "-w", workspace_path]
    assert ("COPY", f"deploy/workspace.yaml {workspace_path}") in image()
    server = yaml.safe_load(WORKSPACE.read_text())["load_from"][0]["grpc_server"]
    assert server["host"] == {"env": "DAGSTER_CODE_SERVER_HOST"}
    assert server["port"] == {"env": "DAGSTER_CODE_SERVER_PORT"}
    for name in ("webserver", "daemon"):
        environment = services[name]["environment"]
        assert environment["DAGSTER_CODE_SERVER_HOST"] == "code-server", name
        assert str(environment["DAGSTER_CODE_SERVER_PORT"]) == CODE_SERVER["-p"], name
    assert server["location_name"] == "assets_pipeline"


def test_every_compose_service_has_a_healthcheck_and_starts_after_what_it_needs_is_healthy():
    services = compose()["services"]
    for name, service in services.items():
        if name != "migrate":  # a one shot: the code server waits for it to complete
            assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    assert services["code-server"]["depends_on"].pop("migrate") == {
        "condition": "service_completed_successfully"
    }
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    needs = {
        "code-server": {"postgres", "redis"},
        "webserver": {"postgres", "code-server"},
        "daemon": {"postgres", "code-server"},
    }
    for name, needed in needs.items():
        depends = services[name]["depends_on"]
        assert set(depends) == needed, name
        assert {d["condition"] for d in depends.values()} == {"service_healthy"}, name


def test_compose_pins_its_database_and_redis_images():
    services = compose()["services"]
    for name in ("postgres", "redis"):
        assert re.fullmatch(
            rf"{name}:\d+\.\d+(\.\d+)?-bookworm@sha256:[0-9a-f]{{64}}", services[name]["image"]
        ), services[name]["image"]


# --- the run queue: deploy/dagster.yaml everywhere --------------------------------------------


def test_compose_queues_runs_with_deploy_dagster_yaml_which_the_image_carries():
    home = declared_variables(image())["DAGSTER_HOME"]
    assert ("COPY", f"deploy/dagster.yaml {home}/dagster.yaml") in image()
    for name in ("code-server", "webserver", "daemon"):
        service = compose()["services"][name]
        assert "DAGSTER_HOME" not in service.get("environment", {}), name
        for volume in service.get("volumes", []):
            target = volume.split(":")[1]
            assert target.rstrip("/") not in {home, f"{home}/dagster.yaml"}, (name, volume)


def test_the_charts_run_queue_monitoring_and_retries_are_deploy_dagster_yaml():
    instance = yaml.safe_load(INSTANCE.read_text())
    daemon = helm()["dagsterDaemon"]
    coordinator = daemon["runCoordinator"]
    assert coordinator["enabled"] and coordinator["type"] == "QueuedRunCoordinator"
    queue = coordinator["config"]["queuedRunCoordinator"]
    assert instance["run_coordinator"]["class"] == "QueuedRunCoordinator"
    expected = instance["run_coordinator"]["config"]
    assert queue["maxConcurrentRuns"] == expected["max_concurrent_runs"]
    assert queue["tagConcurrencyLimits"] == expected["tag_concurrency_limits"]
    monitoring = instance["run_monitoring"]
    assert daemon["runMonitoring"] == {
        "enabled": monitoring["enabled"],
        "startTimeoutSeconds": monitoring["start_timeout_seconds"],
        "maxRuntimeSeconds": monitoring["max_runtime_seconds"],
        "pollIntervalSeconds": monitoring["poll_interval_seconds"],
    }
    retries = instance["run_retries"]
    assert daemon["runRetries"] == {
        "enabled": retries["enabled"],
        "maxRetries": retries["max_retries"],
        "retryOnAssetOrOpFailure": retries["retry_on_asset_or_op_failure"],
    }


def test_the_chart_launches_runs_as_jobs_on_dagsters_postgres_from_a_secret():
    values = helm()
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    postgresql = values["postgresql"]
    assert postgresql["enabled"] is False
    assert values["global"]["postgresqlSecretName"]
    assert values["generatePostgresqlPasswordSecret"] is False
    assert "postgresqlPassword" not in postgresql
    # the driver deploy/dagster.yaml names (psycopg 3 breaks dagster-postgres's NOTIFY)
    scheme = yaml.safe_load(INSTANCE.read_text())["storage"]["postgres"]["postgres_db"]["scheme"]
    assert postgresql["postgresqlScheme"] == scheme


def test_the_projects_secrets_reach_the_code_server_and_runs_from_kubernetes_secrets_only():
    values = helm()
    deployment = values["dagster-user-deployments"]["deployments"][0]
    secret = {"name": "assets-pipeline-env"}
    assert secret in deployment["envSecrets"]
    assert secret in values["runLauncher"]["config"]["k8sRunLauncher"]["envSecrets"]
    assert not set(SECRETS) & set(deployment["env"])
    comments = HELM_VALUES.read_text()
    for name in SECRETS:  # the README's and this file's instructions create that secret with them
        assert f"--from-literal={name}=..." in comments


# --- no secret committed ----------------------------------------------------------------------


def test_only_the_code_server_gets_the_projects_secrets_in_compose():
    services = compose()["services"]
    for name in ("webserver", "daemon", "postgres", "redis"):
        environment = services[name].get("environment", {})
        assert not set(SECRETS) & set(environment), name
    # the one-shot migration needs the trading database, and nothing else of the project's
    assert set(SECRETS) & set(services["migrate"]["environment"]) == {"TRADING_DATABASE_URL"}
    code_server = services["code-server"]["environment"]
    for name in (*SECRETS, "DAGSTER_PG_PASSWORD"):
        # from deploy/.env: required, but for the alert webhook (unset, no alert is posted) and
        # OANDA's token (unset, OANDA is not used)
        required = name not in ("ALERT_WEBHOOK_URL", "OANDA_API_TOKEN")
        assert code_server[name].startswith(f"${{{name}:{'?' if required else '-'}"), name


def test_env_example_holds_every_variable_compose_reads_and_no_real_secret():
    variables = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE.read_text()))
    example = env_example()
    assert variables <= set(example), variables - set(example)
    assert example["DAGSTER_PG_PASSWORD"] == PLACEHOLDER
    assert example["POLYGON_API_KEY"] == PLACEHOLDER
    assert ".env" in (REPO / ".gitignore").read_text().split()


def test_no_committed_deployment_file_holds_a_secret_value():
    documents = {
        "compose.yaml": mappings(compose()),
        "helm/values.yaml": mappings(helm()),
        "env.example": list(env_example().items()),
        "Dockerfile": list(declared_variables(image()).items()),
    }
    found = {
        where: [name for name, value in pairs if committed_secret(name, value)]
        for where, pairs in documents.items()
    }
    assert found == {where: [] for where in documents}


# --- the checks above catch what they are for -------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "secret"),
    [
        ("POLYGON_API_KEY", "pk_live_8f2a", True),  # a real-looking key
        ("DAGSTER_PG_PASSWORD", "hunter2", True),
        ("TRADING_DATABASE_URL", "postgresql://dagster:hunter2@db/trading", True),
        ("REDIS_URL", "rediss://user:s3cret@cache:6380/0", True),
        ("POLYGON_API_KEY", "change-me", False),  # the placeholder
        ("POLYGON_API_KEY", "${POLYGON_API_KEY:?set it}", False),  # compose interpolation
        ("TRADING_DATABASE_URL", "postgresql://dagster:change-me@postgres/trading", False),
        ("REDIS_URL", "redis://redis:6379/0", False),  # no credentials in it
        ("postgresqlSecretName", "assets-pipeline-dagster-postgres", False),  # a secret's name
        ("postgresqlPassword", "test", True),  # the chart's own example password
    ],
)
def test_what_counts_as_a_committed_secret(name, value, secret):
    assert committed_secret(name, value) is secret


def test_the_dockerfile_reader_sees_a_secret_env_an_unpinned_base_and_a_root_user():
    broken = dockerfile_instructions(
        "# syntax=docker/dockerfile:1\nFROM python:3.11-slim\n"
        "ENV POLYGON_API_KEY=pk_live \\\n    OTHER=1\nARG GITHUB_TOKEN\nUSER root\n"
        'CMD ["dagster"]\n'
    )
    assert broken[0] == ("FROM", "python:3.11-slim")
    assert declared_variables(broken) == {
        "POLYGON_API_KEY": "pk_live",
        "OTHER": "1",
        "GITHUB_TOKEN": "",
    }
    assert ("USER", "root") in broken
