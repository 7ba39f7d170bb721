"""The served model folder: the best network as ONNX, refused unless onnxruntime agrees with
torch, beside each ticker's scaler."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from services.core.forecaster import INPUT_NAME, MODEL_FILE, OUTPUT_NAME, write_scalers
from services.core.windows import Scaler
from trainer.errors import ExportError
from trainer.network import LSTMFactory

log = logging.getLogger(__name__)

PARITY_TOLERANCE = 1e-5


def export_onnx(net: LSTMFactory, sample: np.ndarray, path: Path) -> float:
    """Write ``net`` to ``path`` and return the largest difference from torch on ``sample``.

    ``sample`` should be real windows (validation or test): parity is checked where the
    model will actually be used. Raises ``ExportError`` beyond ``PARITY_TOLERANCE``.
    """
    net = net.eval()
    example = torch.from_numpy(sample[:2])
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of dynamo, which takes ~6 s
        # longer per export and gives the same graph for an LSTM.
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (example,),
            str(path),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
            opset_version=17,
            dynamo=False,
        )
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    with torch.no_grad():
        expected = net(torch.from_numpy(sample)).numpy()
    got = session.run([OUTPUT_NAME], {INPUT_NAME: sample})[0]
    difference = float(np.max(np.abs(expected - got)))
    if not difference <= PARITY_TOLERANCE:
        path.unlink(missing_ok=True)
        raise ExportError(
            f"ONNX output differs from torch by {difference:.2e} > {PARITY_TOLERANCE:.0e}"
        )
    log.info(
        "ONNX export checked on %d windows: max |onnx - torch| = %.2e", len(sample), difference
    )
    return difference


def write_served_model(
    folder: Path, net: LSTMFactory, sample: np.ndarray, scalers: dict[str, Scaler]
) -> float:
    """model.onnx (checked against torch on ``sample``) and scalers.json into ``folder``; the
    model card, which needs the served model's test metrics, is written once they are known.
    Returns the largest ONNX-against-torch difference."""
    folder.mkdir(parents=True, exist_ok=True)
    parity = export_onnx(net, sample, folder / MODEL_FILE)
    write_scalers(folder, scalers)
    return parity
