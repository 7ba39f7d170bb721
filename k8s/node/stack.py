"""The monitoring stack on a running node: the Prometheus Operator with its own CRDs, the
Prometheus and Alertmanager it runs, and kube-state-metrics, all built here from their
modules (programs.MONITORING), imported into the node's containerd, and applied as the
upstream projects publish them (the CRDs and ClusterRoles, from the modules' own files) and as
config/monitoring.yaml says (everything else). Applying it again changes nothing."""

from __future__ import annotations

import programs
import worker
from layout import Node, NodeError, Starter, render, wait

_OPERATOR = "github.com/prometheus-operator/prometheus-operator"
_KSM = "k8s.io/kube-state-metrics/v2"
# What the modules publish, applied from where Go keeps them.
CRDS = (_OPERATOR, "example/prometheus-operator-crd")
CLUSTER_ROLES = (
    (_OPERATOR, "example/rbac/prometheus-operator/prometheus-operator-cluster-role.yaml"),
    (_OPERATOR, "example/rbac/prometheus/prometheus-cluster-role.yaml"),
    (_KSM, "examples/standard/cluster-role.yaml"),
)


def up(node: Node, starter: Starter, log=print) -> None:
    build = programs.build(programs.MONITORING, log=log)
    for archive in sorted((build / "images").glob("*.tar")):
        with archive.open("rb") as stream:
            worker.import_images(node, starter.bin, stream)
    bundle = programs.MONITORING
    crds = programs.module_dir(bundle, CRDS[0]) / CRDS[1]
    starter.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(crds))
    for module, path in CLUSTER_ROLES:
        starter.kubectl("apply", "-f", str(programs.module_dir(bundle, module) / path))
    starter.kubectl("wait", "--for=condition=Established", "crd", "--all", "--timeout=60s")
    images = {image.program: image.ref for image in bundle.images}
    manifest = render(
        "monitoring.yaml",
        operator_image=images["operator"],
        reloader_image=images["prometheus-config-reloader"],
        prometheus_image=images["prometheus"],
        alertmanager_image=images["alertmanager"],
        kube_state_metrics_image=images["kube-state-metrics"],
    )
    # The operator's custom resources wait for its CRDs to be served; applying twice is safe.
    wait("the monitoring stack's objects", lambda: _applied(starter, manifest), 60)
    for kind, name in (
        ("deployment", "prometheus-operator"),
        ("deployment", "kube-state-metrics"),
        ("statefulset", "prometheus-petr4"),
        ("statefulset", "alertmanager-petr4"),
    ):
        ready = ("-n", "monitoring", "rollout", "status", f"{kind}/{name}", "--timeout=5s")
        wait(f"{kind} {name}", lambda r=ready: starter.answers(*r) is not None, 300)
    log(f"monitoring stack up on node {node.name} (namespace monitoring)")


def _applied(starter: Starter, manifest: str) -> bool:
    try:
        starter.kubectl("apply", "-f", "-", stdin=manifest)
        return True
    except NodeError:
        return False
