"""The production-shaped docker-compose stack renders, pins its images and keeps secrets out.

Rendering uses ``docker compose config`` (no Docker engine needed); the checks on the raw file,
``.env.example`` and README.md need nothing but PyYAML.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yaml"
ENV_EXAMPLE = ROOT / ".env.example"
README = ROOT / "README.md"
CADDYFILE = ROOT / "docker" / "Caddyfile"

EXPECTED_SERVICES = {
    "postgres-airflow",
    "postgres-warehouse",
    "minio",
    "minio-init",
    "airflow-init",
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
    "portal-init",
    "portal",
    "portal-proxy",
    "spark-master",
    "spark-worker",
}
AIRFLOW_SERVICES = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-triggerer",
}
ONE_SHOT_SERVICES = {"minio-init", "airflow-init", "portal-init"}
# The only secrets the portal may hold: its own database role, the read-only BI role and its own
# read-only MinIO user. Never the PII hash key, the warehouse owner or the pipeline's S3 user.
PORTAL_SECRET_VARIABLES = {
    "PORTAL_DB_APP_PASSWORD",
    "BI_READER_PASSWORD",
    "PORTAL_S3_ACCESS_KEY",
    "PORTAL_S3_SECRET_KEY",
}

# Names of settings that hold a secret. "*_FILE" settings name a file, not a secret.
SECRET_NAME = re.compile(r"PASSWORD(?!S_FILE)|SECRET|TOKEN|FERNET|HASH_KEY|ACCESS_KEY", re.I)
# ${VAR} or ${VAR:?message} / ${VAR?message}: a reference that cannot fall back to a default.
REQUIRED_REF = r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?\?[^}]*)?\}"
# ${VAR...} but not the escaped $${VAR} that compose passes through to the container's shell.
VARIABLE_REF = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)([^}]*)\}")
URL_PASSWORD = re.compile(r"://[^/:@\s]+:(?P<password>[^@\s]+)@")
# Compose service names as the README would spell them: postgres-airflow, minio, airflow-init, portal...
SERVICE_NAME = re.compile(r"^(?:(?:postgres|airflow|minio|portal|spark)(?:-[a-z0-9]+)+|minio|portal)$")


def _compose_cli_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        result = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


needs_compose = pytest.mark.skipif(
    not _compose_cli_available(),
    reason="the `docker compose` CLI plugin is not installed (the project's setup installs it)",
)


def _raw_compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _env_example() -> dict[str, str]:
    values = {}
    for line in ENV_EXAMPLE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def _referenced_variables() -> dict[str, set[str]]:
    """Every ``${VAR...}`` in the compose file (comment lines aside) -> its modifiers."""
    lines = COMPOSE_FILE.read_text().splitlines()
    text = "\n".join(line for line in lines if not line.lstrip().startswith("#"))
    found: dict[str, set[str]] = {}
    for name, modifier in VARIABLE_REF.findall(text):
        found.setdefault(name, set()).add(modifier)
    return found


def _environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.partition("=")[::2] for item in env)
    return {str(key): "" if value is None else str(value) for key, value in env.items()}


def _run_compose_config(env_file: str) -> subprocess.CompletedProcess[str]:
    # The caller's environment would override .env.example, so the stack's variables and
    # COMPOSE_* settings are removed from it.
    stack_vars = set(_referenced_variables())
    env = {key: value for key, value in os.environ.items() if key not in stack_vars and not key.startswith("COMPOSE_")}
    return subprocess.run(
        [
            "docker", "compose", "-f", str(COMPOSE_FILE), "--env-file", env_file,
            "config", "--format", "json",
        ],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.fixture(scope="module")
def rendered() -> dict[str, Any]:
    result = _run_compose_config(str(ENV_EXAMPLE))
    assert result.returncode == 0, f"docker compose config failed:\n{result.stderr}"
    return json.loads(result.stdout)


# --- rendered by docker compose -------------------------------------------------------------


@needs_compose
def test_compose_renders_with_env_example_and_defines_exactly_the_stack(rendered):
    assert set(rendered["services"]) == EXPECTED_SERVICES


@needs_compose
def test_every_image_is_built_here_or_pinned_to_a_version_tag(rendered):
    for name, service in rendered["services"].items():
        if "build" in service:
            continue
        image = service.get("image", "")
        if "@sha256:" in image:
            continue
        repository, _, tag = image.rpartition(":")
        assert repository and "/" not in tag, f"{name}: image {image!r} has no tag"
        assert tag != "latest", f"{name}: image {image!r} is not pinned"


@needs_compose
def test_airflow_services_wait_for_airflow_init_to_complete(rendered):
    services = rendered["services"]
    for name in AIRFLOW_SERVICES:
        init = services[name].get("depends_on", {}).get("airflow-init")
        assert init, f"{name} does not depend on airflow-init"
        assert init["condition"] == "service_completed_successfully", name


@needs_compose
def test_init_jobs_wait_for_healthy_dependencies(rendered):
    services = rendered["services"]
    init_deps = services["airflow-init"]["depends_on"]
    assert init_deps["postgres-airflow"]["condition"] == "service_healthy"
    assert init_deps["minio-init"]["condition"] == "service_completed_successfully"
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    assert services["portal-init"]["depends_on"]["postgres-warehouse"]["condition"] == "service_healthy"


@needs_compose
def test_long_running_services_have_healthchecks(rendered):
    for name, service in rendered["services"].items():
        if name in ONE_SHOT_SERVICES:
            continue
        assert service.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    api_check = " ".join(rendered["services"]["airflow-apiserver"]["healthcheck"]["test"])
    assert "/api/v2/monitor/health" in api_check


@needs_compose
def test_stages_submit_to_the_spark_cluster_whose_workers_run_the_pipeline_image(rendered):
    services = rendered["services"]
    master, worker = services["spark-master"], services["spark-worker"]
    assert "org.apache.spark.deploy.master.Master" in " ".join(master["command"])
    assert "org.apache.spark.deploy.worker.Worker spark://spark-master:7077" in " ".join(worker["command"])
    # executors unpickle the project's pandas UDFs and read s3a: the same image as the driver
    assert master["image"] == worker["image"] == services["airflow-scheduler"]["image"]
    assert worker["depends_on"]["spark-master"]["condition"] == "service_healthy"
    for name in AIRFLOW_SERVICES:
        env = _environment(services[name])
        assert env["MKT_SPARK__MASTER"] == "spark://spark-master:7077", name
        conf = json.loads(env["MKT_SPARK__CONF"])
        assert conf["spark.driver.host"] == "airflow-scheduler" and conf["spark.driver.bindAddress"] == "0.0.0.0"
        assert conf["spark.hadoop.fs.s3a.endpoint"] == "http://minio:9000"
    scheduler = _environment(services["airflow-scheduler"])
    assert _environment(worker)["AWS_ACCESS_KEY_ID"] == scheduler["AWS_ACCESS_KEY_ID"]  # the pipeline's user
    assert not {"7077"} & {str(p.get("target")) for p in master.get("ports", [])}  # not published


@needs_compose
def test_exports_go_to_the_object_store_for_the_pipeline_and_the_portal(rendered):
    services = rendered["services"]
    exports_root = _env_example()["EXPORTS_ROOT"]
    assert exports_root.startswith("s3://")
    for name in AIRFLOW_SERVICES | {"airflow-init", "portal"}:
        assert _environment(services[name]).get("MKT_STORAGE__EXPORTS_ROOT") == exports_root, name
    bucket = urlsplit(exports_root).netloc
    assert f"local/{bucket}" in " ".join(services["minio-init"]["command"])


@needs_compose
def test_portal_runs_the_pipeline_image_after_its_init_job(rendered):
    services = rendered["services"]
    image = services["airflow-scheduler"]["image"]
    for name in ("portal-init", "portal"):
        assert services[name]["image"] == image, name
        # the image's Airflow entrypoint would wait for an Airflow metadata DB first
        assert "/entrypoint" not in services[name].get("entrypoint", []), name
    deps = services["portal"]["depends_on"]
    assert deps["portal-init"]["condition"] == "service_completed_successfully"
    assert deps["minio-init"]["condition"] == "service_completed_successfully"
    assert services["portal-proxy"]["depends_on"]["portal"]["condition"] == "service_healthy"
    assert "/healthz" in " ".join(services["portal"]["healthcheck"]["test"])


@needs_compose
def test_portal_holds_no_pipeline_secrets(rendered):
    env = _environment(rendered["services"]["portal"])
    examples = _env_example()
    assert not any(key.startswith("MKT_PII") for key in env), "the portal must not get the PII hash key"
    # no other secret's value (its placeholder in .env.example) reaches the portal
    foreign = {
        name: value
        for name, value in examples.items()
        if (SECRET_NAME.search(name) or URL_PASSWORD.search(value)) and name not in PORTAL_SECRET_VARIABLES
    }
    pipeline_secrets = {
        "MKT_PII_HASH_KEY",
        "WAREHOUSE_OWNER_PASSWORD",
        "PIPELINE_S3_ACCESS_KEY",
        "PIPELINE_S3_SECRET_KEY",
    }
    assert pipeline_secrets <= set(foreign)
    for key, value in env.items():
        leaked = [name for name, secret in foreign.items() if secret in value]
        assert not leaked, f"portal: {key} carries {leaked}"
    assert env["AWS_ACCESS_KEY_ID"] == examples["PORTAL_S3_ACCESS_KEY"]
    assert env["AWS_SECRET_ACCESS_KEY"] == examples["PORTAL_S3_SECRET_KEY"]


@needs_compose
def test_portal_reads_the_warehouse_as_bi_reader_and_its_database_as_portal_app(rendered):
    services = rendered["services"]
    env = _environment(services["portal"])
    warehouse = urlsplit(env["MKT_WAREHOUSE__URL"])
    assert warehouse.username == "bi_reader"
    assert warehouse.hostname == "postgres-warehouse"
    assert warehouse.path == "/" + _env_example()["WAREHOUSE_DB"]
    assert urlsplit(env["MKT_PORTAL__DATABASE_URL"]).username == "portal_app"
    assert "MKT_PORTAL__APP_ROLE" not in env  # only the owner (portal-init) grants
    init_env = _environment(services["portal-init"])
    assert urlsplit(init_env["MKT_PORTAL__DATABASE_URL"]).username == "portal_owner"
    assert init_env["MKT_PORTAL__APP_ROLE"] == "portal_app"


@needs_compose
def test_portal_cookies_are_secure(rendered):
    env = _environment(rendered["services"]["portal"])
    assert env.get("MKT_PORTAL__SECURE_COOKIES", "").lower() == "true"


@needs_compose
def test_only_the_tls_proxy_publishes_the_portal(rendered):
    services = rendered["services"]
    assert not services["portal"].get("ports"), "the portal must be reachable only through portal-proxy"
    assert not services["portal-init"].get("ports")
    proxy_ports = services["portal-proxy"].get("ports", [])
    assert 443 in {int(port["target"]) for port in proxy_ports}
    for port in proxy_ports:
        assert port.get("host_ip") == _env_example()["PORTAL_BIND"], port


@needs_compose
def test_portal_proxy_mounts_the_caddyfile_read_only(rendered):
    mounts = rendered["services"]["portal-proxy"]["volumes"]
    caddyfile = [mount for mount in mounts if mount["target"] == "/etc/caddy/Caddyfile"]
    assert len(caddyfile) == 1
    assert caddyfile[0]["type"] == "bind"
    assert Path(caddyfile[0]["source"]) == CADDYFILE
    assert caddyfile[0].get("read_only") is True


@needs_compose
def test_compose_refuses_to_render_without_the_secrets():
    result = _run_compose_config(os.devnull)
    assert result.returncode != 0
    assert "required variable" in result.stderr


# --- the raw compose file and .env.example --------------------------------------------------


def test_secret_settings_are_only_required_variable_references():
    for name, service in _raw_compose()["services"].items():
        for key, value in _environment(service).items():
            if SECRET_NAME.search(key):
                assert re.fullmatch(REQUIRED_REF, value), (
                    f"{name}: {key} must be ${{VAR}} or ${{VAR:?message}}, got {value!r}"
                )
            for match in URL_PASSWORD.finditer(value):
                assert re.fullmatch(REQUIRED_REF, match["password"]), (
                    f"{name}: {key} has a password in its URL that is not a ${{VAR}} reference"
                )


def test_portal_references_only_its_own_secrets():
    services = _raw_compose()["services"]
    for name in ("portal", "portal-proxy"):
        referenced = {
            variable
            for value in _environment(services[name]).values()
            for variable, _ in VARIABLE_REF.findall(value)
            if SECRET_NAME.search(variable)
        }
        assert referenced <= PORTAL_SECRET_VARIABLES, f"{name}: {sorted(referenced - PORTAL_SECRET_VARIABLES)}"


def test_caddyfile_terminates_tls_in_front_of_the_portal():
    lines = [line.split("#", 1)[0].strip() for line in CADDYFILE.read_text().splitlines()]
    assert "reverse_proxy portal:8000" in lines
    assert "tls internal" in lines
    assert any(line.startswith("redir https://") for line in lines), "plain HTTP must redirect to HTTPS"


def test_secret_variables_never_fall_back_to_a_default():
    for name, modifiers in _referenced_variables().items():
        if SECRET_NAME.search(name):
            defaults = {m for m in modifiers if m.startswith((":-", "-", ":+", "+"))}
            assert not defaults, f"${{{name}}} has a default in docker-compose.yaml: {defaults}"


def test_env_example_documents_every_variable_the_compose_file_uses():
    missing = set(_referenced_variables()) - set(_env_example())
    assert not missing, f".env.example lacks: {sorted(missing)}"


def test_env_example_holds_placeholders_not_secrets():
    for name, value in _env_example().items():
        if SECRET_NAME.search(name) or URL_PASSWORD.search(value):
            assert "CHANGE_ME" in value, f".env.example: {name} must be a CHANGE_ME placeholder"


def test_services_named_in_readme_exist_in_the_compose_file():
    if not README.is_file():
        pytest.skip("README.md does not exist yet")
    named = {token for token in re.findall(r"`([^`\s]+)`", README.read_text()) if SERVICE_NAME.match(token)}
    unknown = named - set(_raw_compose()["services"])
    assert not unknown, f"README.md names services that docker-compose.yaml lacks: {unknown}"
