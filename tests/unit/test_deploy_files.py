"""The deploy files, checked by the real tools: `docker-compose config` (Docker Compose's own validation of
compose.yaml), kubernetes-validate (the Kubernetes JSON schemas, strict) for deploy/kubernetes/, hadolint for
the Dockerfile. Each tool comes from a registry package (`make tools`, pyproject's deploy-check extra) and runs
offline. Every validator is also shown a broken copy and must reject it, so a tool that silently checks
nothing fails here. On top, what the tools cannot know: the promises of README "Deploy" (volumes, restart
policy, grace periods, the pod ordinal naming the bot, probes that find the bot's port).

Building the image needs a Docker daemon; that one test skips without it.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.helpers import ROOT, clean_env
from utils.config import bot_index_from_ordinal
from utils.healthcheck import bots_of_command

K8S_DIR = ROOT / "deploy" / "kubernetes"
MANIFESTS = sorted(K8S_DIR.glob("*.yaml")) + sorted((K8S_DIR / "jobs").glob("*.yaml"))
K8S_VERSIONS = ["1.30.0", "1.37.0"]  # oldest we document, newest the schemas know
BOT_SHUTDOWN_S = 5  # bot.py on SIGTERM: final snapshot, leave voice (3 s at most), close node and gateway
TIMEOUT = 120


def tool(name: str) -> str:
    """Path of a validator from the deploy-check extra; skip (fail under CI) when it is not installed."""
    beside = Path(sys.executable).parent / name  # the venv's bin/ (not on PATH when pytest runs by full path)
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        reason = f"{name} is not installed: `make tools` (pip install '.[deploy-check]') brings it"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return found


def run(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT,
                          env=env if env is not None else clean_env())


def mutate(text: str, old: str, new: str) -> str:
    assert old in text, f"the mutation's anchor {old!r} is gone: update this test"
    return text.replace(old, new, 1)


# ---------------------------------------------------------------- Dockerfile

DOCKERFILE = (ROOT / "Dockerfile").read_text()


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    return run([tool("hadolint"), "--no-color", str(path)], cwd=path.parent)


def test_hadolint_accepts_the_dockerfile():
    result = hadolint(ROOT / "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("old, new, rule", [
    ('CMD ["python", "process_manager.py"]', "CMD python process_manager.py", "DL3025"),  # shell form: no SIGTERM
    ("USER 10001:10001", "USER root", "DL3002"),
    ("pip install --no-cache-dir -r", "pip install -r", "DL3042"),
])
def test_hadolint_rejects_a_broken_dockerfile(tmp_path, old, new, rule):
    broken = tmp_path / "Dockerfile"
    broken.write_text(mutate(DOCKERFILE, old, new))
    result = hadolint(broken)
    assert result.returncode != 0 and rule in result.stdout, result.stdout + result.stderr


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    kept = "\n".join(line for line in DOCKERFILE.splitlines() if not line.lstrip().startswith("#"))
    joined = re.sub(r"\\\n", " ", kept)
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1].strip()) for line in joined.splitlines()
            if line.strip()]


def test_the_image_promises():
    instructions = _instructions()
    first = {name: args for name, args in reversed(instructions)}
    last = {name: args for name, args in instructions}
    assert first["FROM"] == "python:3.11-slim"
    assert re.fullmatch(r"\d+:\d+", last["USER"]) and not last["USER"].startswith("0:")  # numeric, non-root
    assert json.loads(last["VOLUME"]) == ["/app/logs", "/app/state"]
    env = dict(re.findall(r"(\w+)=(\S+)", first["ENV"]))
    assert (env["LOG_DIR"], env["STATE_DIR"], env["METRICS_HOST"]) == ("/app/logs", "/app/state", "0.0.0.0")
    assert json.loads(last["CMD"]) == ["python", "process_manager.py"]  # exec form: PID 1 gets the SIGTERM
    assert json.loads(last["HEALTHCHECK"].split("CMD", 1)[1]) == ["python", "-m", "utils.healthcheck"]
    # the dependency layer comes before any code: a code change does not reinstall the dependencies
    order = [name + " " + args for name, args in instructions]
    install = next(i for i, line in enumerate(order) if "pip install" in line)
    assert order[install - 1] == "COPY pyproject.toml ./"
    assert all(not line.startswith("COPY") for line in order[:install - 1])


def test_the_dependency_layer_installs_pyprojects_dependencies(tmp_path):
    """The RUN line's extraction, executed: it yields exactly [project] dependencies of pyproject.toml."""
    script = re.search(r'python -c "(.+?)"\s*\\?\n?\s*> /tmp/requirements.txt', DOCKERFILE, re.S)
    assert script, "the dependency RUN line changed: update this test"
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    # as Docker runs it: through /bin/sh, whose double quotes hand the \\n on to Python
    result = run(["/bin/sh", "-c", f'{shlex.quote(sys.executable)} -c "{script.group(1)}"'], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    expected = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert result.stdout.splitlines() == expected


def _image_files() -> list[str]:
    """What the COPY lines bring into the image (sources, relative to the build context)."""
    sources = []
    for name, args in _instructions():
        if name == "COPY":
            sources += [a for a in args.split()[:-1] if not a.startswith("--")]
    return sources


def test_dockerignore_lets_in_what_the_image_copies_and_never_a_token():
    lines = [line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines[0] == "*"  # everything out, then the code back in: .env, .venv, logs, state stay out
    let_in = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    assert {s.rstrip("/") for s in _image_files()} <= let_in
    assert not any(".env" in entry or "state" in entry or "logs" in entry for entry in let_in)


def test_every_mode_of_the_image_starts_from_the_copied_files_alone(tmp_path):
    """The image's file set (COPY lines) runs all three entry points and the health check: nothing missing."""
    for source in _image_files():
        if (ROOT / source).is_dir():
            shutil.copytree(ROOT / source, tmp_path / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(ROOT / source, tmp_path / source)
    env = clean_env({"PYTHONDONTWRITEBYTECODE": "1"})
    for argv in (["bot.py", "--help"], ["process_manager.py", "--help"], ["register_commands.py", "--help"],
                 ["-m", "utils.healthcheck"]):
        result = run([sys.executable, *argv], cwd=tmp_path, env=env)
        assert result.returncode == 0, f"{argv}: {result.stderr}"
    assert not (tmp_path / "sandbox").exists()


def test_the_image_builds_and_runs():
    docker = shutil.which("docker")
    if docker is None or run([docker, "info"], cwd=ROOT).returncode != 0:
        pytest.skip("no Docker daemon reachable (`docker info` fails): building the image needs one; "
                    "the Dockerfile is linted by hadolint above")
    tag = "music-fleet:test"
    result = run([docker, "build", "-t", tag, "."], cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    result = run([docker, "run", "--rm", tag, "python", "bot.py", "--help"], cwd=ROOT)
    assert result.returncode == 0 and "--bot N" in result.stdout, result.stderr
    result = run([docker, "run", "--rm", tag, "id", "-u"], cwd=ROOT)
    assert result.stdout.strip() == "10001"


# ---------------------------------------------------------------- compose.yaml

COMPOSE = (ROOT / "compose.yaml").read_text()
TOKEN = "MTExMTExMTExMTExMTExMTEx.G00000.compose-test-token-aaaaaaaaaaaaaa"


def compose_project(tmp_path: Path, compose_text: str = COMPOSE, env_file: bool = True) -> Path:
    """A copy of what compose.yaml refers to, with a .env made from .env.example and one token filled in."""
    (tmp_path / "lavalink").mkdir()
    shutil.copy(ROOT / "lavalink" / "application.yml", tmp_path / "lavalink")
    shutil.copy(ROOT / "Dockerfile", tmp_path)
    (tmp_path / "compose.yaml").write_text(compose_text)
    if env_file:
        example = (ROOT / ".env.example").read_text()
        (tmp_path / ".env").write_text(mutate(example, "BOT_TOKEN_1=\n", f"BOT_TOKEN_1={TOKEN}\n"))
    return tmp_path


def compose_config(project: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in clean_env({"HOME": str(project)}).items()
           if not k.startswith(("COMPOSE_", "DOCKER_")) and k != "LAVALINK_PASSWORD"}
    return run([tool("docker-compose"), *extra, "config", "--format", "json"], cwd=project, env=env)


def test_compose_validates_and_keeps_its_promises(tmp_path):
    result = compose_config(compose_project(tmp_path), "--profile", "tools")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    lavalink, fleet, register = services["lavalink"], services["fleet"], services["register"]

    assert lavalink["image"].startswith("ghcr.io/lavalink-devs/lavalink:4")
    config = next(v for v in lavalink["volumes"] if v["target"] == "/opt/Lavalink/application.yml")
    assert (config["type"], config["source"], config.get("read_only")) == (
        "bind", str(tmp_path / "lavalink" / "application.yml"), True)
    assert "/version" in " ".join(lavalink["healthcheck"]["test"])
    # one password for both sides, from .env
    assert lavalink["environment"]["LAVALINK_SERVER_PASSWORD"] == fleet["environment"]["LAVALINK_PASSWORD"]

    assert fleet["depends_on"]["lavalink"]["condition"] == "service_healthy"
    assert fleet["environment"]["BOT_TOKEN_1"] == TOKEN  # tokens come from .env
    assert fleet["environment"]["LAVALINK_URI"] == "http://lavalink:2333"
    assert fleet["environment"]["METRICS_HOST"] == "0.0.0.0" and fleet["environment"]["METRICS_PORT"]
    targets = {v["target"]: v for v in fleet["volumes"]}
    assert targets["/app/logs"]["type"] == targets["/app/state"]["type"] == "volume"
    assert (fleet["environment"]["LOG_DIR"], fleet["environment"]["STATE_DIR"]) == ("/app/logs", "/app/state")
    assert fleet["command"] == ["python", "process_manager.py"]

    # exit 78 is not retried forever: a bounded on-failure (Docker cannot exempt one exit code; README says so)
    assert re.fullmatch(r"on-failure:[1-5]", fleet["restart"]), fleet["restart"]
    from process_manager import ProcessConfig
    grace = int(fleet["stop_grace_period"].rstrip("s"))
    assert grace >= ProcessConfig().stopwaitsecs + 2 * BOT_SHUTDOWN_S  # the manager's own grace, then its exit

    assert register["command"] == ["python", "register_commands.py"]
    assert register["profiles"] == ["tools"] and register["restart"] == "no"
    assert register["environment"]["BOT_TOKEN_1"] == TOKEN


def test_compose_without_env_file_says_what_is_missing(tmp_path):
    result = compose_config(compose_project(tmp_path, env_file=False))
    assert result.returncode != 0
    assert ".env" in result.stderr, result.stderr


@pytest.mark.parametrize("old, new, message", [
    ("condition: service_healthy", "condition: service_healty", "condition value must be one of"),
    ("    healthcheck:\n", "    healthchek:\n", "healthchek"),
    ("      - logs:/app/logs", "      - logz:/app/logs", "undefined volume logz"),
    ("stop_grace_period: 30s", "stop_grace_period: thirty", "stop_grace_period"),
])
def test_compose_validation_rejects_a_broken_file(tmp_path, old, new, message):
    result = compose_config(compose_project(tmp_path, mutate(COMPOSE, old, new)))
    assert result.returncode != 0 and message in result.stderr, result.stderr


# ---------------------------------------------------------------- Kubernetes


def kubernetes_validate(version: str, *paths: Path) -> subprocess.CompletedProcess[str]:
    return run([tool("kubernetes-validate"), "--strict", "--no-warn", "-k", version, *map(str, paths)], cwd=ROOT)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_manifests_validate_against_the_kubernetes_schemas(version):
    result = kubernetes_validate(version, *MANIFESTS)
    assert result.returncode == 0, result.stdout + result.stderr
    passed = re.findall(r"passed for resource (\S+)", result.stdout)
    assert sorted(passed) == ["configmap/music-fleet-config", "deployment/lavalink", "job/music-fleet-register",
                              "service/lavalink", "service/music-bot", "statefulset/music-bot"]


@pytest.mark.parametrize("old, new, message", [
    ("terminationGracePeriodSeconds: 30", 'terminationGracePeriodSeconds: "30"', "is not of type 'integer'"),
    ("  volumeClaimTemplates:", "  volumeClaimTemplate:", "'volumeClaimTemplate' was unexpected"),
    ("fieldPath: metadata.name", "fieldPaths: metadata.name", "'fieldPath' is a required property"),
])
def test_kubernetes_validation_rejects_a_broken_manifest(tmp_path, old, new, message):
    broken = tmp_path / "bots.yaml"
    broken.write_text(mutate((K8S_DIR / "bots.yaml").read_text(), old, new))
    result = kubernetes_validate(K8S_VERSIONS[-1], broken)
    assert result.returncode != 0 and message in result.stdout + result.stderr, result.stdout + result.stderr


def _resources() -> dict[str, dict]:
    yaml = pytest.importorskip("yaml", reason="PyYAML comes with kubernetes-validate (`make tools`)")
    found = {}
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                found[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return found


def test_the_statefulset_runs_bot_n_in_pod_n_minus_1_with_its_own_key_and_volume():
    sts = _resources()["StatefulSet/music-bot"]
    pod = sts["spec"]["template"]["spec"]
    (bot,) = pod["containers"]
    env = {e["name"]: e for e in bot["env"]}
    assert env["BOT_ID_FROM_ORDINAL"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    pod_names = [f"{sts['metadata']['name']}-{k}" for k in range(3)]  # Kubernetes names pods <sts>-<ordinal>
    assert [bot_index_from_ordinal(name) for name in pod_names] == [1, 2, 3]

    # the token: the Secret's key BOT_TOKEN_n, read from the directory it is mounted as
    mounts = {m["name"]: m for m in bot["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert env["BOT_TOKEN_DIR"]["value"] == mounts["tokens"]["mountPath"]
    assert volumes["tokens"]["secret"]["secretName"] == "music-fleet-tokens"
    assert "BOT_TOKEN" not in {name for name in env if name != "BOT_TOKEN_DIR"}
    # FLEET_BOT_IDS given (even empty): a pod opens no sibling's file to decode its id (test_pod_ordinal.py)
    assert bot["envFrom"] == [{"configMapRef": {"name": "music-fleet-config"}}]
    assert "FLEET_BOT_IDS" in _resources()["ConfigMap/music-fleet-config"]["data"]

    # snapshots on a claim per pod, where STATE_DIR points
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert mounts[claim["metadata"]["name"]]["mountPath"] == env["STATE_DIR"]["value"]
    assert sts["spec"]["persistentVolumeClaimRetentionPolicy"] == {"whenScaled": "Retain", "whenDeleted": "Retain"}

    assert pod["terminationGracePeriodSeconds"] >= 2 * BOT_SHUTDOWN_S
    assert bot["command"] == ["python", "bot.py"]
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_the_probes_find_each_pods_bot():
    """The probe commands, given a pod's environment, check that pod's bot (its port is METRICS_PORT+n)."""
    sts = _resources()["StatefulSet/music-bot"]
    (bot,) = sts["spec"]["template"]["spec"]["containers"]
    assert bot["readinessProbe"]["exec"]["command"] == ["python", "-m", "utils.healthcheck"]
    assert bot["livenessProbe"]["exec"]["command"] == ["python", "-m", "utils.healthcheck", "--live"]
    env = {e["name"]: e.get("value") for e in bot["env"]}
    assert env["METRICS_PORT"] and env["METRICS_HOST"] == "0.0.0.0"
    for ordinal in range(3):
        pod_env = {**env, "BOT_ID_FROM_ORDINAL": f"music-bot-{ordinal}"}
        assert bots_of_command(bot["command"], pod_env) == [ordinal + 1]


def test_lavalink_and_the_registration_job():
    resources = _resources()
    lavalink = resources["Deployment/lavalink"]["spec"]["template"]["spec"]
    (node,) = lavalink["containers"]
    mount = next(m for m in node["volumeMounts"] if m["mountPath"] == "/opt/Lavalink/application.yml")
    config = next(v for v in lavalink["volumes"] if v["name"] == mount["name"])
    assert config["configMap"]["name"] == "lavalink-config"
    assert "kubectl create configmap lavalink-config --from-file=application.yml=lavalink/application.yml" in \
        (ROOT / "README.md").read_text()
    assert resources["Service/lavalink"]["spec"]["ports"][0]["port"] == 2333
    assert resources["ConfigMap/music-fleet-config"]["data"]["LAVALINK_URI"] == "http://lavalink:2333"

    job = resources["Job/music-fleet-register"]["spec"]["template"]["spec"]
    assert job["restartPolicy"] == "Never"
    assert job["containers"][0]["command"] == ["python", "register_commands.py"]
