"""The convert recipe: source -> canonical ONNX -> reference -> every (format, precision) ->
validation -> manifest, built in a staging folder and moved into place only at the end."""

from __future__ import annotations

import dataclasses
import datetime
import os
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from edgepack import __version__, console, outdir, workers
from edgepack.errors import ConversionError, SourceError, SpecError
from edgepack.formats import FORMATS, ConversionJob, TargetFormat
from edgepack.formats.base import RuntimeUnavailable
from edgepack.manifest import MANIFEST_NAME, SCHEMA, artifact_files, write_json_atomic
from edgepack.preprocess import generated_images, list_images, load_image, preprocess, sample_images, seeded_subset
from edgepack.sources import CanonicalModel, load_source
from edgepack.spec import BUILTIN_PREFIX, BuildSpec, read_labels
from edgepack.tools import package_version, sha256_file
from edgepack.validate import metrics, tasks
from edgepack.validate.reference import OnnxRuntimeRunner, run_all
from edgepack.validate.validator import TaskSpec, compare, measure_latency, static_validation, task_outputs, with_static_checks

VALIDATION_SEED = 20261121  # generated validation scenes; calibration uses other seeds
CALIBRATION_SEED = 7
TOOL_PACKAGES = ("torch", "onnx", "onnxruntime", "onnxsim", "pnnx", "ncnn", "mnn", "numpy", "tensorflow-cpu", "keras",
                 "ai-edge-litert", "ai-edge-quantizer", "litert-torch", "flatbuffers", "onnx2torch", "coremltools",
                 "openvino", "nncf", "executorch")


@dataclass(frozen=True)
class PlannedArtifact:
    format: str
    precision: str

    @property
    def id(self) -> str:
        return f"{self.format}-{self.precision}"


def make_plan(spec: BuildSpec, builtin: bool) -> list[PlannedArtifact]:
    """Every (format, precision) to build, checked before any heavy work."""
    targets = spec.targets or {
        name: list(FORMATS.get(name).info.default_precisions) for name in FORMATS if FORMATS.get(name).info.default_enabled
    }
    plan = []
    for name, precisions in targets.items():
        info = FORMATS.get(name).info
        for precision in precisions or info.default_precisions:
            if precision not in info.precisions:
                raise SpecError(f"{name}: precision {precision!r} is not supported (choose from: {', '.join(info.precisions)})")
            if precision in info.calibrated and spec.calibration.images is None and not builtin:
                raise SpecError(f"{name} {precision} needs calibration images", "pass --calib DIR with ~100+ representative images")
            plan.append(PlannedArtifact(name, precision))
    if not plan:
        raise SpecError("nothing to build: no format/precision selected")
    return plan


def is_builtin(spec: BuildSpec) -> bool:
    return spec.model.source is None or spec.model.source.startswith(BUILTIN_PREFIX)


ULTRALYTICS_TASKS = {"detect": "detect", "classify": "classify", "segment": "segment", "pose": "pose"}
COPYLEFT = ("AGPL", "GPL", "LGPL", "CC-BY-SA", "CC BY-SA")


def apply_model_metadata(spec: BuildSpec, model: CanonicalModel) -> BuildSpec:
    """What the exporter recorded in the model (Ultralytics: names, imgsz, task, author, licence)
    fills what the user did not say; the user's flags and config always win."""
    meta = model.metadata
    m = spec.model
    changes: dict[str, Any] = {}
    if m.task is None:
        changes["task"] = ULTRALYTICS_TASKS.get(str(meta.get("task", "")).strip(), "detect")
        if "task" in meta and meta["task"] not in ULTRALYTICS_TASKS:
            console.warn(f"the model says task {meta['task']!r}, which edgepack has no decoder for: validating it as 'detect' outputs (pass --task)")
    for key in ("author", "license", "description", "version"):
        value = meta.get(key)
        if value and (not getattr(m, key) or (key == "version" and m.version == "1.0")):
            changes[key] = str(value).strip()
    license_text = changes.get("license") or m.license
    if license_text and any(word in license_text.upper() for word in COPYLEFT):
        console.warn(f"the model's licence is {license_text}: check its terms before you ship it in an app")
    return dataclasses.replace(spec, model=dataclasses.replace(m, **changes)) if changes else spec


def resolve_labels(spec: BuildSpec, model: CanonicalModel, builtin: bool, task: TaskSpec | None = None) -> list[str]:
    """Labels from the spec (count checked against the task's output), the built-in's, or class_N."""
    m = spec.model
    task = task or TaskSpec.for_model(spec, model.output_names, model.output_shapes, model.input_shape)
    expected = tasks.expected_classes(task)
    if m.labels is not None:
        labels = read_labels(m.labels)
        if expected is not None and len(labels) != expected:
            raise SpecError(
                f"labels file {m.labels} has {len(labels)} names but the model has {expected} classes",
                "give one name per class, one per line",
            )
        return labels
    if model.metadata.get("labels"):
        labels = list(model.metadata["labels"])
        if expected is None or len(labels) == expected:
            console.info(f"labels: {len(labels)} class names from the model's metadata")
            return labels
        console.warn(f"the model's metadata names {len(labels)} classes but the output has {expected}: ignoring them")
    if builtin:
        from edgepack import builtin

        return list(builtin.EXAMPLES[_builtin_name(spec)].labels)
    if expected is None:
        return []
    console.warn(f"no labels file given: naming the {expected} classes class_0..class_{expected - 1} (use --labels)")
    return [f"class_{i}" for i in range(expected)]


def _builtin_name(spec: BuildSpec) -> str:
    source = spec.model.source
    if source is None:
        return "shapes-classifier" if spec.model.task == "classify" else "shapes-detector"
    return source[len(BUILTIN_PREFIX) :]


def _images_to_tensors(images: list[np.ndarray], spec: BuildSpec, shape: tuple[int, ...]) -> np.ndarray:
    return np.stack([preprocess(image, spec.model, shape)[0] for image in images])


def validation_inputs(spec: BuildSpec, model: CanonicalModel) -> tuple[np.ndarray, str]:
    v = spec.validation
    if v.images:
        paths = sample_images(v.images, v.count, seed=VALIDATION_SEED)
        return _images_to_tensors([load_image(p) for p in paths], spec, model.input_shape), f"{v.images} ({len(paths)} images)"
    c = spec.calibration
    if c.images:
        # held back: calibration images the calibration sample does not use
        used = set(sample_images(c.images, c.count, seed=c.seed))
        rest = [p for p in list_images(c.images) if p not in used]
        if len(rest) >= 2:
            picked = seeded_subset(rest, v.count, VALIDATION_SEED)
            tensors = _images_to_tensors([load_image(p) for p in picked], spec, model.input_shape)
            return tensors, f"{len(picked)} images of {c.images} held back from calibration"
        console.warn(f"every image in {c.images} is used for calibration: validating on generated scenes (lower --calib-count to hold some back)")
    images = generated_images(v.count, VALIDATION_SEED, model.image_size)
    return _images_to_tensors(images, spec, model.input_shape), f"generated shapes scenes (seed {VALIDATION_SEED})"


def write_calibration_file(spec: BuildSpec, model: CanonicalModel, path: Path) -> int:
    """The calibration tensors as one float32 .npy (N x 1 x C x H x W) the formats' children load,
    written image by image: at 640, 100 images are 490 MB, and a stacked, cast copy held them
    three times over in the parent. Returns the image count."""
    c = spec.calibration
    if c.images:
        paths = sample_images(c.images, c.count, seed=c.seed)
        if len(paths) < 100:
            console.warn(f"only {len(paths)} calibration images in {c.images}: int8 ranges may be unreliable (100+ recommended)")
        images: Iterator[np.ndarray] = (load_image(p) for p in paths)
        count = len(paths)
    else:  # the built-in example calibrates on its own generated data
        generated = generated_images(min(c.count, 64), CALIBRATION_SEED + c.seed, model.image_size)
        images, count = iter(generated), len(generated)
    partial = path.with_name(path.name + ".partial")
    written, shape = 0, None
    try:
        with open(partial, "wb") as f:
            for i, image in enumerate(images):
                tensor = np.ascontiguousarray(preprocess(image, spec.model, model.input_shape)[0], np.float32)
                if i == 0:
                    shape = tensor.shape
                    header = {"descr": np.lib.format.dtype_to_descr(tensor.dtype), "fortran_order": False, "shape": (count, *shape)}
                    np.lib.format.write_array_header_1_0(f, header)
                if tensor.shape != shape:
                    raise ConversionError(f"calibration image {i} preprocessed to {tensor.shape}, expected {shape}")
                f.write(tensor.tobytes())
                written = i + 1
        if written != count:
            raise ConversionError(f"{written} of {count} calibration images were written")
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return count


def _model_name(spec: BuildSpec, model: CanonicalModel, builtin: bool) -> str:
    if spec.model.name:
        return spec.model.name
    if builtin:
        return _builtin_name(spec)
    stem = Path(model.source.split(":")[-1]).stem
    return "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in stem) or "model"


def _file_suffix(path: Path) -> str:
    """Converters name their files model<suffix> (model.ncnn.param, model.mnn, ...)."""
    return path.name[len("model") :] if path.name.startswith("model") else path.suffix


def _io_record(spec: BuildSpec, model: CanonicalModel, layout: str) -> tuple[list[dict], list[dict]]:
    n, c, h, w = model.input_shape
    shape = [n, c, h, w] if layout == "NCHW" else [n, h, w, c]
    inputs = [{"name": model.input_name, "shape": shape, "dtype": "float32", "layout": layout}]
    outputs = [{"name": name, "shape": list(s), "dtype": "float32"} for name, s in zip(model.output_names, model.output_shapes)]
    return inputs, outputs


class Build:
    """One `edgepack convert` run."""

    def __init__(self, spec: BuildSpec, module: Any = None, example_input: Any = None, command: str | None = None) -> None:
        self.spec = spec
        self.module = module
        self.example_input = example_input
        self.command = command or "edgepack (python API)"
        self.builtin = module is None and is_builtin(spec)
        self.plan = make_plan(spec, self.builtin)
        self.task = TaskSpec(spec.model.task, spec.model.head, spec.validation.score_threshold, spec.validation.iou_threshold)

    def run(self, force: bool = False) -> dict[str, Any]:
        from edgepack.cache import cache_key, reusable_manifest

        out = Path(self.spec.output).resolve()
        key = cache_key(self.spec, TOOL_PACKAGES) if self.module is None else None
        cached = None if force else reusable_manifest(out, key)
        if cached is not None:
            console.info(f"unchanged since the last build (model, config and tool versions hash to the same key): reusing {out}")
            cached["_out"] = str(out)
            return cached
        started = time.perf_counter()
        latency_step = int(self.spec.validation.latency_runs > 0)
        console.begin_run(3 + len(self.plan) + latency_step)
        with outdir.work_folder() as tmp, outdir.locked_output(out) as (staging, previous):
            work = Path(tmp)
            with console.step("Loading", "source model") as s:
                model = load_source(self.spec.model, work, self.module, self.example_input)
                s["note"] = f"{model.source_kind}, input {list(model.input_shape)}, opset {model.opset}"
            self.spec = apply_model_metadata(self.spec, model)
            self.task = TaskSpec.for_model(self.spec, model.output_names, model.output_shapes, model.input_shape)
            labels = resolve_labels(self.spec, model, self.builtin, self.task)
            # after the source and labels: bad input is reported before the converters' slow imports
            for name in {p.format for p in self.plan}:
                FORMATS.get(name)().check_environment()
            self.task = dataclasses.replace(self.task, num_classes=len(labels) or None)
            name = _model_name(self.spec, model, self.builtin)
            with console.step("Preparing", "validation inputs") as s:
                inputs, origin = validation_inputs(self.spec, model)
                s["note"] = f"{len(inputs)} images: {origin}"
            with console.step("Running", "reference (onnxruntime)") as s:
                reference_runner = OnnxRuntimeRunner(model.onnx_path, self.spec.validation.threads)
                reference = run_all(reference_runner, inputs, model.output_names)
                self.task = tasks.check_reference(self.task, reference)  # refuses a head that decodes impossible boxes
                reference_task = task_outputs(self.task, reference)
                source_check = self._check_source_vs_onnx(model, inputs, reference)
                s["note"] = source_check.get("summary", "")
            manifest = self._manifest_header(model, labels, name, origin, source_check)
            manifest["model"].update(self.task.manifest_fields())
            manifest["validation"]["images"] = int(len(inputs))
            self._write_validation_set(staging, model, inputs, reference, tasks.to_json(self.task, reference_task))
            (staging / "labels.txt").write_text("".join(f"{label}\n" for label in labels), encoding="utf-8")
            for entry in self._artifacts(model, labels, name, work, staging, manifest["preprocessing"]):
                manifest["artifacts"].append(entry)
            plan_order = {planned.id: index for index, planned in enumerate(self.plan)}
            manifest["artifacts"].sort(key=lambda e: plan_order[e["id"]])
            latency_started = time.perf_counter()
            self._measure_latency(manifest["artifacts"], staging, inputs[0])
            manifest["latency_seconds"] = round(time.perf_counter() - latency_started, 2)
            if previous is not None and all(e.get("conversion_failed") for e in manifest["artifacts"]):
                # nothing converted: a previous good build is worth more than a manifest of failures
                reasons = "; ".join(f"{e['id']}: {e['validation']['reasons'][0].removeprefix('conversion failed: ')[:200]}"
                                    for e in manifest["artifacts"])
                raise ConversionError(f"nothing could be built ({reasons}); {out} is left as it was",
                                      "run with -vv to see the converters' output")
            shutil.copy(model.onnx_path, staging / "reference" / "model.onnx")
            manifest["build_seconds"] = round(time.perf_counter() - started, 2)
            manifest["cache_key"] = key if not any(e["status"] == "failed" for e in manifest["artifacts"]) else None
            manifest["owned_files"] = outdir.record_owned(staging)
            write_json_atomic(staging / MANIFEST_NAME, manifest)
            publication = outdir.publish(staging, out, previous)
            for rel in publication.kept:
                console.warn(f"kept {out / rel}: changed since edgepack wrote it, so it is yours now")
        manifest["_out"] = str(out)
        return manifest

    def _artifacts(self, model, labels, name, work, staging, preprocessing) -> Iterator[dict[str, Any]]:
        """Every planned artifact, built and validated: one child process per format (edgepack.workers),
        or in this process when the model cannot be handed to a child."""
        payload = {"build": self, "model": model, "labels": labels, "name": name, "work": work, "staging": staging,
                   "preprocessing": preprocessing, "calibration_file": self._calibration_file(model, work)}
        child_payload = {**payload, "model": _model_for_child(model)}
        # a module handed to the Python API stays here: its class may live in the caller's script,
        # which a spawned child would run again to import it
        if self.module is not None or os.environ.get("EDGEPACK_WORKERS") == "0" or not _picklable(child_payload):
            console.add_steps(len(self.plan))  # Converting and Validating, each a step here
            yield from _run_group({**payload, "group": self.plan})
            return
        groups = workers.group_by_format(self.plan)
        count = workers.worker_count(len(groups))
        console.info(f"  building {len(groups)} formats in child processes, {count} at a time")
        built: set[str] = set()
        try:
            for entry in workers.run_groups(
                groups, _run_group, lambda group: {**child_payload, "group": group.artifacts},
                lambda planned, why: self._failed_entry(planned, ConversionError(
                    f"{planned.format}: the conversion process died: {why}", f"run with -vv to see its output, or drop {planned.format} from --formats"),
                    work, staging),
                count,
            ):
                with console.step("Built", entry["id"]) as s:
                    s["note"] = _status_note(entry)
                built.add(entry["id"])
                yield entry
        except workers.ModelNotLoadable as e:
            rest = [p for p in self.plan if p.id not in built]
            console.info(f"  a child process cannot load this model ({e}): building the rest here, one format after the other")
            console.add_steps(len(rest))
            yield from _run_group({**payload, "group": rest})

    def _calibration_file(self, model: CanonicalModel, work: Path) -> Path | None:
        """The calibration tensors, prepared once for every format that calibrates."""
        if not any(p.precision in FORMATS.get(p.format).info.calibrated for p in self.plan):
            return None
        path = work / "calibration.npy"
        console.add_steps(1)
        with console.step("Preparing", "calibration images") as s:
            s["note"] = f"{write_calibration_file(self.spec, model, path)} images"
        return path

    def _artifact(self, planned, model, labels, name, work, staging, calibration, preprocessing, validation) -> dict[str, Any]:
        """Build and validate one artifact; a failure is recorded, unless it is the user's input or a full disk."""
        try:
            entry = self._build_artifact(planned, model, labels, name, work, staging, calibration, preprocessing)
            self._validate_artifact(planned, entry, staging, *validation, labels, name)
        except Exception as e:  # one format failing keeps the others (recorded as failed)
            if outdir.is_output_error(e) or isinstance(e, SpecError):
                raise  # a full disk or the user's own input (calibration images, --int8-skip) stops the build
            entry = self._failed_entry(planned, e, work, staging)
            console.warn(f"{planned.id}: {entry['validation']['reasons'][0]}")
        return entry

    def _measure_latency(self, entries: list[dict[str, Any]], staging: Path, x: np.ndarray) -> None:
        """Host latency in one quiet pass at the end: no conversion runs beside it."""
        runs, threads = self.spec.validation.latency_runs, self.spec.validation.threads
        if runs <= 0:
            return
        measured = 0
        with console.step("Measuring", "host latency") as s:
            for entry in entries:
                if entry["status"] not in ("ok", "degraded") or "cosine" not in entry["validation"]:
                    continue  # failed, or no host runtime executes it
                fmt = FORMATS.get(entry["format"])()
                try:
                    runner = fmt.open_runner(artifact_files(staging, entry), entry, threads)
                    if getattr(runner, "records_latency", True):  # False: a stand-in runtime (Core ML's evaluator)
                        entry["validation"]["latency"] = {**measure_latency(runner, x, runs), "threads": threads}
                        measured += 1
                    getattr(runner, "close", lambda: None)()
                except Exception as e:  # latency is a fact we could not measure, not a failed artifact
                    console.warn(f"{entry['id']}: latency not measured ({type(e).__name__}: {str(e).splitlines()[0][:160] if str(e) else ''})")
            s["note"] = f"{measured} artifacts, {runs} runs each, {threads} threads"

    def _validate_artifact(self, planned, entry, staging, inputs, reference, reference_task, labels, name) -> None:
        fmt = FORMATS.get(planned.format)()
        with console.step("Validating", planned.id) as s:
            files = artifact_files(staging, entry)
            runner, why = None, None
            if fmt.info.numeric_validation:
                try:
                    runner = fmt.open_runner(files, entry, self.spec.validation.threads)
                except RuntimeUnavailable as e:  # e.g. a Core ML op the evaluator lacks
                    why = str(e)
            if runner is None:
                entry["validation"] = static_validation(fmt, files, entry, labels, why)
            else:
                record = compare(  # latency: measured at the end, in one quiet pass
                    runner, inputs, reference, [o["name"] for o in entry["outputs"]], planned.precision, self.task,
                    reference_task, 0, self.spec.validation.threads,
                )
                entry["validation"] = with_static_checks(record, fmt, files, entry, labels)
            entry["status"] = entry["validation"]["status"]
            s["note"] = _status_note(entry)
        for suffix, text in fmt.sidecars(entry).items():
            sidecar = Path(entry["files"][next(iter(entry["files"]))]).parent / f"{name}-{planned.precision}{suffix}"
            (staging / sidecar).write_text(text, encoding="utf-8")
            entry["files"]["sidecar"] = str(sidecar)

    @staticmethod
    def _failed_entry(planned: PlannedArtifact, error: Exception, work: Path, staging: Path) -> dict[str, Any]:
        """The record of a format/precision that could not be built; its converter logs are kept in OUT/logs/."""
        from edgepack.errors import EdgepackError

        if isinstance(error, EdgepackError):
            reason = str(error)
        else:
            first = str(error).strip().splitlines()[0][:300] if str(error).strip() else ""
            reason = f"{type(error).__name__}: {first}" if first else type(error).__name__
        logs = sorted((work / planned.id).glob("**/*.log")) if (work / planned.id).is_dir() else []
        kept = []
        for log in logs:
            dest = staging / "logs" / planned.id / log.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(log, dest)
            kept.append(str(dest.relative_to(staging)))
        # the message may name the log in the work folder, which is gone after the run: name the kept copy
        for path in kept:
            reason = reason.replace(str(work / planned.id / Path(path).name), path)
        return {
            "id": planned.id, "format": planned.format, "precision": planned.precision, "files": {}, "size_bytes": 0,
            "sha256": {}, "status": "failed", "logs": kept, "conversion_failed": True,
            "validation": {"status": "failed", "reasons": [f"conversion failed: {reason}"]},
        }

    def _build_artifact(self, planned, model, labels, name, work, staging, calibration, preprocessing) -> dict[str, Any]:
        fmt: TargetFormat = FORMATS.get(planned.format)()
        job_dir = work / planned.id
        job_dir.mkdir()
        job = ConversionJob(model, planned.precision, job_dir, self.spec, labels, name, calibration, shared_dir=work)
        start = time.perf_counter()
        with console.step("Converting", planned.id) as s:
            converted = fmt.convert(job)
            target_dir = staging / planned.format
            target_dir.mkdir(exist_ok=True)
            files, hashes, size = {}, {}, 0
            for role, path in converted.files.items():
                dest = target_dir / f"{name}-{planned.precision}{_file_suffix(path)}"
                if path.is_dir():
                    shutil.copytree(path, dest)
                    size += sum(f.stat().st_size for f in dest.rglob("*") if f.is_file())
                else:
                    shutil.copy(path, dest)
                    size += dest.stat().st_size
                    hashes[role] = sha256_file(dest)
                files[role] = str(dest.relative_to(staging))
            s["note"] = f"{size / 1e6:.2f} MB"
        for warning in converted.warnings:
            console.warn(f"{planned.id}: {warning}")
        inputs, outputs = _io_record(self.spec, model, converted.layout)
        return {
            "id": planned.id,
            "format": planned.format,
            "precision": planned.precision,
            "files": files,
            "size_bytes": size,
            "sha256": hashes,
            "task": self.spec.model.task,
            "head": self.task.head,
            "inputs": inputs,
            "outputs": outputs,
            "runtime_io": {"input": converted.input_name, "outputs": converted.output_names},
            "preprocessing": {**preprocessing, "layout": converted.layout},
            "labels": "labels.txt",
            planned.format: converted.details,
            "conversion_seconds": round(time.perf_counter() - start, 2),
        }

    def _check_source_vs_onnx(self, model: CanonicalModel, inputs: np.ndarray, reference: list[np.ndarray]) -> dict[str, Any]:
        """When the source is PyTorch (or Keras, checked in the export child), the ONNX export itself
        must not change the answers."""
        if "source_check" in model.cache:
            check = dict(model.cache["source_check"])
            diff = check["keras_vs_onnx_max_abs"]
            if diff > 1e-3:
                raise SourceError(f"the ONNX export changes the Keras model's answers (max-abs {diff:.2e})", "check for layers with training-only behaviour")
            return {**check, "summary": f"keras vs onnx max-abs {diff:.2e}"}
        if model.torch_module is None:
            return {}
        import torch

        with torch.no_grad():
            outs = [model.torch_module(torch.from_numpy(x)) for x in inputs]
        outs = [o if isinstance(o, (list, tuple)) else (o,) for o in outs]
        torch_outputs = [np.stack([o[i].numpy() for o in outs]) for i in range(len(outs[0]))]
        cos = min(metrics.cosine(t, r) for t, r in zip(torch_outputs, reference))
        diff = max(metrics.max_abs(t, r) for t, r in zip(torch_outputs, reference))
        if cos < 0.9999:
            raise SourceError(f"the ONNX export changes the model's answers (cosine {cos:.5f} vs torch)", "check for ops with training-only behaviour")
        return {"torch_vs_onnx_cosine": cos, "torch_vs_onnx_max_abs": diff, "summary": f"torch vs onnx max-abs {diff:.2e}"}

    def _manifest_header(self, model, labels, name, origin, source_check) -> dict[str, Any]:
        m = self.spec.model
        _, c, h, w = model.input_shape
        return {
            "schema": SCHEMA,
            "edgepack_version": __version__,
            "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "command": self.command,
            "model": {
                "name": name,
                "source": model.source,
                "source_kind": model.source_kind,
                "source_sha256": model.source_sha256,
                "task": m.task,
                "head": m.head if m.task == "detect" else None,
                "num_classes": len(labels),
                "labels": labels,
                "labels_file": "labels.txt",
                "onnx_opset": model.opset,
                "description": m.description,
                "version": m.version,
                "author": m.author,
                "license": m.license,
            },
            "preprocessing": {
                "input_shape": list(model.input_shape),
                "resize": m.resize,
                "pad_value": 114 if m.resize == "letterbox" else None,
                "color_order": m.color_order,
                "mean": list(m.mean),
                "std": list(m.std),
                "layout": "NCHW",
                "formula": "x = (pixel[color_order] - mean) / std, pixel in 0..255",
            },
            "postprocessing": {
                "box_format": "cxcywh, model-input pixels" if m.task == "detect" else None,
                "score_threshold": self.spec.validation.score_threshold,
                "iou_threshold": self.spec.validation.iou_threshold,
            },
            "reference": {
                "runtime": "onnxruntime",
                "onnx": "reference/model.onnx",
                **{k: v for k, v in source_check.items() if k != "summary"},
            },
            "validation": {
                "origin": origin,
                "inputs": "validation/inputs.npz",
                "reference_outputs": "validation/reference.npz",
                "reference_task_outputs": "validation/reference_task.json",
                "images": None,
            },
            "tools": {"python": sys.version.split()[0], **{p: package_version(p) for p in TOOL_PACKAGES}},
            "artifacts": [],
        }

    @staticmethod
    def _write_validation_set(staging: Path, model, inputs, reference, reference_task) -> None:
        import json

        (staging / "validation").mkdir()
        (staging / "reference").mkdir()
        np.savez_compressed(staging / "validation" / "inputs.npz", inputs=inputs.astype(np.float32))
        np.savez_compressed(staging / "validation" / "reference.npz", **dict(zip(model.output_names, reference)))
        (staging / "validation" / "reference_task.json").write_text(json.dumps(reference_task))


def _model_for_child(model: CanonicalModel) -> CanonicalModel:
    """The model as a worker process gets it: without this process's converter intermediates
    (model.cache), and for a TorchScript source without its module, which no converter uses
    (they start from its ONNX graph; a ScriptModule does not pickle)."""
    cache = {k: v for k, v in model.cache.items() if k == "source_check"}
    if model.source_kind == "torchscript":
        return dataclasses.replace(model, torch_module=None, cache=cache)
    return dataclasses.replace(model, cache=cache)


def _picklable(payload: dict[str, Any]) -> bool:
    import pickle

    try:
        pickle.dumps(payload)
        return True
    except Exception:  # e.g. a model class defined in a script: it stays in this process
        return False


def _run_group(payload: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """One format's artifacts (in a worker process, or in this one): built, validated, one entry each."""
    build: Build = payload["build"]
    calibration_file = payload["calibration_file"]
    staging = Path(payload["staging"])
    with np.load(staging / "validation" / "inputs.npz") as data:
        inputs = data["inputs"]
    with np.load(staging / "validation" / "reference.npz") as data:
        reference = [data[name] for name in payload["model"].output_names]
    reference_task = task_outputs(build.task, reference)

    def calibration() -> np.ndarray:
        """The calibration tensors mapped from their file (copy-on-write, so consumers may treat
        them as an ordinary array): pages are read as they are used and leave the process with
        the last reference (at 640, 100 images are 490 MB; the int8 check reads only some)."""
        if calibration_file is None:
            raise SpecError("this artifact needs calibration images", "pass --calib DIR")
        return np.load(calibration_file, mmap_mode="c")

    for planned in payload["group"]:
        yield build._artifact(planned, payload["model"], payload["labels"], payload["name"], Path(payload["work"]), staging,
                              calibration, payload["preprocessing"], (inputs, reference, reference_task))


def _status_note(entry: dict[str, Any]) -> str:
    v = entry["validation"]
    if v["status"] == "failed":
        return f"FAILED: {'; '.join(v['reasons'])}"
    if "cosine" not in v:
        return f"{v['status']}: {len(v['static_checks'])} static checks passed"
    note = f"cos {v['cosine']:.6f}"
    if v.get("task_agreement") is not None:
        note += f", {v['task_metric']} {v['task_agreement']:.3f}"
    return note + (f" [{v['status']}: {'; '.join(v['reasons'])}]" if v["status"] != "ok" else "")
