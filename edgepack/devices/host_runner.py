"""The runner contract (see `edgepack.devices.runner`) on the host runtimes: ncnn, MNN and the
LiteRT interpreter through edgepack's own format runners. Used by the device emulator in CI and
usable on a Linux device with Python. Only the `cpu` accelerator exists here (exit 2 otherwise).

Test knobs (environment): EDGEPACK_RUNNER_PERTURB=X adds X to every output value;
EDGEPACK_RUNNER_CRASH=1 aborts; EDGEPACK_RUNNER_SLEEP=S sleeps before running.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from edgepack.devices.runner import CONTRACT_VERSION, EXIT_UNAVAILABLE, RESULT_FILE, parse_shapes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="edgepack-runner")
    for name in ("backend", "model", "input-name", "output-names", "output-shapes", "input-shape", "inputs", "out"):
        p.add_argument(f"--{name}", required=True)
    p.add_argument("--weights")
    p.add_argument("--precision", default="fp16")
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    a = p.parse_args(argv)
    if os.environ.get("EDGEPACK_RUNNER_SLEEP"):
        time.sleep(float(os.environ["EDGEPACK_RUNNER_SLEEP"]))
    if os.environ.get("EDGEPACK_RUNNER_CRASH"):
        os.abort()
    if a.accelerator != "cpu":
        print(f"accelerator {a.accelerator} is not available on this device", file=sys.stderr)
        return EXIT_UNAVAILABLE
    from edgepack.formats import FORMATS

    if a.backend not in ("ncnn", "mnn", "tflite"):
        print(f"backend {a.backend} is not built into this runner", file=sys.stderr)
        return EXIT_UNAVAILABLE
    names = a.output_names.split(",")
    shapes = parse_shapes(a.output_shapes)
    entry = {
        "precision": a.precision,
        "inputs": [{"name": a.input_name}],
        "outputs": [{"name": n, "shape": s} for n, s in zip(names, shapes)],
        "ncnn": {"input_blob": a.input_name, "output_blobs": names},
    }
    files = {"model": Path(a.model)} if a.backend != "ncnn" else {"param": Path(a.model), "bin": Path(a.weights)}
    runner = FORMATS.get(a.backend)().open_runner(files, entry, a.threads)
    shape = [int(v) for v in a.input_shape.split(",")]
    inputs = [np.fromfile(f, dtype="<f4").reshape(shape) for f in a.inputs.split(",")]
    perturb = float(os.environ.get("EDGEPACK_RUNNER_PERTURB", "0"))
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    records = []
    for i, x in enumerate(inputs):
        for j, (name, value) in enumerate(zip(names, runner.run(x))):
            path = out / f"out_{i}_{j}.f32"
            (np.asarray(value, "<f4") + perturb).tofile(path)
            records.append({"input": i, "name": name, "file": path.name, "shape": list(value.shape)})
    for _ in range(a.warmup):
        runner.run(inputs[0])
    latencies = []
    for _ in range(a.iterations):
        start = time.perf_counter()
        runner.run(inputs[0])
        latencies.append((time.perf_counter() - start) * 1000)
    result = {"contract": CONTRACT_VERSION, "runner": "edgepack host runner", "backend": a.backend,
              "accelerator": a.accelerator, "threads": a.threads, "latencies_ms": latencies, "outputs": records}
    (out / RESULT_FILE).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
