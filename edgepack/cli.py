"""The `edgepack` command. Each command parses flags, calls the SDK, renders the result; `main`
is the only place that turns errors into one line and an exit code."""

from __future__ import annotations

import shlex
import sys
import traceback
from pathlib import Path

import click

from edgepack import __version__, console
from edgepack.errors import EdgepackError, SpecError, ValidationError
from edgepack.spec import COLOR_ORDERS, HEADS, RESIZE_MODES, TASKS


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="edgepack")
@click.option("-v", "--verbose", count=True, help="-v: show every external command; -vv: and its output.")
@click.option("--debug", is_flag=True, help="Print the full traceback on errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, debug: bool) -> None:
    """Turn a trained vision model into validated mobile artifacts, starter apps and device tests."""
    console.setup_logging(verbose)
    ctx.obj = {"debug": debug}


def _spec_options(f):
    options = [
        click.option("-c", "--config", type=click.Path(dir_okay=False), help="edgepack.yaml (flags override it)."),
        click.option("--task", type=click.Choice(list(TASKS)), help="Model task: what the outputs mean (default: the model's metadata, else detect)."),
        click.option("--head", type=click.Choice(list(HEADS)), help="Output layout of the task (default: the task's first)."),
        click.option("--task-output", help="Name of the output the task decodes (default: the one whose shape fits)."),
        click.option("--mean", help="Per-channel mean in 0..255 pixel units, e.g. 123.675,116.28,103.53."),
        click.option("--std", help="Per-channel std in 0..255 pixel units, e.g. 58.395,57.12,57.375 (default 255,255,255)."),
        click.option("--color-order", type=click.Choice(list(COLOR_ORDERS)), help="Channel order the model expects."),
        click.option("--resize", type=click.Choice(list(RESIZE_MODES)), help="letterbox (keep aspect, pad) or stretch."),
        click.option("--name", help="Artifact base name (default: the model file's name)."),
        click.option("--description", help="Model description for the metadata."),
        click.option("--model-version", help="Model version for the metadata."),
        click.option("--author", help="Model author for the metadata."),
        click.option("--license", help="Model licence for the metadata."),
        click.option("--val-images", type=click.Path(), help="Folder of held-back images to validate on."),
        click.option("--val-count", type=click.IntRange(1), help="How many validation images (default 8)."),
        click.option("--score-threshold", type=click.FloatRange(0, 1), help="Detection score threshold (default 0.25)."),
        click.option("--iou-threshold", type=click.FloatRange(0, 1), help="NMS IoU threshold (default 0.45)."),
        click.option("--no-latency", is_flag=True, help="Skip the host latency runs of validation."),
        click.option("--formats", help="Comma list of formats (ncnn,mnn,...). Default: all available."),
        click.option("--precisions", help="Comma list: fp32,fp16,int8-weight,int8-dynamic,int8."),
        click.option("--input-shape", help="1,C,H,W: needed for dynamic ONNX inputs and TorchScript."),
        click.option("--labels", type=click.Path(), help="Text file, one class name per line."),
        click.option("--calib", type=click.Path(), help="Folder of calibration images (int8)."),
        click.option("--calib-count", type=int, help="How many calibration images to use (default 200)."),
        click.option("--calib-method", type=click.Choice(["minmax", "percentile", "kl"]),
                     help="Activation ranges for int8: minmax (default), percentile (99.99) or kl (ncnn; MNN: KL)."),
        click.option("--int8-skip", help="Comma list of layer names to keep in float in int8 models."),
        click.option("--int8-io", type=click.Choice(["int8", "float"]), help="TFLite full int8: int8 (default) or float input/output."),
        click.option("--explain", is_flag=True, help="Print which layers lose most when quantized (int8)."),
        click.option("-o", "--output", help="Output folder (default edgepack-out)."),
        click.option("--strict", is_flag=True, help="Treat degraded artifacts as errors."),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def _load(config, **overrides):
    from edgepack.spec import load_spec

    return load_spec(config, overrides)


def _convert(spec, force: bool = False) -> dict:
    """Run the conversion recorded with the command line that asked for it, and report it."""
    from edgepack.pipeline import Build

    command = "edgepack " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    manifest = Build(spec, command=command).run(force=force)
    _finish(manifest, manifest["_out"], spec.validation.strict)
    return manifest


def _finish(manifest: dict, out: str, strict: bool) -> None:
    from edgepack.report import print_sensitivity, print_summary

    print_summary(manifest, out)
    print_sensitivity(manifest)
    failed = [e["id"] for e in manifest["artifacts"] if e.get("status") == "failed"]
    degraded = [e["id"] for e in manifest["artifacts"] if e.get("status") == "degraded"]
    not_built = [e for e in manifest["artifacts"] if e.get("conversion_failed")]
    if not_built:
        from edgepack.errors import ConversionError

        kept = len(manifest["artifacts"]) - len(not_built)
        logs = sorted({str(Path(log).parent) for e in not_built for log in e.get("logs", [])})
        reasons = "; ".join(f"{e['id']}: {e['validation']['reasons'][0].removeprefix('conversion failed: ')[:200]}" for e in not_built)
        raise ConversionError(
            f"{len(not_built)} artifact(s) could not be built ({reasons}); {kept} other artifact(s) kept in {out}"
            + (f"; converter logs in {', '.join(f'{out}/{d}' for d in logs)}" if logs else "")
        )
    if failed:
        raise ValidationError(f"{len(failed)} artifact(s) failed validation: {', '.join(failed)} (report in {out}/manifest.json)")
    if strict and degraded:
        raise ValidationError(f"--strict: {len(degraded)} artifact(s) degraded: {', '.join(degraded)}")


@cli.command()
@click.argument("model", required=False)
@click.option("--force", is_flag=True, help="Convert even when OUT holds a build from the same model, config and tools.")
@_spec_options
def convert(model, force, config, **spec_flags) -> None:
    """Convert MODEL (.onnx, .keras/.h5, TorchScript .pt, package.module:factory; none: the built-in
    example) to every requested format and precision, validate each on its host runtime, write
    OUT/manifest.json. An unchanged rerun reuses OUT (content-hash cache)."""
    manifest = _convert(_load(config, model=model, **spec_flags), force=force)
    command = next_build_command(manifest)
    console.info(f"outputs in {manifest['_out']}" + (f"  (next: {command})" if command else ""))


def next_build_command(manifest: dict) -> str | None:
    """The command that generates app projects from this output folder, runnable as printed:
    only the platforms that have an artifact to bundle."""
    from edgepack.validate.tasks import app_support

    if not app_support(manifest["model"]["task"], manifest["model"].get("head"))[0]:
        return None
    built = {e["format"] for e in manifest["artifacts"] if e.get("status") not in ("failed", None)}
    targets = [t for t, formats in (("android", {"ncnn", "mnn", "tflite"}), ("ios", {"coreml"})) if built & formats]
    if not targets:
        return None
    return "edgepack build " + " ".join(f"--target {t}" for t in targets) + f" -o {shlex.quote(manifest['_out'])}"


@cli.command()
@click.argument("model", required=False)
@click.option("--target", "targets", multiple=True, required=True, help="App platform to generate: android, ios (repeatable).")
@click.option("--app-name", help="Display name of the app (default: app.name in the config).")
@click.option("--package", help="Android application id and iOS bundle id (default: app.package).")
@click.option("--reconvert", is_flag=True, help="Convert again even when OUT already has a manifest.")
@_spec_options
def build(model, targets, app_name, package, reconvert, config, **spec_flags) -> None:
    """Convert (unless OUT already holds a conversion) and generate starter app projects in OUT/<target>/."""
    from edgepack.apps import APPS, generate_apps, report
    from edgepack.manifest import MANIFEST_NAME, load_manifest

    for target in targets:
        APPS.get(target)  # an unknown platform fails before any conversion work
    spec = _load(config, model=model, **spec_flags)
    out = Path(spec.output).resolve()
    if reconvert or model or config or not (out / MANIFEST_NAME).is_file():
        _convert(spec, force=reconvert)
    else:
        console.info(f"using the existing conversion in {out} (--reconvert to redo it)")
    manifest = load_manifest(out)
    from edgepack.validate.tasks import app_support

    supported, why = app_support(manifest["model"]["task"], manifest["model"].get("head"))
    if not supported:
        raise SpecError(why, f"the artifacts in {out} are converted and validated; use them in your own app")
    console.info(why)
    options = {"name": app_name or spec.app.name, "package": package or spec.app.package}
    with console.step("Generating", f"{', '.join(targets)} project{'s' if len(targets) > 1 else ''}"):
        results = generate_apps(list(dict.fromkeys(targets)), manifest, out, options)  # all rendered before any is written
    report(results)
    for target in dict.fromkeys(targets):
        console.info(f"open {out / target} in {'Android Studio' if target == 'android' else 'Xcode'}; see its README.md")


@cli.command()
@click.argument("out", type=click.Path())
@click.option("--strict", is_flag=True, help="Treat degraded artifacts as errors.")
@click.option("--dataset", type=click.Path(), help="Labelled images (YOLO txt or class folders): adds mAP / top-1 per artifact.")
def validate(out, strict, dataset) -> None:
    """Run every artifact in OUT again on its host runtime and update the manifest."""
    from edgepack.validate.rerun import revalidate

    manifest = revalidate(out, dataset=dataset)
    _finish(manifest, out, strict)


@cli.command()
@click.argument("target", type=click.Path())
@click.option("--json", "as_json", is_flag=True, help="Print JSON on stdout instead of text.")
def inspect(target, as_json) -> None:
    """Print inputs/outputs, precision, size and metadata of an artifact or an output folder."""
    from edgepack.inspect import inspect_path

    inspect_path(Path(target), as_json=as_json)


@cli.command("device-test")
@click.argument("out", type=click.Path())
@click.option("--serial", help="Device serial (see `adb devices`); required when several are connected.")
@click.option("--all-devices", is_flag=True, help="Run on every connected device, in parallel.")
@click.option("--backends", help="Comma list of ncnn,mnn,tflite (default: every one in the manifest).")
@click.option("--accelerators", default="cpu", show_default=True, help="Comma list of cpu,vulkan,opencl,gpu,nnapi.")
@click.option("--iterations", type=click.IntRange(1), default=20, show_default=True, help="Timed runs per backend.")
@click.option("--warmup", type=click.IntRange(0), default=3, show_default=True, help="Untimed runs first.")
@click.option("--threads", type=click.IntRange(1), default=2, show_default=True)
@click.option("--timeout", type=float, default=120.0, show_default=True, help="Seconds per backend run.")
@click.option("--runner", type=click.Path(), help="The device runner executable (built from OUT/android/app/src/main/cpp/runner).")
@click.option("--adb", "adb_path", type=click.Path(), help="adb executable (default: PATH, then $ANDROID_HOME/platform-tools).")
@click.option("--report", "report_dir", type=click.Path(), help="Where to write report.json, junit.xml, report.html (default OUT/device-report).")
def device_test(out, serial, all_devices, backends, accelerators, iterations, warmup, threads, timeout, runner, adb_path, report_dir) -> None:
    """Run OUT's artifacts on a phone through adb, compare with the host reference, report latency."""
    from edgepack.devices.adb import Adb, find_adb
    from edgepack.devices.device_test import Options, run_device_test
    from edgepack.devices.ndk import resolve_runner
    from edgepack.report import print_device_report
    from edgepack.spec import parse_list

    if serial and all_devices:
        raise SpecError("--serial and --all-devices exclude each other", "pass one of them")
    adb = Adb(find_adb(adb_path))
    options = Options(
        backends=parse_list(backends), accelerators=parse_list(accelerators) or ["cpu"], iterations=iterations,
        warmup=warmup, threads=threads, timeout=timeout, runner=resolve_runner(runner, Path(out)),
    )
    report = run_device_test(out, adb, serial, all_devices, options, report_dir)
    print_device_report(report)
    failed = [f"{c['device']} {c['backend']}/{c['accelerator']}" for c in report["cases"] if c["status"] == "failed"]
    if failed:
        raise ValidationError(f"{len(failed)} device run(s) failed: {', '.join(failed)} (report in {report['_dir']})")
    console.info(f"reports in {report['_dir']}: report.json, junit.xml, report.html")


@cli.command()
@click.option("-o", "--output", default="edgepack.yaml", show_default=True, help="Where to write the config.")
@click.option("--force", is_flag=True, help="Overwrite an existing file.")
def init(output, force) -> None:
    """Write a commented edgepack.yaml to start from."""
    from edgepack.config_template import CONFIG_TEMPLATE

    path = Path(output)
    if path.exists() and not force:
        raise SpecError(f"{path} already exists", "pass --force to overwrite it")
    path.write_text(CONFIG_TEMPLATE)
    console.info(f"wrote {path}: edit it, then run `edgepack convert -c {path}`")


def _quiet_converter_logs() -> None:
    """TensorFlow/absl INFO lines would drown the progress; -vv still shows converter output in the log."""
    import os

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    os.environ.setdefault("GLOG_minloglevel", "2")
    os.environ.setdefault("ABSL_MIN_LOG_LEVEL", "2")


def main(argv: list[str] | None = None) -> int:
    from edgepack.stopping import Terminated, stop_signals_raise

    _quiet_converter_logs()
    try:
        with stop_signals_raise():
            cli.main(args=argv, prog_name="edgepack", standalone_mode=False)
        return 0
    except EdgepackError as e:
        if "--debug" in (argv if argv is not None else sys.argv):
            traceback.print_exc()
        console.console.print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
        return e.exit_code
    except click.exceptions.Abort:
        # click turns a KeyboardInterrupt into Abort; one that a signal caused leaves
        # stop_signals_raise as the stop's own exception (below), so this is click's own abort
        console.console.print("aborted")
        return 130
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except KeyboardInterrupt as e:
        console.console.print("terminated" if isinstance(e, Terminated) else "aborted")
        return 143 if isinstance(e, Terminated) else 130
    except Exception as e:  # a bug or an unexpected tool failure: still one line, unless --debug
        from edgepack.outdir import is_output_error, output_error

        if is_output_error(e):  # a full disk, a read-only or busy folder: name the path (exit 9)
            error = output_error(e, "")
            console.console.print(f"error: {error}", markup=False, highlight=False, soft_wrap=True)
            return error.exit_code
        if "--debug" in (argv if argv is not None else sys.argv):
            traceback.print_exc()
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        console.console.print(f"error: {type(e).__name__}: {first} (run with --debug for the traceback)", markup=False, soft_wrap=True)
        return 1


def entry_point() -> None:
    sys.exit(main())
