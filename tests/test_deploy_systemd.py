"""deploy/visit-tracker.service: systemd accepts it, and its command with its environment serves.

There is no systemd to run the unit under here, so `systemd-analyze verify` checks it, and its
`ExecStart` runs with its `Environment=` lines, as systemd would start it, with this venv in
place of /opt/visit-tracker and the test's directory in place of the state directory.
"""

import os
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx2

from tests.server import free_port, serving
from tests.tools import require_tool
from visit_tracker.settings import ENV_PREFIX, Settings

ROOT = Path(__file__).parent.parent
UNIT = ROOT / "deploy" / "visit-tracker.service"
INSTALLED_BIN = "/opt/visit-tracker/bin/"
STATE_DIRECTORY = "/var/lib/visit-tracker/"
# Not resolved: the venv's python is a symlink, and its bin/ is what /opt/visit-tracker/bin is.
VENV_BIN = f"{Path(sys.executable).parent}/"


def unit_settings(section: str) -> list[tuple[str, str]]:
    """The `key=value` lines of one section of the unit, in order."""
    settings: list[tuple[str, str]] = []
    current = None
    for line in (raw.strip() for raw in UNIT.read_text().splitlines()):
        if line.startswith("["):
            current = line.strip("[]")
        elif line and not line.startswith("#") and current == section:
            key, _, value = line.partition("=")
            settings.append((key, value))
    return settings


def setting(section: str, key: str) -> str:
    values = [value for name, value in unit_settings(section) if name == key]
    assert len(values) == 1, f"{UNIT.name}: expected one {key}= in [{section}]"
    return values[0]


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    """`systemd-analyze verify` finds nothing to report in the unit once its program exists."""
    analyze = require_tool(
        shutil.which("systemd-analyze"), "systemd-analyze is not installed (Debian package systemd)"
    )
    unit = tmp_path / UNIT.name
    unit.write_text(UNIT.read_text().replace(INSTALLED_BIN, VENV_BIN))
    result = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, check=False, timeout=60
    )
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_the_units_command_counts_trusts_its_proxy_and_stops_in_time(tmp_path: Path) -> None:
    """The unit's ExecStart with its Environment counts a visit in its state directory, believes
    a proxy on 127.0.0.1, and stops on SIGTERM well before systemd would SIGKILL it."""
    assert setting("Service", "StateDirectory") == Path(STATE_DIRECTORY).name
    port = free_port()
    env = {name: value for name, value in os.environ.items() if not name.startswith(ENV_PREFIX)}
    for key, value in unit_settings("Service"):
        if key == "Environment":
            name, _, variable = value.partition("=")
            env[name] = variable.replace(STATE_DIRECTORY, f"{tmp_path}/")
    env[f"{ENV_PREFIX}PORT"] = str(port)
    command = shlex.split(setting("Service", "ExecStart").replace(INSTALLED_BIN, VENV_BIN))

    with serving(command, env=env, port=port) as server:
        assert httpx2.post(f"{server.url}/visit").json() == {"visits": 1}
        forwarded = {"X-Forwarded-For": "198.51.100.7", "X-Forwarded-Proto": "https"}
        redirect = httpx2.get(f"{server.url}/stats/", headers=forwarded)
        assert redirect.headers["location"] == f"https://127.0.0.1:{port}/stats"
        server.signal(signal.SIGTERM)
        assert server.wait(timeout=float(setting("Service", "TimeoutStopSec"))) == 0

    assert (tmp_path / "visits.db").exists()
    assert int(setting("Service", "TimeoutStopSec")) > Settings().shutdown_timeout
