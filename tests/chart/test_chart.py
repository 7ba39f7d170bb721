"""The Helm chart, checked by every offline means: lint, schemas, and what it renders."""

from __future__ import annotations

import copy
import json

import jsonschema
import kubernetes_validate
import pytest
import yaml

from scripts.harness.chart import (
    CHART,
    CI_VALUES,
    by_kind,
    documented_commands,
    env_of,
    named,
    pod_spec,
    training_job,
    value_flags,
)
from services.core.naming import TICKER_PATTERN
from tests.helpers import REPO

pytestmark = pytest.mark.chart

KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")  # the oldest the chart supports, and the newest known
VALUES = [None, *CI_VALUES]
IDS = ["defaults", *[p.name for p in CI_VALUES]]


@pytest.mark.parametrize("values", VALUES, ids=IDS)
def test_helm_lint_strict(render, values):
    result = render.run("lint", "--strict", str(CHART), *(["-f", str(values)] if values else []))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("values", VALUES, ids=IDS)
def test_core_objects_validate_strictly(render, values):
    docs = render(*([values] if values else []))
    core = [d for d in docs if not d["apiVersion"].startswith("monitoring.coreos.com/")]
    # The Jobs the retraining receiver would create, as its template holds them.
    core += [d for d in workloads(docs) if "generateName" in d["metadata"]]
    assert core
    for version in KUBERNETES_VERSIONS:
        for doc in core:
            name = doc["metadata"].get("name", doc["metadata"].get("generateName"))
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as error:
                pytest.fail(f"{doc['kind']} {name} on {version}: {error.message}")


@pytest.mark.parametrize("values", VALUES, ids=IDS)
def test_custom_resources_match_their_crds(render, crd_schemas, values):
    custom = [
        doc
        for doc in render(*([values] if values else []))
        if doc["apiVersion"].startswith("monitoring.coreos.com/")
    ]
    # Every rendering has its monitoring objects to check, but those that turn them off.
    expected = {
        "no-monitoring-values.yaml": [],
        "no-retrainer-values.yaml": ["PrometheusRule", "ServiceMonitor"],
    }.get(
        values.name if values else "",
        ["AlertmanagerConfig", "PrometheusRule", "ServiceMonitor", "ServiceMonitor"],
    )
    assert sorted(doc["kind"] for doc in custom) == expected
    for doc in custom:
        schema = crd_schemas[f"{doc['apiVersion']}/{doc['kind']}"]
        # Not jsonschema.validate: it would first check the CRD's own patterns, and one of
        # them uses Go's inline (?i) flag, which Python's re refuses mid-pattern.
        jsonschema.Draft7Validator(schema).validate(doc)


def test_custom_resources_are_rendered_by_default(render):
    docs = render()
    for component in ("predictor", "retrainer"):
        monitor = named(docs, "ServiceMonitor", f"-{component}")
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
        service = named(docs, "Service", f"-{component}")
        assert "metrics" in [p["name"] for p in service["spec"]["ports"]]
    (route,) = by_kind(docs, "AlertmanagerConfig")
    assert route["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    (rule,) = by_kind(docs, "PrometheusRule")
    alerts = {r["alert"] for group in rule["spec"]["groups"] for r in group["rules"]}
    assert alerts == {
        "Petr4PredictorDown",
        "Petr4PredictorNotReady",
        "Petr4CertificateExpiresSoon",
        "Petr4IntervalCoverageOff",
        "Petr4IntervalWorseThanClassic",
        "Petr4TooFewScoredDays",
        "Petr4HighErrorRatio",
        "Petr4HighLatency",
        "Petr4StalePrices",
        "Petr4RealizedMAEHigh",
        "Petr4TrainingFailed",
        "Petr4IngestionFailed",
    }
    dashboard = named(docs, "ConfigMap", "-dashboard")
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped = json.loads(dashboard["data"]["petr4.json"])
    assert shipped == json.loads((CHART / "dashboards" / "petr4.json").read_text())


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"predictor__replicas": "two"},
            "predictor.replicas: Invalid type. Expected: integer, given: string",
        ),
        (
            {"predictor__model__version": "latest"},
            "predictor.model.version: Does not match pattern",
        ),
        ({"tickers": "null"}, "(root): tickers is required"),
        ({"tickers": "{petr4.sa}"}, "tickers.0: Does not match pattern"),
        ({"ingestion__source": "ftp"}, "ingestion.source: Does not match pattern"),
        (
            {"predictor__autoscaling__enabled": "yes"},
            "Invalid type. Expected: boolean, given: string",
        ),
        ({"unknown": "1"}, "Additional property unknown is not allowed"),
    ],
)
def test_values_schema_rejects_wrong_values(render, override, message):
    ((key, value),) = override.items()
    flag = "--set-string" if value in ("two", "latest", "yes", "ftp", "1") else "--set"
    result = render.run("template", "petr4", str(CHART), flag, f"{key.replace('__', '.')}={value}")
    assert result.returncode != 0
    assert message in result.stderr


def workloads(docs: list[dict]) -> list[dict]:
    """Every object that runs pods, the retraining receiver's Job templates included."""
    found = [d for d in docs if d["kind"] in ("Pod", "Deployment", "Job", "CronJob")]
    for config_map in by_kind(docs, "ConfigMap"):
        if config_map["metadata"]["name"].endswith("-retrain-jobs"):
            found += [yaml.safe_load(text) for text in config_map["data"].values()]
    return found


def pod_specs(docs: list[dict]):
    for doc in workloads(docs):
        yield doc["metadata"].get("name", doc["metadata"].get("generateName")), pod_spec(doc)


@pytest.mark.parametrize("values", VALUES, ids=IDS)
def test_every_pod_runs_restricted(render, values):
    specs = list(pod_specs(render(*([values] if values else []))))
    assert specs
    for name, spec in specs:
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] and pod["seccompProfile"]["type"] == "RuntimeDefault", name
        # Only the retraining receiver and the Secrets' maker talk to the API server; no other
        # pod holds a token.
        talks = name.endswith(("-retrainer", "-secrets"))
        assert spec["automountServiceAccountToken"] is talks, name
        for container in spec.get("initContainers", []) + spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, (name, container["name"])
            assert context["allowPrivilegeEscalation"] is False, (name, container["name"])
            assert context["capabilities"]["drop"] == ["ALL"], (name, container["name"])
            assert container["resources"]["limits"]["memory"], (name, container["name"])


def test_predictor_rolls_without_unavailable_pods_and_probes_grpc_health(render):
    docs = render()
    deployment = named(docs, "Deployment", "-predictor")
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    # The probes ask the plaintext health port, which no Service exposes.
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == 50052
    assert env_of(container, docs)["PETR4_SERVE_HEALTH_PORT"] == "50052"
    for service in by_kind(docs, "Service"):
        assert 50052 not in [p["port"] for p in service["spec"]["ports"]]
    grace = env_of(container, docs)["PETR4_SERVE_SHUTDOWN_GRACE_SECONDS"]
    prestop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > int(grace) + prestop
    service = named(render(), "Service", "-predictor")
    assert {p["name"]: p["appProtocol"] for p in service["spec"]["ports"]} == {
        "grpc": "grpc",
        "metrics": "http",
    }


def test_pinning_a_model_version_changes_only_the_predictor_pod_template(render):
    before = render()
    after = render(predictor__model__version="7")
    assert len(before) == len(after)
    changed = [
        (a["kind"], a["metadata"]["name"]) for a, b in zip(before, after, strict=True) if a != b
    ]
    assert changed == [("Deployment", "petr4-predictor")]
    old, new = named(before, "Deployment", "-predictor"), named(after, "Deployment", "-predictor")
    old_template, new_template = old["spec"].pop("template"), new["spec"].pop("template")
    assert old == new  # everything but the pod template is the same
    assert (
        old_template["metadata"]["annotations"]["checksum/model"]
        != new_template["metadata"]["annotations"]["checksum/model"]
    )
    env = env_of(new_template["spec"]["containers"][0], after)
    assert env["PETR4_SERVE_MODEL_VERSION"] == "7"


def test_disruption_budget_only_with_more_than_one_pod(render):
    assert by_kind(render(), "PodDisruptionBudget") == []
    assert len(by_kind(render(predictor__replicas=3), "PodDisruptionBudget")) == 1
    autoscaled = render(predictor__autoscaling__enabled=True)
    assert len(by_kind(autoscaled, "PodDisruptionBudget")) == 1
    assert len(by_kind(autoscaled, "HorizontalPodAutoscaler")) == 1
    assert "replicas" not in named(autoscaled, "Deployment", "-predictor")["spec"]


def test_ingestion_cronjob_runs_after_b3_close_and_never_overlaps(render):
    (cronjob,) = [
        d for d in by_kind(render(), "CronJob") if d["metadata"]["name"].endswith("-ingest")
    ]
    spec = cronjob["spec"]
    assert spec["timeZone"] == "America/Sao_Paulo" and spec["concurrencyPolicy"] == "Forbid"
    assert spec["schedule"] == "30 19 * * 1-5"
    assert spec["jobTemplate"]["spec"]["backoffLimit"] == 2
    assert spec["successfulJobsHistoryLimit"] == 3 and spec["failedJobsHistoryLimit"] == 3


def test_nothing_waits_for_a_hook_so_install_wait_cannot_deadlock(render):
    """helm install --wait runs post-install hooks only after every object is ready, and the
    predictor is ready only once a model exists: the training must not be a hook. The one
    hook before them, the Secrets' maker, needs nothing of the release."""
    hooks = {
        (d["kind"], d["metadata"]["name"]): d["metadata"]["annotations"]["helm.sh/hook"]
        for d in render(trainer__schedule__enabled=True)
        if "helm.sh/hook" in d["metadata"].get("annotations", {})
    }
    secrets = ("ServiceAccount", "Role", "RoleBinding", "ConfigMap", "NetworkPolicy", "Job")
    assert hooks == {("Pod", "petr4-test-health"): "test"} | {
        (kind, "petr4-secrets"): "pre-install,pre-upgrade" for kind in secrets
    }
    job = training_job(render())
    pod = job["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["command"][:2] == ["petr4-ingest", "--if-missing"]  # a first install has no prices
    assert "ttlSecondsAfterFinished" not in job["spec"]  # Helm would re-create, and retrain, it


def training_job_name(docs: list[dict]) -> str:
    return training_job(docs)["metadata"]["name"]


def test_the_training_job_runs_again_only_when_its_inputs_change(render):
    """Its name carries a digest of its spec: an unchanged Job is left alone by an upgrade, a
    changed one is replaced (a Job's pod template cannot be updated in place)."""
    name = training_job_name(render())
    assert name.startswith("petr4-train-")
    for unrelated in (
        {"images__predictor__tag": "other"},
        {"predictor__model__version": 2},
        {"predictor__replicas": 2},
    ):
        assert training_job_name(render(**unrelated)) == name, unrelated
    renamed = {
        training_job_name(render(**inputs))
        for inputs in (
            {"images__trainer__tag": "other"},
            {"trainer__extraArgs": "{--max-epochs,3}"},
            {"ingestion__source": "synthetic"},
            {"trainer__job__revision": 2},
            {"tickers": "{PETR4.SA,VALE3.SA}"},
            {"trainer__mode": "per-ticker"},
        )
    }
    assert len(renamed) == 6 and name not in renamed


def test_pooled_the_ticker_list_is_one_training_job(render):
    docs = render(tickers="{PETR4.SA,VALE3.SA,ITUB4.SA}")
    job = training_job(docs)
    (train,) = pod_spec(job)["containers"]
    assert train["command"] == ["petr4-train"] and "completionMode" not in job["spec"]
    assert json.loads(env_of(train, docs)["PETR4_TRAIN_TICKERS"]) == [
        "PETR4.SA",
        "VALE3.SA",
        "ITUB4.SA",
    ]


def test_per_ticker_the_ticker_list_is_one_indexed_job(render):
    """An index per ticker, JOB_COMPLETION_INDEX (as the downward API gives it) picking it
    from the tickers ConfigMap; a failed ticker retries alone and stops nobody else."""
    docs = render(
        tickers="{PETR4.SA,VALE3.SA,ITUB4.SA}",
        trainer__mode="per-ticker",
        trainer__perTicker__parallelism=2,
        trainer__perTicker__backoffLimitPerIndex=2,
    )
    job = training_job(docs)
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 3, 2)
    assert spec["backoffLimitPerIndex"] == 2 and "backoffLimit" not in spec
    (train,) = pod_spec(job)["containers"]
    (index,) = [e for e in train["env"] if e["name"] == "PETR4_TRAIN_INDEX"]
    assert index["valueFrom"]["fieldRef"]["fieldPath"] == (
        "metadata.annotations['batch.kubernetes.io/job-completion-index']"
    )
    tickers = json.loads(env_of(train, docs)["PETR4_TRAIN_TICKERS"])
    assert tickers == ["PETR4.SA", "VALE3.SA", "ITUB4.SA"]
    # What each index trains: the trainer's own reading of the same settings.
    from trainer.settings import TrainSettings

    trained = [TrainSettings(tickers=tickers, index=i).universe for i in range(3)]
    assert trained == [["PETR4.SA"], ["VALE3.SA"], ["ITUB4.SA"]]


def test_the_model_version_may_be_a_number_or_a_string(render):
    for given in ({"predictor__model__version": 2}, {"predictor__model__version": "2"}):
        docs = render(**given)
        deployment = named(docs, "Deployment", "-predictor")
        env = env_of(deployment["spec"]["template"]["spec"]["containers"][0], docs)
        assert env["PETR4_SERVE_MODEL_VERSION"] == "2", given
    refused = render.run("template", "petr4", str(CHART), "--set", "predictor.model.version=0")
    assert refused.returncode != 0 and "predictor.model.version" in refused.stderr


def millicores(quantity: str | int | float) -> float:
    text = str(quantity)
    return float(text[:-1]) if text.endswith("m") else float(text) * 1000


def pod_cpu_request(spec: dict) -> float:
    """What the scheduler reserves for a pod: its containers' sum, or its largest init container."""

    def request(container):
        return millicores(container.get("resources", {}).get("requests", {}).get("cpu", 0))

    return max(
        sum(request(c) for c in spec["containers"]),
        max((request(c) for c in spec.get("initContainers", [])), default=0),
    )


@pytest.mark.parametrize(
    "mode", [{}, {"trainer__mode": "per-ticker", "trainer__perTicker__parallelism": 1}]
)
def test_every_pod_that_can_run_at_once_fits_in_one_cpu(render, mode):
    """kind's own pods request 0.95 of a 2-CPU node: the release must fit in the rest, with
    MLflow, the training (the install's or the schedule's, one at a time; per ticker, as
    many pods as its parallelism), the predictor and its rollout's surge pod, the ingestion
    CronJob and helm test all at once."""
    requests = cpu_requests(render(trainer__schedule__enabled=True, **mode))
    assert sum(requests.values()) <= 1000, requests


def test_the_cpu_budget_counts_each_training_pod_a_per_ticker_job_runs_at_once(render):
    one = cpu_requests(render(trainer__mode="per-ticker"))
    three = cpu_requests(render(trainer__mode="per-ticker", trainer__perTicker__parallelism=3))
    assert three["training"] == 3 * one["training"]


def cpu_requests(docs: list[dict]) -> dict[str, float]:
    """Millicores each workload may hold at once: its pods' requests times how many run."""
    requests: dict[str, float] = {}
    for doc in docs:
        if doc["kind"] not in ("Deployment", "Job", "CronJob", "Pod"):
            continue
        if "pre-install" in doc["metadata"].get("annotations", {}).get("helm.sh/hook", ""):
            continue  # done before any other pod starts
        spec = pod_spec(doc)
        pods = 1
        if doc["kind"] == "Deployment":  # a rolling update adds its surge pod (default: one)
            strategy = doc["spec"].get("strategy", {})
            surge = strategy.get("rollingUpdate", {}).get("maxSurge", 1)
            pods = doc["spec"]["replicas"] + (0 if strategy.get("type") == "Recreate" else surge)
        job = doc["spec"]["jobTemplate"]["spec"] if doc["kind"] == "CronJob" else doc["spec"]
        pods *= job.get("parallelism", 1) if doc["kind"] in ("Job", "CronJob") else 1
        covers = template_labels(doc).get("petr4.io/covers")
        workload = "training" if covers else doc["metadata"]["name"]
        requests[workload] = max(requests.get(workload, 0), pod_cpu_request(spec) * pods)
    return requests


def template_labels(doc: dict) -> dict:
    if doc["kind"] == "CronJob":
        return doc["spec"]["jobTemplate"]["spec"]["template"]["metadata"]["labels"]
    if doc["kind"] == "Pod":
        return doc["metadata"]["labels"]
    return doc["spec"]["template"]["metadata"]["labels"]


@pytest.mark.parametrize("values", VALUES, ids=IDS)
def test_every_container_turns_mlflow_telemetry_off(render, values):
    for doc in render(*([values] if values else [])):
        if doc["kind"] not in ("Deployment", "Job", "CronJob", "Pod"):
            continue
        spec = pod_spec(doc)
        for container in spec.get("initContainers", []) + spec["containers"]:
            env = {e["name"]: e.get("value") for e in container.get("env", [])}
            assert env.get("MLFLOW_DISABLE_TELEMETRY") == "true", (
                doc["metadata"]["name"],
                container["name"],
            )


RENDERING_VERBS = {"install", "upgrade", "template"}


def rendering_commands(text: str) -> list[list[str]]:
    """The helm install, upgrade and template commands a text tells users to type."""
    return [c for c in documented_commands(text) if RENDERING_VERBS & set(c)]


def renders(render, command: list[str]) -> str:
    """Empty when the chart renders with the values the command sets, on a cluster with the
    monitoring CRDs and on a fresh one without them (asking nothing of it), else why not."""
    for monitoring in (True, False):
        try:
            docs = render.helm.template(*value_flags(command), monitoring=monitoring)
        except ValueError as exc:
            return f"{' '.join(command)}: {exc}"
        custom = [d["kind"] for d in docs if d["apiVersion"].startswith("monitoring.coreos.com")]
        if custom and not monitoring:
            return f"{' '.join(command)}: renders {custom} where no CRD defines them"
    return ""


PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
DOCUMENTED = [(page, c) for page in PAGES for c in rendering_commands(page.read_text())]


@pytest.mark.parametrize(
    ("page", "command"),
    DOCUMENTED,
    ids=[f"{page.name}: {' '.join(c)}" for page, c in DOCUMENTED],
)
def test_every_helm_command_of_the_readme_and_the_docs_renders(render, page, command):
    """A command a user is told to type is accepted by the chart's schema, and renders."""
    assert renders(render, command) == ""


def test_every_helm_command_of_the_notes_renders(helm, render):
    """NOTES.txt as helm prints it after an install; N stands for a version number there."""
    notes = helm.notes().replace("<chart>", str(CHART)).replace("version=N ", "version=2 ")
    commands = rendering_commands(notes)
    assert any("predictor.model.version=2" in " ".join(c) for c in commands), notes
    assert [renders(render, c) for c in commands] == [""] * len(commands)


def test_network_policies_let_only_the_jobs_reach_the_internet(render):
    docs = render()
    policies = {d["metadata"]["name"]: d["spec"] for d in by_kind(docs, "NetworkPolicy")}
    assert set(policies) == {
        "petr4-predictor",
        "petr4-jobs",
        "petr4-mlflow",
        "petr4-retrainer",
        "petr4-secrets",
    }
    beyond_the_cluster = {
        name: sorted(port["port"] for port in rule["ports"])
        for name, spec in policies.items()
        for rule in spec.get("egress", [])
        for peer in rule.get("to", [])
        if "ipBlock" in peer
    }
    # Yahoo for the jobs; the API server, and nothing else, for the retraining receiver and
    # the Secrets' maker.
    assert beyond_the_cluster == {
        "petr4-jobs": [443],
        "petr4-retrainer": [443, 6443],
        "petr4-secrets": [443, 6443],
    }
    monitoring = {
        "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}
    }
    assert [rule["from"] for rule in policies["petr4-retrainer"]["ingress"]] == [[monitoring]]
    for offline in ("synthetic", "csv:/data/{ticker}.csv"):  # only Yahoo is on the internet
        jobs = named(render(ingestion__source=offline), "NetworkPolicy", "-jobs")
        assert not [rule for rule in jobs["spec"]["egress"] if "ipBlock" in rule.get("to", [{}])[0]]
    assert by_kind(render(networkPolicy__enabled=False), "NetworkPolicy") == []


def test_external_mlflow_replaces_the_bundled_one(render):
    docs = render(mlflow__enabled=False, mlflow__externalUri="https://mlflow.example.com")
    assert not [d for d in docs if d["metadata"]["name"].endswith("-mlflow")]
    env = env_of(pod_spec(named(docs, "Deployment", "-predictor"))["containers"][0], docs)
    assert env["MLFLOW_TRACKING_URI"] == "https://mlflow.example.com"
    result = render.run("template", "petr4", str(CHART), "--set", "mlflow.enabled=false")
    assert result.returncode != 0 and "mlflow.externalUri is required" in result.stderr


SCALED_MLFLOW = {
    "mlflow__replicas": 2,
    "mlflow__backend__existingSecret": "mlflow-db",
    "mlflow__artifacts__destination": "s3://petr4-mlflow/artifacts",
    "mlflow__artifacts__existingSecret": "mlflow-s3",
}


@pytest.mark.parametrize(
    "left_out",
    [
        ["mlflow__backend__existingSecret"],  # SQLite on the volume
        ["mlflow__artifacts__destination"],  # artifacts on the volume
        ["mlflow__backend__existingSecret", "mlflow__artifacts__destination"],
    ],
)
def test_more_than_one_mlflow_replica_needs_a_database_and_an_object_store(render, left_out):
    chosen = {k: v for k, v in SCALED_MLFLOW.items() if k not in left_out}
    flags = [a for k, v in chosen.items() for a in ("--set", f"{k.replace('__', '.')}={v}")]
    refused = render.run("template", "petr4", str(CHART), *flags)
    assert refused.returncode != 0
    assert "mlflow.replicas above 1 needs mlflow.backend.existingSecret" in refused.stderr


def test_mlflow_scales_out_on_a_database_and_an_object_store(render):
    docs = render(**SCALED_MLFLOW)
    deployment = named(docs, "Deployment", "-mlflow")
    assert deployment["spec"]["replicas"] == 2
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    (server,) = pod_spec(deployment)["containers"]
    assert "--artifacts-destination=s3://petr4-mlflow/artifacts" in server["args"]
    keys = {
        e["name"]: e["valueFrom"]["secretKeyRef"]["name"]
        for e in server["env"]
        if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert keys == {
        "MLFLOW_BACKEND_STORE_URI": "mlflow-db",
        "AWS_ACCESS_KEY_ID": "mlflow-s3",
        "AWS_SECRET_ACCESS_KEY": "mlflow-s3",
        "MLFLOW_S3_ENDPOINT_URL": "mlflow-s3",
        "MLFLOW_FLASK_SERVER_SECRET_KEY": "petr4-mlflow-admin",
    }
    claims = [v for v in pod_spec(deployment)["volumes"] if "persistentVolumeClaim" in v]
    assert claims == []  # no volume to share
    assert by_kind(docs, "PersistentVolumeClaim") == []
    (budget,) = [
        d for d in by_kind(docs, "PodDisruptionBudget") if d["metadata"]["name"].endswith("-mlflow")
    ]
    assert budget["spec"]["maxUnavailable"] == 1
    # The schema is migrated once, before the servers start, by a Job that needs nothing
    # of the release: the database and the MLflow image.
    (upgrade,) = [
        d for d in by_kind(docs, "Job") if d["metadata"]["name"].endswith("-mlflow-db-upgrade")
    ]
    assert upgrade["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    (runs,) = pod_spec(upgrade)["initContainers"]
    (accounts,) = pod_spec(upgrade)["containers"]  # then the accounts' tables
    assert runs["command"] == ["mlflow", "db", "upgrade", "$(MLFLOW_BACKEND_STORE_URI)"]
    assert accounts["command"][:5] == ["python", "-m", "mlflow.server.auth", "db", "upgrade"]
    assert "serviceAccountName" not in pod_spec(upgrade)


def test_a_single_sqlite_mlflow_upgrades_its_own_schema_first(render):
    deployment = named(render(), "Deployment", "-mlflow")
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    init = {c["name"]: c for c in pod_spec(deployment)["initContainers"]}
    assert init["db-upgrade"]["command"] == [
        "mlflow",
        "db",
        "upgrade",
        "sqlite:////mlflow/mlflow.db",
    ]
    assert not [d for d in by_kind(render(), "Job") if "db-upgrade" in d["metadata"]["name"]]


def test_mlflow_backend_from_a_secret(render):
    docs = render(mlflow__backend__existingSecret="mlflow-db")
    env = named(docs, "Deployment", "-mlflow")["spec"]["template"]["spec"]["containers"][0]["env"]
    (backend,) = [e for e in env if e["name"] == "MLFLOW_BACKEND_STORE_URI"]
    assert backend["valueFrom"]["secretKeyRef"] == {"name": "mlflow-db", "key": "backend-store-uri"}


def test_the_chart_spells_tickers_as_every_service_does():
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["properties"]["tickers"]["items"]["pattern"] == TICKER_PATTERN


def test_values_file_documents_every_value():
    """Every value has a comment right above it; a commented key documents its whole block
    (resources, labels); an uncommented one is a heading whose values need their own."""
    lines = (CHART / "values.yaml").read_text().splitlines()
    undocumented, documented_block = [], None
    for number, line in enumerate(lines):
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if documented_block is not None and (
            indent > documented_block or stripped.startswith("- ")
        ):
            continue
        documented_block = None
        if not stripped or stripped.startswith("#"):
            continue
        key, _, value = stripped.partition(":")
        commented = lines[number - 1].strip().startswith("#")
        if value.strip() and not commented:
            undocumented.append(key)
        if commented:
            documented_block = indent
    assert undocumented == []


def test_schema_covers_every_default_value():
    import json

    import yaml

    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.validate(yaml.safe_load((CHART / "values.yaml").read_text()), schema)
    broken = copy.deepcopy(yaml.safe_load((CHART / "values.yaml").read_text()))
    broken["predictor"]["grpcPort"] = "50051"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_a_headless_service_lets_in_cluster_clients_spread_their_calls(render):
    docs = render(predictor__maxConnectionAgeSeconds=120)
    headless = named(docs, "Service", "-predictor-headless")
    plain = named(docs, "Service", "-predictor")
    assert headless["spec"]["clusterIP"] == "None"
    assert headless["spec"]["selector"] == plain["spec"]["selector"]
    assert [p["name"] for p in headless["spec"]["ports"]] == ["grpc"]
    (server,) = pod_spec(named(docs, "Deployment", "-predictor"))["containers"]
    env = env_of(server, docs)
    assert env["PETR4_SERVE_MAX_CONNECTION_AGE_SECONDS"] == "120"
    # What the predictor makes of it: the settings it reads, as the container's env gives them.
    from services.predictor.settings import ServeSettings

    settings = ServeSettings(
        max_connection_age_seconds=env["PETR4_SERVE_MAX_CONNECTION_AGE_SECONDS"]
    )
    assert settings.max_connection_age_seconds == 120.0
