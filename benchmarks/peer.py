"""edgepack side by side with a peer exporter (issue 16): Ultralytics, in its own environment.

The same YOLOv8n (Ultralytics builds it from its yolov8n.yaml with seeded random weights: no
download), exported to ONNX at opset 17 by Ultralytics once; then, alternating, in fresh processes:

- peer: Ultralytics exporting ncnn, MNN, TFLite (LiteRT) and Core ML in fp32 and fp16 in one
  process (seven artifacts: its LiteRT export has no fp16; nothing validated);
- edgepack: `edgepack convert` of that ONNX to the same four formats in fp32 and fp16, every
  artifact validated against ONNX Runtime, host latency measured (the default);
- edgepack --no-latency: the same, validated, without the end-of-run host-latency pass (the
  like-for-like row: the peer measures no latency either).

Per side: the median wall time over the rounds and the peak RSS of any process of the run; the
ratio edgepack / peer. Without the peer environment the benchmark says so and measures edgepack
alone. Create it with `make peer-env` (benchmarks/peer-requirements.txt, in ~/.cache/edgepack/peer).

    .venv/bin/python benchmarks/peer.py [--imgsz 640] [--rounds 2] [--peer-python PATH]

Timings are reported, never asserted (README, "Benchmarks").
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PEER = "ultralytics==8.4.190"
DEFAULT_PEER_PYTHON = Path.home() / ".cache" / "edgepack" / "peer" / "ultralytics-8.4.190" / "bin" / "python"
FORMATS = "ncnn,mnn,tflite,coreml"
# Ultralytics' format names for edgepack's four, with its `quantize` (16: fp16, where it offers it)
PEER_EXPORTS = [("ncnn", None), ("ncnn", 16), ("mnn", None), ("mnn", 16), ("litert", None), ("coreml", None), ("coreml", 16)]
# never let the peer install packages or reach the network on its own (its AutoUpdate, settings sync)
PEER_ENV = {"YOLO_AUTOINSTALL": "false", "YOLO_OFFLINE": "true", "YOLO_VERBOSE": "false"}
SIDES = ("peer", "edgepack", "edgepack --no-latency")

PEER_PREPARE = r"""
import sys, torch
from ultralytics import YOLO
torch.manual_seed(0)
model = YOLO("yolov8n.yaml")
model.save(sys.argv[1])
onnx = YOLO(sys.argv[1]).export(format="onnx", imgsz=int(sys.argv[2]), opset=17, simplify=True)
print(onnx)
"""

PEER_EXPORT = r"""
import json, sys, time
from ultralytics import YOLO
weights, imgsz, exports = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
made = []
for fmt, quantize in exports:
    start = time.perf_counter()
    try:
        path = YOLO(weights).export(format=fmt, imgsz=imgsz, quantize=quantize)
        made.append({"format": fmt, "quantize": quantize, "seconds": round(time.perf_counter() - start, 2), "path": str(path)})
    except Exception as e:  # a format the peer cannot make here is a result, reported in the table
        made.append({"format": fmt, "quantize": quantize, "seconds": round(time.perf_counter() - start, 2), "error": str(e).splitlines()[0][:200]})
print("PEER-RESULT " + json.dumps(made))
"""


def timed(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, float, subprocess.CompletedProcess]:
    """Wall seconds, peak RSS in MB of any process of the run (os.wait4 reports the child's and
    its waited-for descendants' maximum), and the finished process."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        process = subprocess.Popen(command, cwd=cwd, env={**os.environ, **(env or {})}, stdout=out, stderr=err, text=True)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.perf_counter() - start
        out.seek(0), err.seek(0)
        result = subprocess.CompletedProcess(command, process.returncode, out.read(), err.read())
    return elapsed, usage.ru_maxrss / 1024, result


def require(result: subprocess.CompletedProcess, what: str) -> None:
    if result.returncode not in (0, 6):  # edgepack's 6: an artifact degraded -- a result, not a crash
        sys.exit(f"{what} failed (exit {result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}")


def peer_available(python: Path) -> str | None:
    """None when the peer can run, else why not (one line)."""
    if not python.exists():
        return f"no peer environment at {python.parent.parent} (create it with: make peer-env)"
    check = subprocess.run([str(python), "-c", "import ultralytics; print(ultralytics.__version__)"], capture_output=True, text=True)
    # the last line: Ultralytics' first import in a fresh environment prints that it created its settings file
    if check.returncode != 0 or check.stdout.strip().splitlines()[-1:] != [PEER.split("==")[1]]:
        return f"the environment at {python.parent.parent} has no {PEER} (recreate it with: make peer-env)"
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--peer-python", type=Path, default=DEFAULT_PEER_PYTHON)
    parser.add_argument("--results", type=Path, default=HERE / "results")
    args = parser.parse_args()
    missing = peer_available(args.peer_python)
    if missing:
        print(f"peer skipped: {missing}; there is no same-weights YOLOv8n to compare without it", file=sys.stderr)
        sys.exit(0)
    with tempfile.TemporaryDirectory(prefix="edgepack-peer-") as tmp:
        work = Path(tmp)
        _, _, prepared = timed([str(args.peer_python), "-c", PEER_PREPARE, "yolov8n-random.pt", str(args.imgsz)], work, PEER_ENV)
        require(prepared, "Ultralytics' ONNX export")
        onnx = work / "yolov8n-random.onnx"
        labels = work / "labels.txt"
        labels.write_text("".join(f"class{i}\n" for i in range(80)))
        runs: dict[str, list[dict]] = {side: [] for side in SIDES}
        for round_ in range(args.rounds):
            for side in SIDES:
                folder = work / f"{side.replace(' ', '')}-{round_}"
                folder.mkdir()
                print(f"[round {round_ + 1}/{args.rounds}] {side} ...", file=sys.stderr, flush=True)
                if side == "peer":
                    (folder / "yolov8n-random.pt").write_bytes((work / "yolov8n-random.pt").read_bytes())
                    seconds, rss, result = timed([str(args.peer_python), "-c", PEER_EXPORT, "yolov8n-random.pt", str(args.imgsz),
                                                  json.dumps(PEER_EXPORTS)], folder, PEER_ENV)
                    require(result, "Ultralytics' export")
                    made = json.loads(result.stdout.split("PEER-RESULT ", 1)[1].splitlines()[0])
                    runs[side].append({"seconds": seconds, "peak_rss_mb": rss, "exports": made})
                else:
                    seconds, rss, result = timed([sys.executable, "-m", "edgepack", "convert", str(onnx), "--task", "detect", "--labels", str(labels),
                                                  "--formats", FORMATS, "--precisions", "fp32,fp16", "-o", str(folder / "out"),
                                                  *(["--no-latency"] if side == "edgepack --no-latency" else [])], folder)
                    require(result, "edgepack convert")
                    manifest = json.loads((folder / "out" / "manifest.json").read_text())
                    made = [{"id": e["id"], "status": e["status"], "conversion_seconds": e.get("conversion_seconds")} for e in manifest["artifacts"]]
                    runs[side].append({"seconds": seconds, "peak_rss_mb": rss, "artifacts": made})
                print(f"  {seconds:.1f} s, peak RSS {rss:.0f} MB", file=sys.stderr, flush=True)
    summary = summarise(runs, args.imgsz)
    args.results.mkdir(parents=True, exist_ok=True)
    (args.results / "peer.json").write_text(json.dumps({"date": time.strftime("%Y-%m-%d"), "imgsz": args.imgsz, "peer": PEER,
                                                        "load_average": os.getloadavg()[0], "runs": runs}, indent=1))
    (args.results / "peer.md").write_text(summary)
    print(summary)


def summarise(runs: dict[str, list[dict]], imgsz: int) -> str:
    def median(side: str) -> float:
        return statistics.median(r["seconds"] for r in runs[side])

    def peak(side: str) -> float:
        return max(r["peak_rss_mb"] for r in runs[side])

    peer_made = [e for e in runs["peer"][0]["exports"] if "error" not in e]
    peer_failed = [f"{e['format']} quantize={e['quantize']}: {e['error']}" for e in runs["peer"][0]["exports"] if "error" in e]
    lines = [
        f"Peer benchmark of {time.strftime('%Y-%m-%d')}: YOLOv8n (random weights) at {imgsz}, {len(runs['peer'])} alternating rounds, "
        f"load average {os.getloadavg()[0]:.1f} at the end.",
        "",
        "| run | artifacts | median wall s | x peer | peak RSS MB (any process) |",
        "|---|---|---|---|---|",
        f"| {PEER}, one process, ncnn/MNN/LiteRT/Core ML fp32+fp16 | {len(peer_made)} made, not validated | {median('peer'):.1f} | 1.00 | {peak('peer'):.0f} |",
    ]
    for side, what in (("edgepack", "validated, host latency measured"), ("edgepack --no-latency", "validated")):
        command = "edgepack convert" + side.removeprefix("edgepack")
        artifacts = runs[side][0]["artifacts"]
        ok = sum(1 for a in artifacts if a["status"] == "ok")
        lines.append(f"| `{command}` (its ONNX), the same formats fp32+fp16 | {len(artifacts)} made, {ok} ok, {what} | "
                     f"{median(side):.1f} | {median(side) / median('peer'):.2f} | {peak(side):.0f} |")
    lines += ["", "Every round (s): " + "; ".join(
        ", ".join(f"{side} {runs[side][i]['seconds']:.1f}" for side in SIDES) for i in range(len(runs["peer"]))) + "."]
    if peer_failed:
        lines.append("Peer exports that failed here: " + "; ".join(peer_failed) + ".")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
