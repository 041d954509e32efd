"""Keras models (.keras, .h5): loaded by Keras 3 with its PyTorch backend in a child interpreter
and exported to ONNX there, so every target format starts from the same canonical graph.

Why the torch backend: with it a Keras model *is* a torch module, so the export is PyTorch's own
ONNX exporter (no tf2onnx, whose protobuf pin clashes with this environment), and the child
compares Keras' own outputs with the exported graph before anything else happens. Keras images
are NHWC; the exported graph takes NCHW like every other source (a transpose at the input).
A TensorFlow SavedModel folder is not a Keras model file: re-save it with `model.save("m.keras")`.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from edgepack.errors import SourceError
from edgepack.sources.base import CanonicalModel
from edgepack.spec import ModelSpec
from edgepack.tools import sha256_file

KERAS_SUFFIXES = (".keras", ".h5", ".hdf5")
log = logging.getLogger(__name__)

EXPORT_SNIPPET = r'''
import json, sys
import numpy as np
import keras, torch
source, onnx_path, report_path, shape_arg = sys.argv[1:5]
report = {}
try:
    model = keras.saving.load_model(source, compile=False)
except Exception as e:
    report["error"] = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}"
    json.dump(report, open(report_path, "w")); sys.exit(0)
if not isinstance(model, keras.Model):
    report["error"] = f"the file holds a {type(model).__name__}, not a Keras model"
    json.dump(report, open(report_path, "w")); sys.exit(0)
shape = model.inputs[0].shape  # (None, H, W, C)
if shape_arg:
    _, c, h, w = (int(v) for v in shape_arg.split(","))
else:
    _, h, w, c = shape
if None in (h, w, c):
    report["error"] = f"input shape {tuple(shape)} is dynamic"
    json.dump(report, open(report_path, "w")); sys.exit(0)

class ChannelsFirst(torch.nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net
    def forward(self, x):
        return self.net(x.permute(0, 2, 3, 1))

wrapper = ChannelsFirst(model).eval()
probe = torch.from_numpy(np.random.default_rng(0).random((1, c, h, w), dtype=np.float32))
with torch.no_grad():
    keras_out = np.asarray(model.predict(probe.permute(0, 2, 3, 1).numpy(), verbose=0))
    try:  # the TorchScript-based exporter is fast and honours the opset ...
        torch.onnx.export(wrapper, (probe,), onnx_path, dynamo=False, opset_version=17,
                          input_names=["image"], output_names=["output"])
        report["exporter"] = "torchscript"
    except Exception as e:  # ... but cannot trace some Keras layers (shape arithmetic in residual
        # blocks of Keras 2 models): torch.export-based exporter then, which traces them
        print(f"TorchScript-based export failed ({type(e).__name__}: {str(e)[:300]}); using torch.export", flush=True)
        torch.onnx.export(wrapper, (probe,), onnx_path, dynamo=True, opset_version=17,
                          input_names=["image"], output_names=["output"])
        report["exporter"] = "torch.export"
import onnxruntime as ort
session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
onnx_out = session.run(None, {"image": probe.numpy()})[0]
report.update(input_shape=[1, c, h, w], keras_vs_onnx_max_abs=float(np.abs(onnx_out - keras_out).max()),
              keras_version=keras.__version__, layers=len(model.layers))
json.dump(report, open(report_path, "w"))
'''


def from_keras_file(path: Path, spec: ModelSpec, workdir: Path) -> CanonicalModel:
    import onnx

    from edgepack.sources.onnx_source import canonicalize

    if path.is_dir():
        raise SourceError(f"{path} is a folder (a TensorFlow SavedModel?), not a Keras model file",
                          'load it in Keras and save it as a .keras file: model.save("model.keras")')
    if not path.is_file():
        raise SourceError(f"model file {path} does not exist", "check the path")
    onnx_path, report_path = workdir / "keras-export.onnx", workdir / "keras-export.json"
    shape = ",".join(str(v) for v in spec.input_shape) if spec.input_shape else ""
    env = {**os.environ, "KERAS_BACKEND": "torch", "TF_CPP_MIN_LOG_LEVEL": "3"}
    proc = subprocess.run([sys.executable, "-c", EXPORT_SNIPPET, str(path.resolve()), str(onnx_path), str(report_path), shape],
                          capture_output=True, text=True, env=env, cwd=workdir, timeout=900)
    log.debug("Keras export of %s:\n%s", path, proc.stdout + proc.stderr)
    report = json.loads(report_path.read_text()) if report_path.is_file() else {}
    if "error" in report:
        raise SourceError(f"cannot load {path} as a Keras model: {report['error']}", "give a model saved with model.save('m.keras') or .h5")
    if proc.returncode != 0 or not onnx_path.is_file():
        lines = [line.strip() for line in proc.stderr.strip().splitlines() if line.strip()]
        reason = next((line for line in reversed(lines) if "Error" in line), lines[-1] if lines else f"exit {proc.returncode}")
        raise SourceError(f"Keras -> ONNX export of {path} failed: {reason[:300]}", "run with -vv to see the exporter's whole output")
    canonical = canonicalize(onnx.load(str(onnx_path)), spec, workdir, source=str(path), kind="keras", source_sha256=sha256_file(path))
    canonical.notes.append(f"keras {report['keras_version']} (torch backend) -> ONNX: max-abs {report['keras_vs_onnx_max_abs']:.2e} vs Keras")
    canonical.cache["source_check"] = {"keras_vs_onnx_max_abs": report["keras_vs_onnx_max_abs"]}
    return canonical
