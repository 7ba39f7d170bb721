"""The control plane: its certificates and kubeconfigs, etcd, the API server with its audit
log and its relay to the host's loopback, the controller manager and the scheduler."""

from __future__ import annotations

import sys

import pki
from layout import API_IP, HERE, NODE_IP, NODE_NAME, SERVICE_CIDR, Node, Starter, render, wait

PROCESSES = ("etcd", "kube-apiserver", "relay", "kube-controller-manager", "kube-scheduler")
CLIENTS = (
    pki.Client("admin", "petr4-admin", "system:masters"),
    pki.Client("kube-controller-manager", "system:kube-controller-manager"),
    pki.Client("kube-scheduler", "system:kube-scheduler"),
    pki.Client("kubelet", f"system:node:{NODE_NAME}", "system:nodes"),
    pki.Client("kube-proxy", "system:kube-proxy"),
    pki.Client("apiserver-kubelet-client", "kube-apiserver-kubelet-client", "system:masters"),
)


def make_pki(node: Node, relay_port: int) -> None:
    ca = pki.Authority(node.pki).create(f"petr4-node-{node.name}")
    api_names = [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
        "localhost",
        "127.0.0.1",
        NODE_IP,
        API_IP,
    ]
    ca.sign("apiserver", "/CN=kube-apiserver", "serverAuth", api_names)
    ca.sign("kubelet-serving", f"/CN={NODE_NAME}", "serverAuth", [NODE_NAME, NODE_IP])
    for client in CLIENTS:
        ca.sign(client.stem, client.subject, "clientAuth")
        if client.stem == "admin":  # the host's kubectl and helm, through the relay
            ca.kubeconfig(node.kubeconfig, f"https://127.0.0.1:{relay_port}", client)
        else:
            ca.kubeconfig(node.pki / f"{client.stem}.kubeconfig", f"https://{NODE_IP}:6443", client)
    ca.service_account_keys()


def start(node: Node, starter: Starter, relay_port: int) -> None:
    p, b = node.pki, starter.bin
    starter.start(
        "etcd",
        [
            str(b / "etcd"),
            f"--name={node.name}",
            f"--data-dir={node.state / 'etcd'}",
            "--listen-client-urls=http://127.0.0.1:2379",
            "--advertise-client-urls=http://127.0.0.1:2379",
            "--listen-peer-urls=http://127.0.0.1:2380",
            "--initial-advertise-peer-urls=http://127.0.0.1:2380",
            f"--initial-cluster={node.name}=http://127.0.0.1:2380",
            "--log-level=warn",
        ],
    )
    starter.start(
        "kube-apiserver",
        [
            str(b / "kube-apiserver"),
            f"--advertise-address={NODE_IP}",
            "--secure-port=6443",
            "--etcd-servers=http://127.0.0.1:2379",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={p / 'sa.pub'}",
            f"--service-account-signing-key-file={p / 'sa.key'}",
            f"--client-ca-file={p / 'ca.crt'}",
            f"--tls-cert-file={p / 'apiserver.crt'}",
            f"--tls-private-key-file={p / 'apiserver.key'}",
            f"--kubelet-client-certificate={p / 'apiserver-kubelet-client.crt'}",
            f"--kubelet-client-key={p / 'apiserver-kubelet-client.key'}",
            f"--kubelet-certificate-authority={p / 'ca.crt'}",
            "--kubelet-preferred-address-types=InternalIP",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            "--allow-privileged=true",
            "--profiling=false",
            f"--audit-policy-file={HERE / 'config' / 'audit-policy.yaml'}",
            f"--audit-log-path={node.audit_log}",
            "--audit-log-maxsize=100",
        ],
    )
    relay = [sys.executable, str(HERE / "relay.py"), str(relay_port), str(node.netns)]
    starter.start("relay", [*relay, f"{NODE_IP}:6443"], inside=False)
    ready = ("get", "--raw", "/readyz")
    wait("the API server", lambda: starter.answers(*ready), 120, starter.log("kube-apiserver"))
    kubeconfig = str(p / "kube-controller-manager.kubeconfig")
    starter.start(
        "kube-controller-manager",
        [
            str(b / "kube-controller-manager"),
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            f"--service-account-private-key-file={p / 'sa.key'}",
            f"--root-ca-file={p / 'ca.crt'}",
            f"--cluster-signing-cert-file={p / 'ca.crt'}",
            f"--cluster-signing-key-file={p / 'ca.key'}",
            "--use-service-account-credentials=true",
            "--leader-elect=false",
            "--bind-address=127.0.0.1",
        ],
    )
    config = node.state / "kube-scheduler.yaml"
    config.write_text(render("kube-scheduler.yaml", pki=str(p)))
    starter.start(
        "kube-scheduler",
        [str(b / "kube-scheduler"), f"--config={config}", "--bind-address=127.0.0.1"],
    )
    account = ("get", "serviceaccount", "default", "-n", "default")
    wait(
        "the default ServiceAccount",
        lambda: starter.answers(*account),
        60,
        starter.log("kube-controller-manager"),
    )
