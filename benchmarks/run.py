"""The benchmark: prints a Markdown table and writes JSON (benchmarks/results/latest.{md,json}).

For the built-in example detector and a YOLOv8n-sized detector defined in code, per artifact:
conversion wall time, file size and its ratio to the same format's fp32, host latency
median/p90 at 1 and 2 threads, and the task-metric delta: mAP50-95 on 300 generated evaluation
scenes for the example (trained) detector, top-1 on 300 generated crops for the example
classifier; box-F1 agreement with the fp32 reference for the random-weight YOLOv8n-sized one
(mAP means nothing there). Plus the end-to-end
`edgepack convert` wall time for every format and precision, and a second, unchanged run
(content-hash cache, target <= 2 s). Targets are reported, never asserted.

    .venv/bin/python benchmarks/run.py            # or: make benchmark
    .venv/bin/python benchmarks/run.py --models example,classifier --formats ncnn,mnn,tflite --precisions fp32,int8
    # on a busy machine: OMP_WAIT_POLICY=PASSIVE, or ncnn's spinning OpenMP threads dominate the timings
"""

from __future__ import annotations

import argparse
import resource
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ALL_PRECISIONS = "fp32,fp16,int8-weight,int8-dynamic,int8"
# 300 scenes: on 60, one activation scale moving by 0.1 % moved mAP50-95 by 0.8 points
EVAL_SEED, EVAL_IMAGES = 424242, 300


def cli(*args: str, cwd: Path | None = None) -> tuple[float, subprocess.CompletedProcess]:
    env = {**os.environ, "PYTHONPATH": str(HERE) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "edgepack", *args], capture_output=True, text=True, cwd=cwd, env=env)
    elapsed = time.perf_counter() - start
    if result.returncode not in (0, 6):  # 6: some artifact degraded/failed -- that is a result, not a crash
        sys.exit(f"edgepack {' '.join(args)} failed:\n{result.stdout[-2000:]}\n{result.stderr[-2000:]}")
    return elapsed, result


def latency(entry: dict, out: Path, x: np.ndarray, threads: int, runs: int) -> dict[str, float] | None:
    from edgepack.formats import FORMATS
    from edgepack.manifest import artifact_files

    from edgepack.formats.base import RuntimeUnavailable

    fmt = FORMATS.get(entry["format"])()
    if not fmt.info.numeric_validation:
        return None
    from edgepack.validate.validator import measure_latency

    try:
        runner = fmt.open_runner(artifact_files(out, entry), entry, threads)
    except RuntimeUnavailable:
        return None
    if not getattr(runner, "records_latency", True):  # Core ML's numpy evaluator is not a device runtime
        return None
    stats = measure_latency(runner, x, runs, warmup=3)
    return {"median_ms": round(stats["median_ms"], 2), "p90_ms": round(stats["p90_ms"], 2)}


def calibration_facts(entry: dict) -> str:
    """"0.7 s, 64 images" from the artifact's own record of its int8 calibration, or "-"."""
    facts = (entry.get(entry["format"]) or {}).get("calibration") or {}
    if facts.get("seconds") is not None:
        return f"{facts['seconds']} s, {facts['images']} images"
    return f"{facts['images']} images" if facts.get("images") else "-"


def ncnn_forward_floor(out: Path, entry: dict, images: int) -> float:
    """Seconds for the plain fp32 ncnn forward of `images` inputs laid out as the calibration runs
    them (one single-threaded net per core, each on its share): no statistics, no extraction of
    inner blobs -- the floor any ncnn2table-style calibration on this machine stands on."""
    import concurrent.futures

    import ncnn

    from edgepack.formats.ncnn import strict_fp32
    from edgepack.manifest import artifact_files

    files = artifact_files(out, entry)
    _, c, h, w = entry["inputs"][0]["shape"]
    x = np.random.default_rng(0).random((c, h, w), dtype=np.float32)
    workers = os.cpu_count() or 1

    def forward(count: int) -> None:
        net = ncnn.Net()
        strict_fp32(net.opt)
        net.opt.num_threads = 1
        net.load_param(str(files["param"]))
        net.load_model(str(files["bin"]))
        for _ in range(count):
            extractor = net.create_extractor()
            extractor.input(entry["runtime_io"]["input"], ncnn.Mat(x))
            extractor.extract(entry["runtime_io"]["outputs"][0])

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        list(pool.map(forward, [len(range(i, images, workers)) for i in range(workers)]))
    return round(time.perf_counter() - start, 1)


def bench_model(name: str, source: list[str], work: Path, runs: int, dataset: Path | None, selection: list[str]) -> dict:
    out = work / name
    print(f"[{name}] converting ({' '.join(selection)}) ...", file=sys.stderr, flush=True)
    wall, _ = cli("convert", *source, *selection, "-o", str(out), "--force")
    # the largest resident set of any process edgepack ran so far (converter children included)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    record: dict = {"model": name, "convert_all_seconds": round(wall, 1), "selection": " ".join(selection),
                    "peak_rss_mb": round(peak_mb),
                    "latency_pass_seconds": json.loads((out / "manifest.json").read_text()).get("latency_seconds")}
    if dataset is not None:
        print(f"[{name}] task metric on {dataset} ...", file=sys.stderr, flush=True)
        cli("validate", str(out), "--dataset", str(dataset))
    if name == "example":
        print(f"[{name}] second, unchanged run ...", file=sys.stderr, flush=True)
        again, result = cli("convert", *source, *selection, "-o", str(out))
        record["second_run_seconds"] = round(again, 2)
        record["second_run_reused"] = "unchanged since the last build" in result.stdout + result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    x = np.load(out / manifest["validation"]["inputs"])["inputs"][0]
    reference_task = json.loads((out / manifest["validation"]["reference_task_outputs"]).read_text())
    reference_boxes = sum(len(b) for b in reference_task if isinstance(b, list))  # classifiers: one class index per image
    fp32_size = {e["format"]: e["size_bytes"] for e in manifest["artifacts"] if e["precision"] == "fp32"}
    rows = []
    for entry in manifest["artifacts"]:
        print(f"[{name}] latency {entry['id']} ...", file=sys.stderr, flush=True)
        v = entry.get("validation", {})
        metric = entry.get("dataset_metric") or {}
        row = {
            "artifact": entry["id"],
            "status": entry["status"],
            "convert_s": entry["conversion_seconds"],
            "size_mb": round(entry["size_bytes"] / 1e6, 2),
            "size_ratio": round(entry["size_bytes"] / fp32_size[entry["format"]], 2) if entry["format"] in fp32_size else None,
            "latency_1t": latency(entry, out, x, 1, runs),
            "latency_2t": latency(entry, out, x, 2, runs),
            "calibration": calibration_facts(entry),
        }
        facts = (entry.get("ncnn") or {}).get("calibration") or {}
        ncnn_fp32 = next((e for e in manifest["artifacts"] if e["id"] == "ncnn-fp32"), None)
        if entry["format"] == "ncnn" and facts.get("seconds") is not None and ncnn_fp32 is not None:
            floor = ncnn_forward_floor(out, ncnn_fp32, facts["images"])
            row["calibration"] += f" (fp32 forward alone: {floor} s)"
            row["ncnn_forward_floor_seconds"] = floor
        if "map50_95_delta" in metric:
            row["task_delta"] = f"mAP50-95 {metric['map50_95']:.4f} ({metric['map50_95_delta'] * 100:+.2f} pt); mAP50 {metric['map50_delta'] * 100:+.2f} pt"
            row["map50_95_delta_points"] = round(metric["map50_95_delta"] * 100, 2)
        elif "top1_delta" in metric:
            row["task_delta"] = f"top-1 {metric['top1']:.4f} ({metric['top1_delta'] * 100:+.2f} pt)"
            row["top1_delta_points"] = round(metric["top1_delta"] * 100, 2)
        elif "task_agreement" in v:  # random weights: agreement with the reference's own boxes, and cosine
            agreement = "not measurable" if v["task_agreement"] is None else f"{v['task_agreement'] - 1:+.3f}"
            row["task_delta"] = f"box F1 vs fp32 {agreement} ({reference_boxes} boxes); cosine {v['cosine']:.5f}"
        else:
            row["task_delta"] = "not measured here (Core ML)" if entry["format"] == "coreml" else "-"
        rows.append(row)
    record["artifacts"] = rows
    if "dataset" in manifest:
        record["reference"] = manifest["dataset"]["reference"]
        record["dataset_images"] = manifest["dataset"]["images"]
    return record


def markdown(results: list[dict], machine: str) -> str:
    lines = [f"Benchmark of {time.strftime('%Y-%m-%d')} on {machine}.", ""]
    for r in results:
        head = f"**{r['model']}** (`{r['selection'] or 'every format and precision'}`): converted in {r['convert_all_seconds']} s"
        if r.get("latency_pass_seconds") is not None:
            head += f", of which the host-latency pass {r['latency_pass_seconds']} s"
        if r.get("peak_rss_mb"):
            head += f" (peak RSS of any process {r['peak_rss_mb']} MB)"
        if "second_run_seconds" in r:
            head += f"; second, unchanged run {r['second_run_seconds']} s ({'reused' if r['second_run_reused'] else 'NOT reused'})"
        if "reference" in r:
            ref = ", ".join(f"{k} {v:.4f}" for k, v in r["reference"].items())
            head += f"; reference (onnxruntime) on {r['dataset_images']} evaluation images: {ref}"
        lines += [head + ".", "",
                  "| artifact | status | convert s | int8 calibration | size MB (x fp32) | 1 thread median / p90 ms | 2 threads median / p90 ms | task metric delta |",
                  "|---|---|---|---|---|---|---|---|"]
        for a in r["artifacts"]:
            lat = lambda d: f"{d['median_ms']} / {d['p90_ms']}" if d else "-"  # noqa: E731
            ratio = f" ({a['size_ratio']})" if a["size_ratio"] is not None else ""
            lines.append(f"| {a['artifact']} | {a['status']} | {a['convert_s']} | {a.get('calibration', '-')} | {a['size_mb']}{ratio} | {lat(a['latency_1t'])} | {lat(a['latency_2t'])} | {a['task_delta']} |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="example,classifier,yolov8n-sized")
    parser.add_argument("--formats", help="comma list (default: every format)")
    parser.add_argument("--precisions", default=ALL_PRECISIONS)
    parser.add_argument("--eval-images", type=int, default=EVAL_IMAGES)
    parser.add_argument("--latency-runs", type=int, default=30)
    parser.add_argument("--results", default=str(HERE / "results"))
    args = parser.parse_args()
    from edgepack.datasets.shapes import write_classification_set, write_detection_set

    selection = ["--precisions", args.precisions] + (["--formats", args.formats] if args.formats else [])
    machine = f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_implementation()} {platform.python_version()}"
    load_before = os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory(prefix="edgepack-bench-") as tmp:
        work = Path(tmp)
        for name in args.models.split(","):
            if name == "example":
                dataset = write_detection_set(work / "eval", args.eval_images, seed=EVAL_SEED)
                results.append(bench_model("example", [], work, args.latency_runs, dataset, selection))
            elif name == "classifier":
                crops = write_classification_set(work / "eval-crops", args.eval_images, seed=EVAL_SEED)
                source = ["builtin:shapes-classifier", "--task", "classify"]
                results.append(bench_model("classifier", source, work, args.latency_runs, crops, selection))
            elif name == "yolov8n-sized":
                # 100 calibration images: the size of issue 14's ncnn calibration-time target
                calib = write_detection_set(work / "calib", 100, seed=7, size=(480, 640)) / "images"
                source = ["models:yolov8n_sized", "--task", "detect", "--calib", str(calib), "--calib-count", "100"]
                results.append(bench_model("yolov8n-sized", source, work, args.latency_runs, None, selection))
            else:
                sys.exit(f"unknown model {name!r} (choose from: example, classifier, yolov8n-sized)")
            write_results(Path(args.results), machine, results)  # after each model: a later crash loses nothing
    load_after = os.getloadavg()
    machine += f"; load average {load_before[0]:.1f} at the start, {load_after[0]:.1f} at the end (other jobs share the machine)"
    if os.environ.get("OMP_WAIT_POLICY"):
        machine += f"; OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}"
    print(write_results(Path(args.results), machine, results))


def write_results(folder: Path, machine: str, results: list[dict]) -> str:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "latest.json").write_text(json.dumps({"machine": machine, "date": time.strftime("%Y-%m-%d"), "results": results}, indent=1))
    text = markdown(results, machine)
    (folder / "latest.md").write_text(text)
    return text


if __name__ == "__main__":
    main()
