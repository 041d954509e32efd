"""NCNN .param/.bin through pnnx; validated with the ncnn Python binding."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.errors import ConversionError
from edgepack.formats.base import (
    FORMATS,
    ConversionJob,
    ConvertedModel,
    FormatInfo,
    HostRunner,
    TargetFormat,
    fit_shape,
    require_modules,
)
from edgepack.tools import run_tool


def read_param_layers(param_path: Path) -> list[tuple[str, str]]:
    """(type, name) of every layer in an ncnn text param file."""
    lines = param_path.read_text().splitlines()
    if not lines or lines[0].strip() != "7767517":
        raise ConversionError(f"ncnn: {param_path.name} is not an ncnn param file (bad magic)")
    layers = []
    for line in lines[2:]:
        parts = line.split()
        if len(parts) >= 2:
            layers.append((parts[0], parts[1]))
    return layers


def check_layers_supported(param_path: Path) -> None:
    """pnnx writes ops it cannot map to ncnn under their pnnx names; ncnn would then fail to
    load the model on the phone. Name the first such op here instead."""
    import ncnn

    for layer_type, name in read_param_layers(param_path):
        if ncnn.layer_to_index(layer_type) < 0:
            raise ConversionError(
                f"ncnn: unsupported op {layer_type} at node '{name}' (pnnx has no ncnn layer for it)",
                "replace that operation in the model, or drop ncnn from --formats",
            )


def _output_index(blob: str) -> int:
    """pnnx names the graph outputs out0, out1, ... in the source's output order, while
    `Net.output_names()` lists them in layer order: the number is what matches them by name."""
    suffix = blob[3:] if blob.startswith("out") else ""
    if not suffix.isdigit():
        raise ConversionError(f"ncnn: output blob {blob!r} is not named outN by pnnx", "report this model to edgepack")
    return int(suffix)


def strict_fp32(opt: Any) -> None:
    """ncnn's defaults on x86 with F16C keep weights and arithmetic in fp16: fp32 validation
    must switch that off, or fp32 and fp16 artifacts cannot be told apart."""
    opt.use_fp16_storage = False
    opt.use_fp16_packed = False
    opt.use_fp16_arithmetic = False
    opt.use_bf16_storage = False


class NcnnRunner:
    def __init__(self, param: Path, bin_path: Path, entry: dict[str, Any], threads: int) -> None:
        import ncnn

        self.net = ncnn.Net()
        self.net.opt.num_threads = threads
        if entry["precision"] == "fp32":
            strict_fp32(self.net.opt)
        if self.net.load_param(str(param)) != 0 or self.net.load_model(str(bin_path)) != 0:
            raise ConversionError(f"ncnn: cannot load {param.name}/{bin_path.name}")
        self.input_name = entry["ncnn"]["input_blob"]
        self.output_blobs = entry["ncnn"]["output_blobs"]
        self.output_shapes = [o["shape"] for o in entry["outputs"]]

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        import ncnn

        data = np.ascontiguousarray(x[0], dtype=np.float32)  # ncnn blobs have no batch dimension
        ex = self.net.create_extractor()
        ex.input(self.input_name, ncnn.Mat(data))
        outputs = []
        for blob, shape in zip(self.output_blobs, self.output_shapes):
            ret, mat = ex.extract(blob)
            if ret != 0:
                raise ConversionError(f"ncnn: extracting blob {blob} failed ({ret})")
            outputs.append(fit_shape(np.array(mat), shape))
        return outputs


@FORMATS.register("ncnn")
class NcnnFormat(TargetFormat):
    info = FormatInfo(
        name="ncnn",
        title="NCNN",
        precisions=("fp32", "fp16", "int8"),
        default_precisions=("fp32", "fp16"),
        calibrated=("int8",),
        runtime="ncnn",
        platforms=("android",),
    )

    def check_environment(self) -> None:
        require_modules("ncnn", {"ncnn": "ncnn", "pnnx": "pnnx"})

    def convert(self, job: ConversionJob) -> ConvertedModel:
        import pnnx

        model = job.model
        # pnnx reads TorchScript best (module structure, fewer ops); ONNX otherwise
        if model.torchscript_path is not None:
            source = job.workdir / "model.pt"
            shutil.copy(model.torchscript_path, source)
        else:
            source = job.workdir / "model.onnx"
            shutil.copy(model.onnx_path, source)
        shape = ",".join(str(d) for d in model.input_shape)
        fp16 = 1 if job.precision == "fp16" else 0
        run_tool(
            "ncnn",
            [pnnx.EXEC_PATH, source.name, f"inputshape=[{shape}]", f"fp16={fp16}"],
            cwd=job.workdir,
            log_file=job.workdir / "pnnx.log",
        )
        param, bin_path = job.workdir / "model.ncnn.param", job.workdir / "model.ncnn.bin"
        if not param.is_file() or not bin_path.is_file():
            raise ConversionError(f"ncnn: pnnx wrote no model.ncnn.param/.bin (see {job.workdir / 'pnnx.log'})")
        check_layers_supported(param)
        input_blob, output_blobs = self._blob_names(param)
        if len(output_blobs) != len(model.output_names):
            raise ConversionError(f"ncnn: model has {len(output_blobs)} outputs, the source has {len(model.output_names)}")
        files = {"param": param, "bin": bin_path}
        details = {"input_blob": input_blob, "output_blobs": output_blobs}
        if job.precision == "int8":
            from edgepack.quantize import ncnn_int8

            files, quant_details = ncnn_int8.quantize(job, param, bin_path, input_blob, output_blobs)
            details.update(quant_details)
        return ConvertedModel(files=files, input_name=input_blob, output_names=output_blobs, details=details)

    @staticmethod
    def _blob_names(param: Path) -> tuple[str, list[str]]:
        import ncnn

        net = ncnn.Net()
        net.load_param(str(param))
        inputs, outputs = list(net.input_names()), list(net.output_names())
        if len(inputs) != 1:
            raise ConversionError(f"ncnn: expected one input blob, found {inputs}")
        return inputs[0], sorted(outputs, key=_output_index)

    def open_runner(self, files: dict[str, Path], entry: dict[str, Any], threads: int) -> HostRunner:
        return NcnnRunner(files["param"], files["bin"], entry, threads)

    def sidecars(self, entry: dict[str, Any]) -> dict[str, str]:
        """ncnn's files carry no metadata: the app reads blob names and preprocessing from here."""
        keys = ("task", "head", "precision", "inputs", "outputs", "preprocessing", "labels", "ncnn")
        return {".ncnn.json": json.dumps({k: entry.get(k) for k in keys}, indent=2)}

    def describe(self, files: dict[str, Path]) -> dict[str, Any]:
        layers = read_param_layers(files["param"])
        counts: dict[str, int] = {}
        for layer_type, _ in layers:
            counts[layer_type] = counts.get(layer_type, 0) + 1
        int8_layers = sum(1 for line in files["param"].read_text().splitlines() if " 8=" in f" {line}")
        return {"layers": len(layers), "layer_types": counts, "int8_layers": int8_layers}

