"""What each built image holds, and how it runs."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.containers


def run(docker_client, image: str, *command: str) -> tuple[int, str]:
    container = docker_client.containers.run(
        image, list(command), entrypoint=[], network_mode="none", detach=True
    )
    try:
        code = container.wait(timeout=120)["StatusCode"]
        return code, container.logs().decode()
    finally:
        container.remove(force=True)


@pytest.mark.parametrize("name", ["trainer", "predictor", "mlflow"])
def test_images_run_as_a_non_root_user_without_telemetry(docker_client, images, name):
    config = docker_client.images.get(images[name]).attrs["Config"]
    assert config["User"] == "10001:10001"
    assert "MLFLOW_DISABLE_TELEMETRY=true" in config["Env"]


def test_the_predictor_image_has_no_torch(docker_client, images):
    code, output = run(docker_client, images["predictor"], "python", "-c", "import torch")
    assert code == 1 and "No module named 'torch'" in output
    code, output = run(docker_client, images["predictor"], "pip", "list", "--format=freeze")
    packages = {line.split("==")[0].lower() for line in output.splitlines()}
    assert {"onnxruntime", "grpcio", "mlflow-skinny"} <= packages
    assert not {p for p in packages if p == "torch" or p.startswith("nvidia-")}


def test_the_predictor_image_also_runs_the_receiver_its_schedule_and_the_secrets_maker(
    docker_client, images
):
    code, output = run(
        docker_client,
        images["predictor"],
        "python",
        "-c",
        "import kubernetes, services.retrainer.main",
    )
    assert code == 0, output
    code, output = run(docker_client, images["predictor"], "petr4-retrain", "--help")
    assert code == 0 and "POST /alerts" in output
    code, output = run(docker_client, images["predictor"], "petr4-retrain-scheduled", "--help")
    assert code == 0 and "--poll-seconds" in output
    code, output = run(docker_client, images["predictor"], "petr4-secrets", "--help")
    assert code == 0 and "--spec" in output


def test_the_trainer_image_has_torch_and_computes_on_the_cpu(docker_client, images):
    """torch 2.13.0 as the wheel cache holds it (PyPI's, a CUDA build where that is the only
    one served), computing on the CPU where no GPU is."""
    code, output = run(
        docker_client,
        images["trainer"],
        "python",
        "-c",
        "import torch, lightning; x = torch.ones(3, 3); "
        "print(torch.__version__.split('+')[0], torch.cuda.is_available(), float((x @ x).sum()))",
    )
    assert code == 0, output
    assert output.split()[-3:] == ["2.13.0", "False", "27.0"]


def test_the_mlflow_image_has_the_postgresql_driver(docker_client, images):
    code, output = run(
        docker_client,
        images["mlflow"],
        "python",
        "-c",
        "import psycopg, mlflow; print(mlflow.__version__)",
    )
    assert code == 0, output


def test_a_predictor_only_change_leaves_the_trainer_image_as_it_was(
    docker_client, images, tmp_path
):
    """skaffold tags an image by its inputs: the trainer's must not include the predictor's
    code, or a predictor edit under skaffold dev would rename and rerun the training Job."""
    import shutil
    import subprocess
    import sys

    from tests.helpers import REPO

    context = tmp_path / "context"
    for part in ("pyproject.toml", ".dockerignore", "services", "trainer", "Dockerfile.trainer"):
        source = REPO / part
        if source.is_dir():
            shutil.copytree(source, context / part, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            context.mkdir(exist_ok=True)
            shutil.copy(source, context / part)
    edited = context / "services" / "predictor" / "server.py"
    edited.write_text(edited.read_text() + "\n# a predictor-only edit\n")
    (context / "README.md").write_text("an edited README\n")
    script = str(REPO / "scripts" / "build_images.py")
    built = subprocess.run(
        [sys.executable, script, "trainer", "--tag", "predictor-edit", "--context", str(context)],
        capture_output=True,
        text=True,
        timeout=1800,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr
    try:
        after = docker_client.images.get("petr4-trainer:predictor-edit").id
        assert after == docker_client.images.get(images["trainer"]).id
    finally:
        docker_client.images.remove("petr4-trainer:predictor-edit")
