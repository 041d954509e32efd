"""`edgepack device-test OUT`: run the converted artifacts on a phone through adb and compare
them with the host reference.

Steps per device: facts (one `getprop`, free space, thermal status), push artifacts + golden
inputs + runner to /data/local/tmp/edgepack/<run-id>/, run each backend/accelerator with a
timeout, pull result.json and raw outputs, compare with the reference outputs of the manifest,
compute latency statistics from the raw per-iteration times, remove the run folder.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgepack import console
from edgepack.devices.adb import ANDROID_TMP, Adb, AdbTimeout, Device, quote
from edgepack.devices.runner import EXIT_UNAVAILABLE, RESULT_FILE, runner_abi, shape_text
from edgepack.errors import DeviceError
from edgepack.manifest import SAFE_NAME, load_manifest
from edgepack.validate import metrics
from edgepack.validate.validator import COSINE_FLOOR, TASK_FLOOR, TaskSpec, measure_agreement, task_outputs

DEVICE_BACKENDS = ("ncnn", "mnn", "tflite")
GOLDEN_INPUTS = 8  # the validation set: the task agreement needs objects on at least 3 images
THERMAL_STATES = {0: "none", 1: "light", 2: "moderate", 3: "severe", 4: "critical", 5: "emergency", 6: "shutdown"}


@dataclass
class Options:
    backends: list[str] | None = None
    accelerators: list[str] = field(default_factory=lambda: ["cpu"])
    iterations: int = 20
    warmup: int = 3
    threads: int = 2
    timeout: float = 120.0
    runner: Path | None = None


@dataclass
class CaseResult:
    device: str
    backend: str
    accelerator: str
    artifact: str
    status: str  # passed | failed | skipped
    message: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)
    latency: dict[str, float] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    seconds: float = 0.0


def choose_devices(adb: Adb, serial: str | None, all_devices: bool) -> list[Device]:
    devices = adb.devices()
    ready = [d for d in devices if d.state == "device"]
    if serial:
        match = [d for d in devices if d.serial == serial]
        if not match:
            listed = ", ".join(d.serial for d in devices) or "none"
            raise DeviceError(f"device {serial} is not connected (connected: {listed})", "check `adb devices`")
        if match[0].state != "device":
            raise DeviceError(f"device {serial} is {match[0].state}", "unlock it and accept the USB debugging prompt")
        return match
    if not ready:
        others = ", ".join(f"{d.serial} ({d.state})" for d in devices)
        raise DeviceError("no device connected" + (f" in the 'device' state: {others}" if others else ""),
                          "plug in a phone with USB debugging on, then check `adb devices`")
    if len(ready) > 1 and not all_devices:
        raise DeviceError(f"{len(ready)} devices connected ({', '.join(d.serial for d in ready)})",
                          "pick one with --serial SERIAL, or use --all-devices")
    return ready


def device_facts(adb: Adb, serial: str) -> dict[str, Any]:
    props = adb.getprop(serial)
    free = adb.shell(serial, f"df -k {ANDROID_TMP}", timeout=30)
    free_kb = None
    for line in free.stdout.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 4 and parts[3].isdigit():
            free_kb = int(parts[3])
    thermal = props.get("thermal.status") or props.get("sys.thermal.status")
    return {
        "serial": serial,
        "model": props.get("ro.product.model", "?"),
        "manufacturer": props.get("ro.product.manufacturer", "?"),
        "soc": props.get("ro.soc.model") or props.get("ro.board.platform") or props.get("ro.hardware", "?"),
        "abi": props.get("ro.product.cpu.abi", "?"),
        "abilist": [a for a in props.get("ro.product.cpu.abilist", props.get("ro.product.cpu.abi", "")).split(",") if a],
        "sdk": int(props.get("ro.build.version.sdk", "0") or 0),
        "release": props.get("ro.build.version.release", "?"),
        "free_kb": free_kb,
        "thermal_status": THERMAL_STATES.get(int(thermal), thermal) if thermal and thermal.isdigit() else "unknown",
    }


def pick_device_artifacts(manifest: dict[str, Any], backends: list[str] | None) -> dict[str, dict[str, Any]]:
    from edgepack.apps.android import pick_artifacts

    chosen = {k: v for k, v in pick_artifacts(manifest).items() if k in DEVICE_BACKENDS}
    if backends is None:
        if not chosen:
            raise DeviceError("the manifest has no ncnn, mnn or tflite artifact", "convert with --formats ncnn,mnn,tflite")
        return chosen
    missing = [b for b in backends if b not in chosen]
    if missing:
        raise DeviceError(f"no passing {', '.join(missing)} artifact in the manifest (has: {', '.join(chosen) or 'none'})",
                          "convert that format first, or drop it from --backends")
    return {b: chosen[b] for b in backends}


class DeviceRun:
    """One device: push once, run every backend/accelerator, clean up."""

    def __init__(self, adb: Adb, device: Device, out: Path, manifest: dict[str, Any], artifacts: dict[str, dict[str, Any]],
                 options: Options, work: Path) -> None:
        self.adb, self.serial, self.out, self.manifest = adb, device.serial, out, manifest
        self.artifacts, self.options, self.work = artifacts, options, work
        self.run_id = time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6]
        self.remote = f"{ANDROID_TMP}/edgepack/{self.run_id}"
        self.facts: dict[str, Any] = {}
        self.shell_v2 = True

    def execute(self) -> tuple[dict[str, Any], list[CaseResult]]:
        self.shell_v2 = "shell_v2" in self.adb.features(self.serial)
        with console.step("Reading", f"{self.serial} facts") as s:
            self.facts = device_facts(self.adb, self.serial)
            s["note"] = f"{self.facts['manufacturer']} {self.facts['model']}, {self.facts['soc']}, {self.facts['abi']}, SDK {self.facts['sdk']}, thermal {self.facts['thermal_status']}"
        if self.facts["thermal_status"] not in ("none", "unknown", "light"):
            console.warn(f"{self.serial} is thermally throttled ({self.facts['thermal_status']}): latencies will be high")
        runner = self.options.runner
        abi = runner_abi(runner)
        if abi is not None and abi not in self.facts["abilist"]:
            raise DeviceError(f"runner {runner.name} is built for {abi}, device {self.serial} supports {', '.join(self.facts['abilist'])}",
                              f"build the runner for {self.facts['abi']} (CMake -DANDROID_ABI={self.facts['abi']})")
        inputs = self._golden_inputs()
        libraries = runner_libraries(runner)
        payload = [runner] + libraries + inputs + [self.out / p for a in self.artifacts.values() for r, p in a["files"].items() if r in ("model", "param", "bin")]
        need_kb = sum(p.stat().st_size for p in payload) // 1024 + 1
        if self.facts["free_kb"] is not None and self.facts["free_kb"] < need_kb * 2:
            raise DeviceError(f"not enough space on {self.serial}: {self.facts['free_kb']} KB free in {ANDROID_TMP}, {need_kb} KB needed (x2 for outputs)",
                              "free space on the device")
        results: list[CaseResult] = []
        try:
            with console.step("Pushing", f"{len(payload)} files to {self.serial}:{self.remote}") as s:
                self._shell_checked(f"mkdir -p {self.remote}/models {self.remote}/inputs")
                for path in inputs:
                    self.adb.push(self.serial, path, f"{self.remote}/inputs/{path.name}")
                for backend, entry in self.artifacts.items():
                    for role, rel in entry["files"].items():
                        if role in ("model", "param", "bin"):
                            self.adb.push(self.serial, self.out / rel, f"{self.remote}/models/{Path(rel).name}")
                self.adb.push(self.serial, runner, f"{self.remote}/edgepack-runner")
                for library in libraries:  # e.g. libMNN.so, libMNN_CL.so of an NDK-built runner
                    self.adb.push(self.serial, library, f"{self.remote}/{library.name}")
                self._shell_checked(f"chmod 755 {self.remote}/edgepack-runner")
                s["note"] = f"{need_kb} KB"
            for backend, entry in self.artifacts.items():
                for accelerator in self.options.accelerators:
                    results.append(self._run_case(backend, accelerator, entry, len(inputs)))
        finally:
            if self.adb.state(self.serial) == "device":
                self.adb.shell(self.serial, f"rm -rf {self.remote}", timeout=60, shell_v2=self.shell_v2)
        return self.facts, results

    def _golden_inputs(self) -> list[Path]:
        x = np.load(self.out / self.manifest["validation"]["inputs"])["inputs"][:GOLDEN_INPUTS]
        paths = []
        for i, tensor in enumerate(x):
            path = self.work / f"input_{i}.f32"
            np.asarray(tensor, "<f4").tofile(path)
            paths.append(path)
        return paths

    def _shell_checked(self, command: str) -> str:
        result = self._shell(command, 60)
        if result.exit_code != 0:
            raise DeviceError(f"{command.split()[0]} on {self.serial} failed: {(result.stderr or result.stdout).strip()}")
        return result.stdout

    def _shell(self, command: str, timeout: float):
        try:
            return self.adb.shell(self.serial, command, timeout=timeout, shell_v2=self.shell_v2)
        finally:
            state = self.adb.state(self.serial)
            if state != "device":
                raise DeviceError(f"device {self.serial} went {state} during the run", "reconnect it and run again")

    def _run_case(self, backend: str, accelerator: str, entry: dict[str, Any], n_inputs: int) -> CaseResult:
        case = CaseResult(self.serial, backend, accelerator, entry["id"], "failed")
        start = time.perf_counter()
        outdir = f"{self.remote}/out-{backend}-{accelerator}"
        files = {r: f"{self.remote}/models/{Path(p).name}" for r, p in entry["files"].items() if r in ("model", "param", "bin")}
        pre = self.manifest["preprocessing"]
        argv = [
            f"{self.remote}/edgepack-runner", "--backend", backend, "--accelerator", accelerator,
            "--model", files.get("param", files.get("model")), "--precision", entry["precision"],
            "--input-name", (entry.get("ncnn") or {}).get("input_blob", entry["inputs"][0]["name"]),
            "--output-names", ",".join((entry.get("ncnn") or {}).get("output_blobs") or [o["name"] for o in entry["outputs"]]),
            "--output-shapes", shape_text([o["shape"] for o in entry["outputs"]]),
            "--input-shape", ",".join(str(d) for d in pre["input_shape"]),
            "--inputs", ",".join(f"{self.remote}/inputs/input_{i}.f32" for i in range(n_inputs)),
            "--threads", str(self.options.threads), "--iterations", str(self.options.iterations),
            "--warmup", str(self.options.warmup), "--out", outdir,
        ]
        if "bin" in files:
            argv += ["--weights", files["bin"]]
        with console.step("Running", f"{backend}/{accelerator} on {self.serial}") as s:
            try:
                result = self._shell(f"cd {self.remote} && LD_LIBRARY_PATH={self.remote} {quote(argv)}", self.options.timeout)
            except AdbTimeout:
                # only this run's runner (its path holds the run id)
                self.adb.shell(self.serial, f"pkill -f {self.remote}/edgepack-runner", timeout=20, shell_v2=self.shell_v2)
                case.message = f"runner timed out after {self.options.timeout:.0f} s"
                s["note"] = case.message
                case.seconds = time.perf_counter() - start
                return case
            if result.exit_code == EXIT_UNAVAILABLE:
                case.status, case.message = "skipped", f"unavailable on this device: {result.stderr.strip()}"
            elif result.exit_code != 0:
                detail = (result.stderr.strip().splitlines() or [""])[-1]
                kind = f"crashed (signal {result.exit_code - 128})" if result.exit_code > 128 else f"exited {result.exit_code}"
                case.message = f"runner {kind}" + (f": {detail}" if detail else "")
            else:
                self._collect(case, entry, outdir)
            s["note"] = case.status + (f": {case.message}" if case.message else "")
        case.seconds = time.perf_counter() - start
        return case

    def _collect(self, case: CaseResult, entry: dict[str, Any], outdir: str) -> None:
        local = self.work / f"{case.backend}-{case.accelerator}"
        local.mkdir()
        self.adb.pull(self.serial, f"{outdir}/{RESULT_FILE}", local / RESULT_FILE)
        try:  # written by a program on the device: data to check, never paths to trust
            result = checked_result(json.loads((local / RESULT_FILE).read_text(encoding="utf-8")))
        except (ValueError, UnicodeDecodeError) as e:
            case.status, case.message = "failed", f"runner {RESULT_FILE}: {e}"
            return
        names = [o["name"] for o in entry["outputs"]]
        got: list[list[np.ndarray]] = [[] for _ in names]
        for record in sorted(result["outputs"], key=lambda r: r["input"]):
            index = names.index(record["name"]) if record["name"] in names else 0  # runners name blobs their own way
            self.adb.pull(self.serial, f"{outdir}/{record['file']}", local / record["file"])
            got[index].append(np.fromfile(local / record["file"], dtype="<f4").reshape(entry["outputs"][index]["shape"]))
        case.latencies_ms = result["latencies_ms"]
        case.latency = latency_stats(case.latencies_ms)
        case.metrics, problems = compare_with_reference(self.out, self.manifest, entry, [np.stack(g) for g in got])
        case.status = "failed" if problems else "passed"
        case.message = "; ".join(problems)


def checked_result(result: Any) -> dict[str, Any]:
    """A runner's result.json, checked field by field: output files must be plain names (they are
    pulled into a host folder), inputs whole numbers, latencies finite numbers."""
    if not isinstance(result, dict) or not isinstance(result.get("outputs"), list) or not isinstance(result.get("latencies_ms"), list):
        raise ValueError("expected an object with 'outputs' and 'latencies_ms' lists")
    outputs = []
    for record in result["outputs"]:
        if not isinstance(record, dict):
            raise ValueError("an 'outputs' entry is not an object")
        name, file, index = record.get("name"), record.get("file"), record.get("input")
        if not isinstance(file, str) or not SAFE_NAME.match(file):
            raise ValueError(f"output file {file!r} is not a plain file name")
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise ValueError(f"output {file!r}: input {index!r} is not a whole number")
        outputs.append({"name": str(name), "file": file, "input": index})
    latencies = result["latencies_ms"]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0 for v in latencies):
        raise ValueError("latencies_ms must be finite non-negative numbers")
    return {**result, "outputs": outputs, "latencies_ms": [float(v) for v in latencies]}


def runner_libraries(runner: Path) -> list[Path]:
    """Shared libraries next to the runner that it links (their names are in its dynamic string
    table): an NDK-built runner with MNN needs libMNN.so and the GPU backends beside it."""
    data = runner.read_bytes()
    return sorted(p for p in runner.parent.glob("lib*.so") if p.is_file() and p.name.encode() + b"\0" in data)


def latency_stats(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    a = np.asarray(values, dtype=np.float64)
    return {"min_ms": round(float(a.min()), 3), "median_ms": round(float(np.median(a)), 3),
            "p90_ms": round(float(np.percentile(a, 90)), 3), "p99_ms": round(float(np.percentile(a, 99)), 3),
            "iterations": len(values)}


def compare_with_reference(out: Path, manifest: dict[str, Any], entry: dict[str, Any], outputs: list[np.ndarray]) -> tuple[dict[str, Any], list[str]]:
    """Device outputs vs the host reference on the same golden inputs: cosine and max-abs per
    output, plus the task metric; floors as in validation (they leave room for last-bit
    differences between CPUs, never for wrong answers)."""
    with np.load(out / manifest["validation"]["reference_outputs"]) as ref:
        reference = [ref[o["name"]][: len(outputs[0])] for o in entry["outputs"]]
    precision = entry["precision"]
    record: dict[str, Any] = {"outputs": []}
    problems = []
    for o, got, want in zip(entry["outputs"], outputs, reference):
        cos, diff = metrics.cosine(got, want), metrics.max_abs(got, want)
        record["outputs"].append({"name": o["name"], "cosine": cos, "max_abs": diff})
        if not np.all(np.isfinite(got)):
            problems.append(f"output {o['name']} has NaN/inf")
        elif cos < COSINE_FLOOR[precision]:
            problems.append(f"output {o['name']}: cosine {cos:.6f} < {COSINE_FLOOR[precision]} (max-abs {diff:.3g}) vs host reference")
    task = TaskSpec.for_manifest(manifest)
    agreement = measure_agreement(task, task_outputs(task, reference), task_outputs(task, outputs))
    if agreement.measurable:
        record["task_metric"], record["task_agreement"] = agreement.metric, round(agreement.value, 4)
        if agreement.value < TASK_FLOOR[precision]:
            problems.append(f"{agreement.metric} {agreement.value:.3f} < {TASK_FLOOR[precision]} vs host reference")
    elif agreement.note:
        record["task_note"] = agreement.note  # the report says why there is no task number
    record["cosine"] = min(o["cosine"] for o in record["outputs"])
    return record, problems


def run_device_test(out_dir: str | Path, adb: Adb, serial: str | None, all_devices: bool, options: Options,
                    report_dir: str | Path | None) -> dict[str, Any]:
    from edgepack.devices.report import write_reports

    out = Path(out_dir)
    manifest = load_manifest(out)
    artifacts = pick_device_artifacts(manifest, options.backends)
    if options.runner is None or not options.runner.is_file():
        raise DeviceError("no device runner" + (f": {options.runner} does not exist" if options.runner else ""),
                          "pass --runner PATH (built from OUT/android/app/src/main/cpp/runner) or set ANDROID_NDK_HOME to build it")
    devices = choose_devices(adb, serial, all_devices)
    started = time.strftime("%Y-%m-%dT%H:%M:%S")
    with tempfile.TemporaryDirectory(prefix="edgepack-device-") as tmp:
        def one(device: Device):
            work = Path(tmp) / device.serial.replace(":", "_")
            work.mkdir()
            return DeviceRun(adb, device, out, manifest, artifacts, options, work).execute()

        if len(devices) == 1:
            runs = [one(devices[0])]
        else:
            with ThreadPoolExecutor(max_workers=len(devices)) as pool:
                runs = list(pool.map(one, devices))
    report = {
        "schema": "edgepack.device-report/1",
        "started": started,
        "output": str(out),
        "model": manifest["model"]["name"],
        "options": {"iterations": options.iterations, "warmup": options.warmup, "threads": options.threads,
                    "timeout_s": options.timeout, "accelerators": options.accelerators},
        "devices": [facts for facts, _ in runs],
        "cases": [case.__dict__ for _, cases in runs for case in cases],
    }
    target = Path(report_dir) if report_dir else out / "device-report"
    write_reports(report, target)
    report["_dir"] = str(target)
    return report
