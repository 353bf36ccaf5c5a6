"""The deployment files in deploy/ are checked, not only kept: systemd units and compose.

Neither systemd (not PID 1 in this container) nor a container engine (the docker client is
here, but no daemon and no compose plugin) can run the services, so each file is checked as
far as this machine honestly allows:

- units: ``systemd-analyze verify`` on copies whose ``/opt/cloudgrpc/bin`` paths point at
  this virtualenv's real console scripts (verify refuses an ExecStart that does not exist),
  templates through an instance name, the user unit with ``--user``; any line it prints
  fails. ``systemd-analyze security --offline=yes`` bounds the gateway's and node's exposure
  score, so hardening cannot silently regress. Every Exec*= program must exist (verify
  checks only ExecStart), and every command line must parse with the program's own parser.
- compose: parsed with PyYAML, validated against the Compose Specification's JSON schema (as
  vendored by check-jsonschema), and its meaning checked against the code: commands are
  console scripts with arguments their parsers accept, every environment variable is one the
  code reads, each node has its own volume, the gateway waits for a healthy database, and
  no secret value is written inline.
"""

from __future__ import annotations

import ast
import configparser
import ctypes
import functools
import importlib.resources
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path

import grpc
import jsonschema
import pytest
import yaml
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from cloudgrpc_fusefs import mount_cli
from cloudgrpc_node.config import build_parser as node_parser
from cloudgrpc_proto import healthcheck
from cloudgrpc_server.app import build_parser as gateway_parser

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
SYSTEMD = DEPLOY / "systemd"
INSTALL_BIN = "/opt/cloudgrpc/bin"
VENV_BIN = Path(sys.executable).parent
# The gateway's and node's `systemd-analyze security` score (0 = locked down, 10 = fully
# exposed; systemd calls < 2 "OK"). They are at 1.5 today; a unit that loses a protection
# crosses this line.
MAX_EXPOSURE = 2.0
# Directives every server unit must keep, whatever the score says.
REQUIRED_HARDENING = {
    "User": "cloudgrpc", "Group": "cloudgrpc", "StateDirectoryMode": "0700", "UMask": "0077",
    "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
    "PrivateDevices": "yes", "NoNewPrivileges": "yes", "CapabilityBoundingSet": "",
    "RestrictNamespaces": "yes", "LockPersonality": "yes", "MemoryDenyWriteExecute": "yes",
    "SystemCallFilter": "@system-service", "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes", "ProtectControlGroups": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
}
SECRET_WORDS = ("PASSWORD", "SECRET", "KEY")
PATH_SETTINGS = {"TLS_KEY", "TLS_CERT"}  # file names, not values

# systemd's tools are a test dependency (scripts/system-packages.sh test installs them): a
# missing one fails its tests rather than skipping them silently.
SYSTEMD_TOOLS = ("systemd-analyze", "systemd-escape", "systemd-sysusers")


def test_systemd_tools_are_installed() -> None:
    assert [tool for tool in SYSTEMD_TOOLS if shutil.which(tool) is None] == []


# -- helpers ---------------------------------------------------------------------------------

def read_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """A unit file as section -> key -> values (keys may repeat; continuation lines joined)."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] = {}
    pending = ""
    for raw in path.read_text().splitlines():
        line = pending + raw.strip()
        pending = ""
        if line.endswith("\\"):
            pending = line[:-1] + " "
            continue
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def read_env_file(path: Path, include_commented: bool = False) -> dict[str, str]:
    """KEY=VALUE lines of an EnvironmentFile; with ``include_commented``, ``#KEY=...`` too."""
    values: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if include_commented and re.match(r"#[A-Z][A-Z0-9_]*=", line):
            line = line[1:]
        match = re.match(r"([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match:
            values[match.group(1)] = match.group(2)
    return values


def installed_copy(unit: Path, folder: Path, instance: str = "") -> Path:
    """A copy of ``unit`` in ``folder`` that runs this virtualenv's console scripts; for a
    template, the path of an instance (a symlink named NAME@INSTANCE.service)."""
    folder.mkdir(parents=True, exist_ok=True)
    copy = folder / unit.name
    copy.write_text(unit.read_text().replace(INSTALL_BIN, str(VENV_BIN)))
    if not instance:
        return copy
    linked = folder / unit.name.replace("@.", f"@{instance}.")
    linked.symlink_to(copy.name)
    return linked


def verify(unit: Path, tmp_path: Path, user: bool = False) -> str:
    """Everything ``systemd-analyze verify`` says about ``unit`` ("" when all is well)."""
    command = ["systemd-analyze", *(["--user"] if user else []), "verify", str(unit)]
    env = dict(os.environ, SYSTEMD_LOG_COLOR="0", SYSTEMD_PAGER="")
    with tempfile.TemporaryDirectory(prefix="xr", dir="/tmp") as runtime:
        if user:  # the user manager wants a runtime folder even offline; a short path, since
            # the units it finds there bind unix sockets (108-byte limit) under it
            os.chmod(runtime, 0o700)
            env["XDG_RUNTIME_DIR"] = runtime
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=30,
                              cwd=tmp_path)
    said = (done.stdout + done.stderr).strip()
    if done.returncode != 0 and not said:
        said = f"exit status {done.returncode}"
    return said


def exposure(unit: Path) -> float:
    done = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager",
                           str(unit)], capture_output=True, text=True, timeout=30,
                          env=dict(os.environ, SYSTEMD_LOG_COLOR="0"))
    match = re.search(r"Overall exposure level for \S+: (\d+(?:\.\d+)?)", done.stdout)
    assert match, f"no exposure level in:\n{done.stdout}\n{done.stderr}"
    return float(match.group(1))


def expand(command: str, specifiers: dict[str, str], env: dict[str, str]) -> list[str]:
    """An Exec line as systemd would run it: %-specifiers, ${VAR} as one word, $VAR split."""
    for spec, value in specifiers.items():
        command = command.replace(f"%{spec}", value)
    words: list[str] = []
    for word in shlex.split(command):
        if re.fullmatch(r"\$[A-Z_][A-Z0-9_]*", word):
            words.extend(env.get(word[1:], "").split())
        else:
            words.append(re.sub(r"\$\{([A-Z_][A-Z0-9_]*)\}", lambda m: env.get(m[1], ""), word))
    return words


def exec_lines(unit: dict[str, dict[str, list[str]]]) -> list[str]:
    """Every Exec*= command of the [Service] section, without its -@:+! prefixes."""
    return [value.lstrip("-@:+!") for key, values in unit["Service"].items()
            if key.startswith("Exec") for value in values]


def console_scripts() -> set[str]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    entries = config["options.entry_points"]["console_scripts"]
    return {line.split("=")[0].strip() for line in entries.splitlines() if "=" in line}


@functools.cache
def settings_the_code_reads() -> frozenset[str]:
    """Environment variables the shipped code reads: literal names given to the environment
    helpers, os.environ and os.getenv, plus module constants named ENV_*. A secret read with
    get_secret("X") may also come as X_FILE."""
    names: set[str] = set()
    readers = {"get_str", "get_int", "get_float", "get_bool", "get_secret", "get", "getenv"}
    for package in ("proto", "server", "node", "fusefs", "payment", "admin"):
        for source in (ROOT / package).rglob("*.py"):
            if "migrations" in source.parts or source.name.endswith("_pb2.py"):
                continue
            tree = ast.parse(source.read_text(), str(source))
            for node in ast.walk(tree):
                if isinstance(node, ast.Call) and node.args and \
                        isinstance(node.args[0], ast.Constant) and \
                        isinstance(node.args[0].value, str):
                    func = node.func
                    called = func.attr if isinstance(func, ast.Attribute) else \
                        func.id if isinstance(func, ast.Name) else ""
                    if called in readers:
                        names.add(node.args[0].value)
                        if called == "get_secret":
                            names.add(f"{node.args[0].value}_FILE")
                elif isinstance(node, ast.Subscript) and \
                        isinstance(node.slice, ast.Constant) and \
                        ast.unparse(node.value) == "os.environ":
                    names.add(str(node.slice.value))
                elif isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant) \
                        and any(isinstance(t, ast.Name) and t.id.startswith("ENV_")
                                for t in node.targets):
                    names.add(str(node.value.value))
    return frozenset(name for name in names if re.fullmatch(r"[A-Z][A-Z0-9_]*", name))


def is_secret_setting(name: str) -> bool:
    return any(word in name for word in SECRET_WORDS) and not name.endswith("_FILE") \
        and name not in PATH_SETTINGS


# -- systemd units ---------------------------------------------------------------------------

SERVER_UNITS = {"cloudgrpc-gateway.service": "", "cloudgrpc-node@.service": "n1"}
USER_UNITS = {"user/cloudgrpc-mount@.service": "home-alice-CloudGrpc"}


@pytest.mark.parametrize("name", sorted(SERVER_UNITS))
def test_server_unit_verifies_clean(name: str, tmp_path: Path) -> None:
    unit = installed_copy(SYSTEMD / name, tmp_path / "units", SERVER_UNITS[name])
    assert verify(unit, tmp_path) == ""


@pytest.mark.parametrize("name", sorted(USER_UNITS))
def test_user_unit_verifies_clean(name: str, tmp_path: Path) -> None:
    unit = installed_copy(SYSTEMD / name, tmp_path / "units", USER_UNITS[name])
    assert verify(unit, tmp_path, user=True) == ""


def test_verify_would_catch_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a typo, a bad value and a missing program are all reported."""
    source = (SYSTEMD / "cloudgrpc-gateway.service").read_text()
    broken = tmp_path / "src" / "cloudgrpc-gateway.service"
    broken.parent.mkdir()
    for old, new in (("ProtectSystem=strict", "ProtectSytem=strict"),
                     ("RestrictNamespaces=yes", "RestrictNamespaces=maybe"),
                     ("bin/cloudgrpc-gateway", "bin/cloudgrpc-gatewy")):
        broken.write_text(source.replace(old, new))
        said = verify(installed_copy(broken, tmp_path / old.split("=")[0]), tmp_path)
        assert said != "", f"verify said nothing about {new}"


@pytest.mark.parametrize("name", sorted(SERVER_UNITS))
def test_server_unit_stays_hardened(name: str, tmp_path: Path) -> None:
    unit = installed_copy(SYSTEMD / name, tmp_path / "units", SERVER_UNITS[name])
    score = exposure(unit)
    assert score <= MAX_EXPOSURE, f"{name}: exposure {score} > {MAX_EXPOSURE}"
    service = read_unit(SYSTEMD / name)["Service"]
    for key, wanted in REQUIRED_HARDENING.items():
        assert service.get(key, [None])[-1] == wanted, f"{name}: {key}={service.get(key)}"
    assert service["StateDirectory"][0].startswith("cloudgrpc/")
    assert int(service["LimitNOFILE"][0]) >= 65536


@pytest.mark.parametrize("name", [*sorted(SERVER_UNITS), *sorted(USER_UNITS)])
def test_every_program_a_unit_runs_exists(name: str) -> None:
    """verify checks ExecStart only; ExecStartPre/ExecStopPost programs must exist too."""
    for line in exec_lines(read_unit(SYSTEMD / name)):
        program = line.split()[0].replace(INSTALL_BIN, str(VENV_BIN))
        assert program.startswith("/"), f"{name}: {program} is not an absolute path"
        assert os.access(program, os.X_OK), f"{name}: {program} is not an executable here"


def test_gateway_command_line_parses() -> None:
    unit = read_unit(SYSTEMD / "cloudgrpc-gateway.service")
    env = read_env_file(SYSTEMD / "gateway.env.example")
    (start,) = unit["Service"]["ExecStart"]
    argv = expand(start, {"S": "/var/lib", "i": ""}, env)
    assert argv[0] == f"{INSTALL_BIN}/cloudgrpc-gateway"
    args = gateway_parser().parse_args(argv[1:])
    assert args.data_dir == "/var/lib/cloudgrpc/gateway"  # its private state directory
    assert unit["Service"]["StateDirectory"] == ["cloudgrpc/gateway"]
    assert unit["Unit"]["After"][0].split() == ["network-online.target", "postgresql.service"]
    assert unit["Unit"]["Wants"] == ["network-online.target"]


def test_node_command_line_parses_for_each_instance() -> None:
    unit = read_unit(SYSTEMD / "cloudgrpc-node@.service")
    env = read_env_file(SYSTEMD / "node.env.example")
    assert unit["Service"]["EnvironmentFile"] == ["/etc/cloudgrpc/node-%i.env"]
    (start,) = unit["Service"]["ExecStart"]
    for name in ("n1", "storage-2"):
        credentials = f"/run/credentials/cloudgrpc-node@{name}.service"
        argv = expand(start, {"S": "/var/lib", "i": name, "d": credentials}, env)
        assert argv[0] == f"{INSTALL_BIN}/cloudgrpc-node"
        args = node_parser().parse_args(argv[1:])
        assert (args.name, args.host, args.port, args.capacity_gb) == (
            name, env["NODE_HOST"], int(env["NODE_PORT"]), float(env["NODE_CAPACITY_GB"]))
        assert str(args.data_dir) == f"/var/lib/cloudgrpc/node-{name}"
        assert str(args.cluster_secret_file) == f"{credentials}/cluster_secret"
        assert args.advertise_host == "n1.example.internal"  # NODE_OPTIONS reached argparse
    assert unit["Service"]["LoadCredential"] == ["cluster_secret:/etc/cloudgrpc/cluster_secret"]


def test_mount_user_unit_runs_the_foreground_mount() -> None:
    service = read_unit(SYSTEMD / "user/cloudgrpc-mount@.service")["Service"]
    env = read_env_file(SYSTEMD / "mount.env.example")
    (start,) = service["ExecStart"]
    argv = expand(start, {"f": "/home/alice/CloudGrpc"}, env)
    assert argv[0] == f"{INSTALL_BIN}/cloudgrpc"
    args = mount_cli._parser().parse_args(argv[1:])
    assert (args.command, args.directory, args.foreground) == (
        "mount", "/home/alice/CloudGrpc", True)
    assert args.options == ["cache_size=2048"]
    assert service["Restart"] == ["on-failure"] and service["UMask"] == ["0077"]
    assert any(line.startswith("-/usr/bin/fusermount3 -u %f")
               for line in service["ExecStopPost"])
    # The instance is the escaped mount folder: %f turns it back into the absolute path.
    escaped = subprocess.run(["systemd-escape", "--path", "/home/alice/CloudGrpc"],
                             capture_output=True, text=True, check=True).stdout.strip()
    assert escaped == USER_UNITS["user/cloudgrpc-mount@.service"]


def test_environment_files_name_only_settings_that_are_read() -> None:
    """Each variable in an example is read by the code or fills the unit's command line."""
    read = settings_the_code_reads()
    for example, unit in (("gateway.env.example", "cloudgrpc-gateway.service"),
                          ("node.env.example", "cloudgrpc-node@.service"),
                          ("mount.env.example", "user/cloudgrpc-mount@.service")):
        exec_text = " ".join(exec_lines(read_unit(SYSTEMD / unit)))
        for name in read_env_file(SYSTEMD / example, include_commented=True):
            in_unit = f"${{{name}}}" in exec_text or re.search(rf"\${name}\b", exec_text)
            assert name in read or in_unit, f"{example}: nothing reads {name}"


def test_environment_files_hold_no_secret_value() -> None:
    for example in SYSTEMD.glob("*.env.example"):
        values = read_env_file(example, include_commented=True)
        inline = [name for name in values if is_secret_setting(name)]
        assert inline == [], f"{example.name}: secret values written inline: {inline}"
        for name, value in values.items():
            if name.endswith("_FILE") and is_secret_setting(name[:-len("_FILE")]):
                assert value.startswith("/run/credentials/cloudgrpc-"), (name, value)


def test_sysusers_creates_the_service_user(tmp_path: Path) -> None:
    conf = SYSTEMD / "sysusers.d" / "cloudgrpc.conf"
    (tmp_path / "etc").mkdir()
    subprocess.run(["systemd-sysusers", f"--root={tmp_path}", "-"], input=conf.read_bytes(),
                   check=True, capture_output=True, timeout=30)
    passwd = (tmp_path / "etc" / "passwd").read_text()
    entry = next(line for line in passwd.splitlines() if line.startswith("cloudgrpc:"))
    uid, shell = int(entry.split(":")[2]), entry.split(":")[6]
    assert 0 < uid < 1000 and shell.endswith("nologin")


# -- docker compose --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def compose_schema() -> dict:
    vendored = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads(vendored.joinpath("compose-spec.json").read_text())


def schema_errors(document: dict, schema: dict) -> list[str]:
    validator = jsonschema.validators.validator_for(schema)(
        schema, format_checker=jsonschema.FormatChecker())
    return [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(document)]


def our_services(compose: dict) -> dict[str, dict]:
    """Services built from this checkout's Dockerfile (the rest are upstream images)."""
    return {name: s for name, s in compose["services"].items() if "build" in s}


def test_compose_matches_the_compose_specification(compose: dict, compose_schema: dict) -> None:
    assert schema_errors(compose, compose_schema) == []
    broken = json.loads(json.dumps(compose))
    broken["services"]["gateway"]["depends_on"]["postgres"]["condition"] = "whenever"
    broken["services"]["node1"]["ports"] = [{"target": "9001", "published": []}]
    assert len(schema_errors(broken, compose_schema)) >= 2  # the schema does bite


def test_compose_has_postgres_a_gateway_and_three_nodes(compose: dict) -> None:
    services = compose["services"]
    assert services["postgres"]["image"].startswith("postgres:")
    commands = {name: s["command"][0] for name, s in our_services(compose).items()}
    assert commands == {"gateway": "cloudgrpc-gateway", "node1": "cloudgrpc-node",
                        "node2": "cloudgrpc-node", "node3": "cloudgrpc-node"}
    build = services["gateway"]["build"]
    assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"


def test_compose_commands_are_real_and_parse(compose: dict) -> None:
    scripts = console_scripts()
    node_names = set()
    for name, service in our_services(compose).items():
        program, *args = service["command"]
        assert program in scripts, f"{name}: {program} is not a console script"
        if program == "cloudgrpc-gateway":
            gateway_parser().parse_args(args)
        else:
            parsed = node_parser().parse_args(args)
            assert parsed.name == name and parsed.gateway == "gateway:50051"
            assert str(parsed.cluster_secret_file) == "/run/secrets/cluster_secret"
            node_names.add(parsed.name)
        probe = service["healthcheck"]["test"]
        assert probe[:4] == ["CMD", "/opt/cloudgrpc/bin/python", "-m",
                             "cloudgrpc_proto.healthcheck"], probe
        healthcheck.build_parser().parse_args(probe[4:])
    assert node_names == {"node1", "node2", "node3"}


def test_compose_environment_is_what_the_code_reads(compose: dict) -> None:
    read = settings_the_code_reads()
    for name, service in our_services(compose).items():
        unknown = set(service.get("environment", {})) - read
        assert not unknown, f"{name}: nothing reads {sorted(unknown)}"


def test_compose_gives_each_node_its_own_volume(compose: dict) -> None:
    sources = {}
    for name, service in our_services(compose).items():
        (volume,) = service["volumes"]
        source, target = volume.split(":")[:2]
        assert source in compose["volumes"], f"{name}: {source} is not a named volume"
        assert target == "/var/lib/cloudgrpc"
        sources[name] = source
    assert len(set(sources.values())) == len(sources), sources


def test_compose_waits_for_healthy_dependencies(compose: dict) -> None:
    services = compose["services"]
    assert services["gateway"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    for name in ("node1", "node2", "node3"):
        assert services[name]["depends_on"] == {"gateway": {"condition": "service_healthy"}}
    for name, service in services.items():
        assert service["healthcheck"]["test"][0] == "CMD", f"{name} has no healthcheck"
    assert "pg_isready" in services["postgres"]["healthcheck"]["test"]


def test_compose_keeps_secrets_out_of_the_file(compose: dict) -> None:
    declared = compose["secrets"]
    assert set(declared) == {"db_password", "cluster_secret"}
    for secret in declared.values():
        assert set(secret) == {"file"} and secret["file"].startswith("./secrets/")
    for name, service in compose["services"].items():
        environment = service.get("environment", {})
        inline = [key for key in environment if is_secret_setting(key)]
        assert inline == [], f"{name}: secret values inline: {inline}"
        for key, value in environment.items():
            if key.endswith("_FILE"):
                secret = value.removeprefix("/run/secrets/")
                assert secret in service.get("secrets", []), f"{name}: {key}={value}"
    assert "deploy/secrets" in (DEPLOY / "Dockerfile.dockerignore").read_text()
    assert "secrets/" in (DEPLOY / ".gitignore").read_text().split()


def test_compose_publishes_only_the_gateway_to_the_world(compose: dict) -> None:
    public = []
    for name, service in compose["services"].items():
        for port in service.get("ports", []):
            if not port.startswith("127.0.0.1:"):
                public.append((name, port))
    assert public == [("gateway", "50051:50051")]
    assert "ports" not in compose["services"]["postgres"]


def test_compose_containers_are_locked_down(compose: dict) -> None:
    for name, service in our_services(compose).items():
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name


def test_dockerfile_builds_this_checkout_on_debian_12() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM debian:12-slim$", text, re.M)
    assert "python3" in text and re.search(r"^COPY \. /src$", text, re.M)
    assert "pip install --no-cache-dir /src" in text
    assert re.search(r"^USER cloudgrpc$", text, re.M)  # never root at run time
    ignored = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert {"**/.venv", ".git", ".env"} <= set(ignored)


# -- the health probe the compose file and the image use -------------------------------------

@pytest.fixture
def health_server() -> Iterator[tuple[str, health.HealthServicer]]:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    servicer = health.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}", servicer
    finally:
        server.stop(0).wait()


def test_healthcheck_exit_status_follows_the_server(
        health_server: tuple[str, health.HealthServicer],
        capsys: pytest.CaptureFixture[str]) -> None:
    address, servicer = health_server
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert healthcheck.main([address]) == 0
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert healthcheck.main([address, "--timeout", "2"]) == 1
    assert "NOT_SERVING" in capsys.readouterr().out
    assert healthcheck.main(["127.0.0.1:1", "--timeout", "0.5"]) == 1
    assert "unreachable" in capsys.readouterr().out


# -- MemoryDenyWriteExecute=yes: the units' programs must run without W+X memory ------------

MDWE_CHILD = """
import ctypes, os
# SystemCallFilter=@system-service, stricter than the units: any other call kills the process.
seccomp = ctypes.CDLL("libseccomp.so.2")
seccomp.seccomp_init.restype = ctypes.c_void_p
context = ctypes.c_void_p(seccomp.seccomp_init(ctypes.c_uint32(0x80000000)))  # KILL_PROCESS
for name in os.environ["ALLOWED_SYSCALLS"].split():
    number = seccomp.seccomp_syscall_resolve_name(name.encode())
    if number >= 0:  # negative: not a system call on this architecture
        seccomp.seccomp_rule_add(context, ctypes.c_uint32(0x7FFF0000), number, 0)  # ALLOW
assert seccomp.seccomp_load(context) == 0  # also sets no_new_privs, as NoNewPrivileges=yes
with open("/proc/self/status") as status:
    assert "Seccomp:\t2" in status.read()
import mmap, ssl, sys
from concurrent import futures
import grpc, psycopg2, sqlalchemy, zstandard
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from cloudgrpc_proto import healthcheck
try:
    mmap.mmap(-1, 4096, prot=mmap.PROT_READ | mmap.PROT_WRITE | mmap.PROT_EXEC)
    sys.exit("W+X memory was allowed: the kernel's MDWE is not in force")
except PermissionError:
    pass
server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
servicer = health.HealthServicer()
health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
port = server.add_insecure_port("127.0.0.1:0")
server.start()
servicer.set("", health_pb2.HealthCheckResponse.SERVING)
assert healthcheck.check(f"127.0.0.1:{port}") == "SERVING"
packed = zstandard.ZstdCompressor().compress(b"text " * 10000)
assert zstandard.ZstdDecompressor().decompress(packed) == b"text " * 10000
ssl.create_default_context()
server.stop(0).wait()
print("ok")
"""


def system_service_syscalls() -> list[str]:
    """The system calls systemd's @system-service group allows (nested groups expanded)."""
    listing = subprocess.run(["systemd-analyze", "syscall-filter"], capture_output=True,
                             text=True, check=True, timeout=30).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] = []
    for line in listing.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif line.strip() and not line.strip().startswith("#"):
            current.append(line.strip())

    def expand(group: str) -> set[str]:
        return {name for item in groups.get(group, [])
                for name in (expand(item) if item.startswith("@") else {item})}

    return sorted(expand("@system-service"))


def _deny_write_execute() -> None:
    """In the child before exec: the kernel's equivalent of MemoryDenyWriteExecute=yes
    (prctl PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN; Linux 6.3+), kept across execve."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(65, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_MDWE")


def test_python_grpc_and_native_libraries_run_in_the_units_sandbox() -> None:
    """Why the units may set MemoryDenyWriteExecute=yes and SystemCallFilter=@system-service:
    the interpreter, grpcio, psycopg2, zstandard and the SSL stack serve a gRPC call with W+X
    memory refused and only @system-service's calls allowed (any other kills the process).
    (A whole cluster, gateway and nodes on SQLite and PostgreSQL, was also run so by hand.)"""
    allowed = system_service_syscalls()
    assert {"openat", "mmap", "socket", "futex", "epoll_wait"} <= set(allowed)
    assert "mount" not in allowed and "reboot" not in allowed
    if ctypes.CDLL(None, use_errno=True).prctl(66, 0, 0, 0, 0) < 0:  # PR_GET_MDWE
        pytest.skip("this kernel has no PR_SET_MDWE (before Linux 6.3)")
    done = subprocess.run([sys.executable, "-c", MDWE_CHILD], capture_output=True,
                          text=True, timeout=60, preexec_fn=_deny_write_execute,
                          env=dict(os.environ, ALLOWED_SYSCALLS=" ".join(allowed)))
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]
