"""The Helm chart (deploy/helm/jobplatform) over a matrix of values.

Each case is linted (`helm lint --strict`) and rendered (`helm template`); the core kinds
pass kubernetes-validate's strict schemas, KEDA's kinds pass KEDA's CRD schema; the
PostgreSQL trigger's query, read out of the rendered ScaledObject, runs against the test
database; the rendered environment configures each process type as intended. No cluster
runs here: what a cluster would add is in docs/deploy.md.
"""

from __future__ import annotations

import copy
import functools
import json
import math
import os
import subprocess
import sys
import uuid
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import redis
import yaml
from django.conf import settings
from django.db import connection

from jobplatform.celery import app
from jobs.models import JobState
from tests.factories import JobFactory, UserFactory
from tests.support import tools

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "jobplatform"
KUBE_VERSION = "1.35.0"
S = JobState

CREDENTIALS = {
    "djangoSecretKey": "a-real-secret-key-for-the-chart-tests",
    "databaseUrl": "postgres://jobplatform:pw@postgres.db.svc:5432/jobplatform",
    "redisUrl": "redis://:redis-pw@redis.db.svc:6379/0",
    "redisPassword": "redis-pw",
    "s3AccessKeyId": "app-key",
    "s3SecretAccessKey": "app-secret",
}
CASES: dict[str, dict] = {
    "keda-postgresql": {"secret": CREDENTIALS},
    "keda-redis": {"secret": CREDENTIALS, "keda": {"trigger": "redis", "redis": {"address": "redis.db.svc:6379"}}},
    "keda-redis-no-password": {"secret": CREDENTIALS, "keda": {"trigger": "redis", "redis": {"passwordSecretKey": ""}}},
    "keda-rabbitmq": {"secret": {**CREDENTIALS, "brokerUrl": "amqp://app:pw@rabbitmq.mq.svc:5672/jobs"},
                      "keda": {"trigger": "rabbitmq"}},
    "hpa-off": {"secret": CREDENTIALS, "web": {"hpa": {"enabled": False}, "replicas": 3},
                "keda": {"enabled": False}, "worker": {"replicas": 4}},
    "external-s3": {"secret": CREDENTIALS, "config": {"s3": {
        "endpointUrl": "https://rgw.storage.example.com", "publicEndpointUrl": "https://rgw.storage.example.com",
        "region": "default", "keyPrefix": "prod"}}},
    "existing-secret": {"existingSecret": "jobplatform-credentials"},
    "bundled-minio": {"secret": CREDENTIALS, "minio": {"enabled": True, "rootUser": "root", "rootPassword": "root-pw"},
                      "config": {"s3": {"publicEndpointUrl": "https://s3.jobs.example.com"}}},
    "metrics-off": {"secret": CREDENTIALS, "metrics": {"enabled": False}},
}
KEDA_CASES = [name for name, values in CASES.items() if values.get("keda", {}).get("enabled", True)]


@pytest.fixture(scope="session")
def helm() -> Path:
    try:
        return tools.helm()
    except tools.ToolUnavailable as exc:
        pytest.skip(f"no helm binary: {exc}")


@pytest.fixture(scope="session")
def keda_validators() -> dict[str, jsonschema.protocols.Validator]:
    try:
        schemas = tools.keda_schemas()
    except tools.ToolUnavailable as exc:
        pytest.skip(f"no KEDA CRD schema: {exc}")
    return {kind: jsonschema.Draft7Validator(strict_fields(schema)) for kind, schema in schemas.items()}


def strict_fields(schema: dict) -> dict:
    """The CRD schema as `kubectl apply` applies it (strict field validation, the default):
    an object with declared properties takes no others, so a misspelt field fails here as it
    would there. metadata is ObjectMeta, which the core schemas cover."""
    schema = copy.deepcopy(schema)
    schema["properties"]["metadata"] = {"type": "object"}

    def close(node):
        if isinstance(node, dict):
            if node.get("properties") and "additionalProperties" not in node:
                node["additionalProperties"] = False
            for value in node.values():
                close(value)
        elif isinstance(node, list):
            for value in node:
                close(value)

    close(schema)
    return schema


def merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def run_helm(helm: Path, *args: str, values: dict, tmp_dir: Path) -> subprocess.CompletedProcess:
    values_file = tmp_dir / f"values-{uuid.uuid4().hex}.yaml"
    values_file.write_text(json.dumps(values))
    return subprocess.run([str(helm), *args, str(CHART), "-f", str(values_file)],
                          capture_output=True, text=True, timeout=120, check=False)


@functools.cache
def _render(helm: Path, values_json: str, tmp_dir: Path) -> tuple[dict, ...]:
    result = run_helm(helm, "template", "jp", "--namespace", "jobs", "--kube-version", KUBE_VERSION,
                      values=json.loads(values_json), tmp_dir=tmp_dir)
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


@pytest.fixture(scope="session")
def render(helm, tmp_path_factory):
    """render(case or values) -> the rendered manifests, as dicts (rendered once per values)."""
    tmp_dir = tmp_path_factory.mktemp("helm")

    def do(case: str | dict) -> list[dict]:
        values = CASES[case] if isinstance(case, str) else case
        return copy.deepcopy(list(_render(helm, json.dumps(values, sort_keys=True), tmp_dir)))

    return do


@pytest.fixture
def render_error(helm, tmp_path):
    """render_error(values) -> helm's error message for values the chart must refuse."""

    def do(values: dict) -> str:
        result = run_helm(helm, "template", "jp", values=values, tmp_dir=tmp_path)
        assert result.returncode != 0, "the chart rendered values it should refuse"
        return result.stderr

    return do


def one(docs: list[dict], kind: str, name_suffix: str = "") -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(name_suffix)]
    assert len(found) == 1, f"{len(found)} {kind} named *{name_suffix}"
    return found[0]


def pod_specs(docs: list[dict]) -> dict[str, dict]:
    return {d["metadata"]["name"]: d["spec"]["template"]["spec"]
            for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job")}


def container(docs: list[dict], workload: str) -> dict:
    return one(docs, "Deployment", f"-{workload}")["spec"]["template"]["spec"]["containers"][0]


# --- lint, render, schemas -----------------------------------------------------------------


@pytest.mark.parametrize("case", CASES)
def test_chart_passes_helm_lint_strict(helm, tmp_path, case):
    result = run_helm(helm, "lint", "--strict", values=CASES[case], tmp_dir=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 chart(s) failed" in result.stdout


@pytest.mark.parametrize("case", CASES)
def test_core_manifests_pass_kubernetes_validate_strict(render, case):
    core = [d for d in render(case) if not d["apiVersion"].startswith("keda.sh/")]
    assert {"Deployment", "Service", "ConfigMap", "Job", "PodDisruptionBudget"} <= {d["kind"] for d in core}
    for doc in core:
        kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)


def test_strict_validation_refuses_a_misspelt_field(render):
    web = one(render("keda-postgresql"), "Deployment", "-web")
    web["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/readyz", "port": 8000}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(web, KUBE_VERSION, strict=True)


@pytest.mark.parametrize("case", KEDA_CASES)
def test_keda_objects_pass_the_crd_schema(render, keda_validators, case):
    keda = [d for d in render(case) if d["apiVersion"].startswith("keda.sh/")]
    assert "ScaledObject" in {d["kind"] for d in keda}
    for doc in keda:
        errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
                  for e in keda_validators[doc["kind"]].iter_errors(doc)]
        assert not errors, f"{doc['kind']} {doc['metadata']['name']}: {errors}"


@pytest.fixture(scope="session")
def keda_current_api():
    try:
        tools.keda_validators()
    except tools.ToolUnavailable as exc:
        pytest.skip(f"no KEDA validators: {exc}")
    return tools.keda_validate


@pytest.mark.parametrize("case", KEDA_CASES)
def test_keda_objects_pass_the_current_keda_api_validators(render, keda_current_api, case):
    keda = [d for d in render(case) if d["apiVersion"].startswith("keda.sh/")]
    results = keda_current_api(keda)
    assert [r["kind"] for r in results] == [d["kind"] for d in keda]
    assert [r for r in results if r["error"]] == []


def test_current_keda_api_validators_refuse_a_wrong_type(render, keda_current_api):
    scaled = one(render("keda-postgresql"), "ScaledObject")
    scaled["spec"]["maxReplicaCount"] = "ten"
    assert "maxReplicaCount must be integer" in keda_current_api([scaled])[0]["error"]


def test_crd_schema_refuses_a_misspelt_field(render, keda_validators):
    scaled = one(render("keda-postgresql"), "ScaledObject")
    scaled["spec"]["maxReplicas"] = 5
    assert not keda_validators["ScaledObject"].is_valid(scaled)


# --- the KEDA triggers ---------------------------------------------------------------------


def postgresql_query(docs: list[dict]) -> str:
    trigger = one(docs, "ScaledObject")["spec"]["triggers"][0]
    assert trigger["type"] == "postgresql"
    return trigger["metadata"]["query"]


def run_query(sql: str):
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.fetchone()[0]


@pytest.mark.django_db
@pytest.mark.parametrize("concurrency", [1, 2, 4])
def test_postgresql_trigger_counts_waiting_and_running_jobs_per_worker_slot(render, concurrency):
    owner = UserFactory()
    active = {S.QUEUED: 3, S.PROCESSING: 2, S.RETRYING: 1}
    idle = {S.CREATED: 2, S.COMPLETED: 4, S.FAILED: 1, S.CANCELLED: 1, S.DEAD: 1}
    for state, count in {**active, **idle}.items():
        JobFactory.create_batch(count, owner=owner, state=state)

    query = postgresql_query(render(merge(CASES["keda-postgresql"], {"worker": {"concurrency": concurrency}})))

    assert run_query(query) == math.ceil(sum(active.values()) / concurrency)


@pytest.mark.django_db
def test_postgresql_trigger_is_zero_when_every_job_is_done(render):
    JobFactory.create_batch(3, owner=UserFactory(), state=S.COMPLETED)

    assert run_query(postgresql_query(render("keda-postgresql"))) == 0


def test_postgresql_trigger_reads_the_connection_from_the_app_secret(render):
    docs = render("keda-postgresql")
    auth_name = one(docs, "ScaledObject")["spec"]["triggers"][0]["authenticationRef"]["name"]
    auth = one(docs, "TriggerAuthentication")
    assert auth["metadata"]["name"] == auth_name
    assert auth["spec"]["secretTargetRef"] == [
        {"parameter": "connection", "name": one(docs, "Secret")["metadata"]["name"], "key": "DATABASE_URL"}]


def test_redis_trigger_watches_the_list_celery_publishes_run_messages_to(render):
    trigger = one(render("keda-redis"), "ScaledObject")["spec"]["triggers"][0]
    assert trigger["type"] == "redis"
    assert trigger["metadata"]["address"] == "redis.db.svc:6379"
    assert trigger["metadata"]["listLength"] == "2"  # messages per pod: the worker's concurrency
    if not settings.CELERY_BROKER_URL.startswith(("redis://", "rediss://")):
        pytest.skip(f"the test session's broker is not Redis ({settings.CELERY_BROKER_URL.split(':', 1)[0]})")

    task_id = str(uuid.uuid4())
    app.send_task("jobs.run_job", args=[str(uuid.uuid4())], task_id=task_id, retry=False)
    client = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    waiting = []
    try:
        waiting = [m for m in client.lrange(trigger["metadata"]["listName"], 0, -1)
                   if json.loads(m)["headers"]["id"] == task_id]
        assert len(waiting) == 1
    finally:
        for message in waiting:
            client.lrem(trigger["metadata"]["listName"], 1, message)
        client.close()


def test_redis_trigger_without_a_password_has_no_authentication(render):
    docs = render("keda-redis-no-password")
    assert "authenticationRef" not in one(docs, "ScaledObject")["spec"]["triggers"][0]
    assert not [d for d in docs if d["kind"] == "TriggerAuthentication"]


def test_rabbitmq_trigger_counts_the_jobs_queue_with_the_broker_url(render):
    docs = render("keda-rabbitmq")
    trigger = one(docs, "ScaledObject")["spec"]["triggers"][0]
    assert trigger["type"] == "rabbitmq"
    assert trigger["metadata"] == {"protocol": "amqp", "queueName": "jobs", "mode": "QueueLength", "value": "2",
                                   "activationValue": "0"}
    assert one(docs, "TriggerAuthentication")["spec"]["secretTargetRef"][0]["key"] == "CELERY_BROKER_URL"
    assert one(docs, "Secret")["stringData"]["CELERY_BROKER_URL"] == "amqp://app:pw@rabbitmq.mq.svc:5672/jobs"


def test_scaled_object_owns_the_worker_replica_count(render):
    docs = render("keda-postgresql")
    assert one(docs, "ScaledObject")["spec"]["scaleTargetRef"]["name"] == one(docs, "Deployment", "-worker")[
        "metadata"]["name"]
    assert "replicas" not in one(docs, "Deployment", "-worker")["spec"]


def test_redis_trigger_without_the_password_it_reads_is_refused(render_error):
    values = merge(CASES["keda-redis"], {"secret": {"redisPassword": ""}})
    assert "keda.trigger=redis reads the Redis password from secret.redisPassword" in render_error(values)


def test_rabbitmq_trigger_without_a_broker_url_is_refused(render_error):
    values = merge(CASES["keda-rabbitmq"], {"secret": {"brokerUrl": ""}})
    assert "set secret.brokerUrl to the RabbitMQ URL" in render_error(values)


def test_unknown_trigger_is_refused(render_error):
    assert "at '/keda/trigger': value must be one of 'postgresql', 'redis', 'rabbitmq'" in render_error(
        merge(CASES["keda-postgresql"], {"keda": {"trigger": "sqs"}}))


def test_values_of_the_wrong_type_are_refused_by_name(render_error):
    assert "at '/worker/concurrency': got string, want integer" in render_error(
        merge(CASES["keda-postgresql"], {"worker": {"concurrency": "four"}}))


# --- workloads -----------------------------------------------------------------------------


def test_worker_runs_with_prefetch_of_one_on_the_jobs_queues(render):
    command = container(render("keda-postgresql"), "worker")["command"]
    assert command[:4] == ["celery", "-A", "jobplatform", "worker"]
    assert command[command.index("--prefetch-multiplier") + 1] == "1"
    assert command[command.index("-Q") + 1] == "jobs,maintenance"
    assert command[command.index("--concurrency") + 1] == "2"


@pytest.mark.parametrize("case", CASES)
def test_worker_grace_period_outlasts_its_warm_shutdown(render, case):
    docs = render(case)
    config = one(docs, "ConfigMap", "jobplatform")["data"]
    worker = one(docs, "Deployment", "-worker")["spec"]["template"]["spec"]
    warm_shutdown = float(config["JOB_SHUTDOWN_GRACE_SECONDS"]) + float(config["JOB_SHUTDOWN_HANDBACK_SECONDS"])
    assert worker["terminationGracePeriodSeconds"] > warm_shutdown


def test_grace_period_shorter_than_warm_shutdown_is_refused(render_error):
    error = render_error(merge(CASES["keda-postgresql"], {"worker": {"terminationGracePeriodSeconds": 25}}))
    assert "worker.terminationGracePeriodSeconds (25) must be longer than" in error


def test_web_probes_healthz_and_readyz(render):
    web = container(render("keda-postgresql"), "web")
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["startupProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_ingress_sends_every_path_to_the_web_service_with_websockets_kept_open(render):
    docs = render("keda-postgresql")
    ingress = one(docs, "Ingress")
    paths = ingress["spec"]["rules"][0]["http"]["paths"]
    assert [(p["path"], p["backend"]["service"]["name"]) for p in paths] == [
        ("/", one(docs, "Service", "-web")["metadata"]["name"])]
    assert int(ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-request-buffering"] == "off"


def test_beat_is_one_replica_replaced_by_recreate(render):
    beat = one(render("keda-postgresql"), "Deployment", "-beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"] == {"type": "Recreate"}


def test_sweeper_runs_the_sweep_loop_with_worker_settings(render):
    sweeper = container(render("keda-postgresql"), "sweeper")
    assert sweeper["command"] == ["python", "manage.py", "sweep", "--loop"]
    assert {"name": "DJANGO_SETTINGS_MODULE", "value": "jobplatform.settings.worker"} in sweeper["env"]


def test_migrations_and_buckets_run_in_a_hook_after_their_configuration(render):
    docs = render("keda-postgresql")
    job = one(docs, "Job", "-migrate")
    hook = job["metadata"]["annotations"]
    assert hook["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert job["spec"]["template"]["spec"]["containers"][0]["command"][-1] == (
        "python manage.py migrate --noinput && python manage.py ensure_buckets")
    for kind in ("ConfigMap", "Secret"):
        config = one(docs, kind)["metadata"]["annotations"]
        assert config["helm.sh/hook"] == hook["helm.sh/hook"]
        assert int(config["helm.sh/hook-weight"]) < int(hook["helm.sh/hook-weight"])


@pytest.mark.parametrize("case", CASES)
def test_every_pod_runs_non_root_on_a_read_only_root_with_a_writable_tmp(render, case):
    for name, spec in pod_specs(render(case)).items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["automountServiceAccountToken"] is False, name
        for c in spec.get("initContainers", []) + spec["containers"]:
            assert c["securityContext"]["readOnlyRootFilesystem"] is True, (name, c["name"])
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, (name, c["name"])
            assert "/tmp" in {m["mountPath"] for m in c["volumeMounts"]}, (name, c["name"])
            assert c["resources"]["limits"]["memory"], (name, c["name"])


@pytest.mark.parametrize("case", CASES)
def test_web_and_workers_have_disruption_budgets(render, case):
    budgets = {d["metadata"]["name"] for d in render(case) if d["kind"] == "PodDisruptionBudget"}
    assert budgets == {"jp-jobplatform-web", "jp-jobplatform-worker"}


def test_hpa_off_gives_fixed_replicas(render):
    docs = render("hpa-off")
    assert not [d for d in docs if d["kind"] in ("HorizontalPodAutoscaler", "ScaledObject")]
    assert one(docs, "Deployment", "-web")["spec"]["replicas"] == 3
    assert one(docs, "Deployment", "-worker")["spec"]["replicas"] == 4


def test_web_hpa_scales_the_web_deployment_on_cpu(render):
    docs = render("keda-postgresql")
    hpa = one(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == one(docs, "Deployment", "-web")["metadata"]["name"]
    assert "replicas" not in one(docs, "Deployment", "-web")["spec"]


# --- configuration, secrets, S3 ------------------------------------------------------------


def test_existing_secret_is_used_and_none_is_made(render):
    docs = render("existing-secret")
    assert not [d for d in docs if d["kind"] == "Secret"]
    for name, spec in pod_specs(docs).items():
        refs = [e["secretRef"]["name"] for e in spec["containers"][0]["envFrom"] if "secretRef" in e]
        assert refs == ["jobplatform-credentials"], name
    assert one(docs, "TriggerAuthentication")["spec"]["secretTargetRef"][0]["name"] == "jobplatform-credentials"


def test_missing_credentials_are_refused_by_name(render_error):
    assert "secret.djangoSecretKey is required unless existingSecret names a Secret" in render_error({})


def test_external_s3_endpoint_and_prefix_reach_the_config(render):
    docs = render("external-s3")
    config = one(docs, "ConfigMap")["data"]
    assert config["S3_ENDPOINT_URL"] == "https://rgw.storage.example.com"
    assert config["S3_KEY_PREFIX"] == "prod"
    assert not [d for d in docs if d["kind"] == "StatefulSet"]


def test_bundled_minio_is_the_endpoint_and_makes_buckets_and_a_scoped_user(render):
    docs = render("bundled-minio")
    minio = one(docs, "StatefulSet", "-minio")
    assert minio["spec"]["template"]["spec"]["containers"][0]["image"].startswith("minio/minio:RELEASE.")
    service = one(docs, "Service", "-minio")["metadata"]["name"]
    assert one(docs, "ConfigMap", "jobplatform")["data"]["S3_ENDPOINT_URL"] == f"http://{service}:9000"
    init = next(d for d in docs if d["kind"] == "Job" and "-minio-init-" in d["metadata"]["name"])["spec"]["template"]
    script = init["spec"]["initContainers"][0]["command"][-1]
    assert "mc mb --ignore-existing local/job-inputs" in script
    assert "mc admin policy attach local jobplatform-app" in script
    assert init["spec"]["containers"][0]["command"] == ["python", "manage.py", "ensure_buckets"]
    policy = json.loads(one(docs, "ConfigMap", "-minio-policy")["data"]["jobplatform-app.json"])
    assert policy == json.loads((ROOT / "compose" / "minio-app-policy.json").read_text())


def test_metrics_annotations_and_worker_exporter_port(render):
    docs = render("keda-postgresql")
    worker = one(docs, "Deployment", "-worker")["spec"]["template"]
    assert worker["metadata"]["annotations"]["prometheus.io/port"] == "9808"
    env = {e["name"]: e.get("value") for e in worker["spec"]["containers"][0]["env"]}
    assert env["WORKER_METRICS_PORT"] == "9808"
    assert env["PROMETHEUS_MULTIPROC_DIR"] in {m["mountPath"] for m in worker["spec"]["containers"][0]["volumeMounts"]}
    web = one(docs, "Deployment", "-web")["spec"]["template"]["metadata"]["annotations"]
    assert (web["prometheus.io/path"], web["prometheus.io/port"]) == ("/metrics", "8000")


def test_metrics_off_leaves_no_scrape_annotations_or_exporter(render):
    docs = render("metrics-off")
    for name in ("-web", "-worker"):
        template = one(docs, "Deployment", name)["spec"]["template"]
        assert "prometheus.io/scrape" not in template["metadata"]["annotations"]
        assert "WORKER_METRICS_PORT" not in {e["name"] for e in template["spec"]["containers"][0]["env"]}


def pod_environment(docs: list[dict], workload: str, pod_ip: str = "10.1.2.3") -> dict[str, str]:
    """The environment the kubelet gives the workload's container: envFrom, then env with $(VAR) expanded."""
    env: dict[str, str] = {}
    c = container(docs, workload)
    for source in c["envFrom"]:
        if "configMapRef" in source:
            env.update(one(docs, "ConfigMap", source["configMapRef"]["name"])["data"])
        else:
            env.update(one(docs, "Secret", source["secretRef"]["name"])["stringData"])
    for item in c["env"]:
        value = pod_ip if "valueFrom" in item else item["value"]
        for name, known in env.items():
            value = value.replace(f"$({name})", known)
        env[item["name"]] = value
    return env


SETTINGS_PROBE = """
import json, django
django.setup()
from django.conf import settings as s
names = ("DEBUG", "ALLOWED_HOSTS", "TLS", "SECURE_SSL_REDIRECT", "SECURE_PROXY_SSL_HEADER", "S3_ENDPOINT_URL",
         "JOB_SHUTDOWN_GRACE_SECONDS", "JOB_SHUTDOWN_HANDBACK_SECONDS", "WORKER_METRICS_PORT", "WORKER_METRICS_ADDR",
         "CELERY_WORKER_PREFETCH_MULTIPLIER", "ROOT_URLCONF", "CELERY_BROKER_URL")
got = {name: getattr(s, name, None) for name in names}
got["run_job_queue"] = s.CELERY_TASK_ROUTES["jobs.run_job"]["queue"]
got["queues"] = {q.name: q.queue_arguments for q in getattr(s, "CELERY_TASK_QUEUES", None) or []}
print(json.dumps(got))
"""


def settings_of(env: dict[str, str], scratch: Path) -> dict:
    """The settings a process with exactly this environment gets (a fresh interpreter). The
    pod's emptyDir for prometheus-client's files is a scratch directory here."""
    clean = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/"), "JOBPLATFORM_ENV_FILE": "", **env}
    if "PROMETHEUS_MULTIPROC_DIR" in clean:
        clean["PROMETHEUS_MULTIPROC_DIR"] = str(scratch)
    result = subprocess.run([sys.executable, "-c", SETTINGS_PROBE], env=clean, cwd=ROOT, capture_output=True,
                            text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_rendered_environment_configures_the_web_process(render, tmp_path):
    got = settings_of(pod_environment(render("keda-postgresql"), "web"), tmp_path)
    assert got["DEBUG"] is False
    assert got["ROOT_URLCONF"] == "jobplatform.urls"
    # Probes and Prometheus reach the pod by its IP, over plain HTTP, without a redirect.
    assert "10.1.2.3" in got["ALLOWED_HOSTS"] and "jobs.example.com" in got["ALLOWED_HOSTS"]
    assert got["TLS"] is True and got["SECURE_SSL_REDIRECT"] is False
    assert got["SECURE_PROXY_SSL_HEADER"] == ["HTTP_X_FORWARDED_PROTO", "https"]


def test_rendered_environment_configures_the_worker_process(render, tmp_path):
    got = settings_of(pod_environment(render("bundled-minio"), "worker"), tmp_path)
    assert got["ROOT_URLCONF"] == "jobs.web.urls"
    assert got["CELERY_WORKER_PREFETCH_MULTIPLIER"] == 1
    assert (got["JOB_SHUTDOWN_GRACE_SECONDS"], got["JOB_SHUTDOWN_HANDBACK_SECONDS"]) == (20.0, 5.0)
    # The exporter listens on the pod's address, where Prometheus scrapes it.
    assert (got["WORKER_METRICS_PORT"], got["WORKER_METRICS_ADDR"]) == (9808, "0.0.0.0")  # noqa: S104
    assert got["S3_ENDPOINT_URL"] == "http://jp-jobplatform-minio:9000"


def test_rabbitmq_trigger_counts_the_quorum_queue_run_messages_go_to(render, tmp_path):
    docs = render("keda-rabbitmq")
    got = settings_of(pod_environment(docs, "worker"), tmp_path)
    queue = one(docs, "ScaledObject")["spec"]["triggers"][0]["metadata"]["queueName"]
    assert got["CELERY_BROKER_URL"] == "amqp://app:pw@rabbitmq.mq.svc:5672/jobs"
    assert got["run_job_queue"] == queue
    assert got["queues"][queue] == {"x-queue-type": "quorum"}
