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
        click.option("--task", type=click.Choice(["detect", "classify"]), help="Model task."),
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
    console.info(f"outputs in {manifest['_out']}  (next: edgepack build --target android {manifest['_out']})")


@cli.command()
@click.argument("model", required=False)
@click.option("--target", "targets", multiple=True, required=True, help="App platform to generate: android, ios (repeatable).")
@click.option("--app-name", help="Display name of the app (default: app.name in the config).")
@click.option("--package", help="Android application id and iOS bundle id (default: app.package).")
@click.option("--reconvert", is_flag=True, help="Convert again even when OUT already has a manifest.")
@_spec_options
def build(model, targets, app_name, package, reconvert, config, **spec_flags) -> None:
    """Convert (unless OUT already holds a conversion) and generate starter app projects in OUT/<target>/."""
    from edgepack.apps import APPS, render_app
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
    options = {"name": app_name or spec.app.name, "package": package or spec.app.package}
    for target in targets:
        with console.step("Generating", f"{target} project") as s:
            project = render_app(target, manifest, out, options)
            s["note"] = str(project)
    for target in targets:
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
def inspect(target) -> None:
    """Print inputs/outputs, precision, size and metadata of an artifact or an output folder."""
    from edgepack.inspect import inspect_path

    inspect_path(Path(target))


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


def main(argv: list[str] | None = None) -> int:
    try:
        cli.main(args=argv, prog_name="edgepack", standalone_mode=False)
        return 0
    except EdgepackError as e:
        if "--debug" in (argv if argv is not None else sys.argv):
            traceback.print_exc()
        console.console.print(f"error: {e}", markup=False, highlight=False, soft_wrap=True)
        return e.exit_code
    except click.exceptions.Abort:
        console.console.print("aborted")
        return 130
    except click.ClickException as e:
        e.show()
        return e.exit_code
    except KeyboardInterrupt:
        console.console.print("aborted")
        return 130
    except Exception as e:  # a bug or an unexpected tool failure: still one line, unless --debug
        if "--debug" in (argv if argv is not None else sys.argv):
            traceback.print_exc()
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        console.console.print(f"error: {type(e).__name__}: {first} (run with --debug for the traceback)", markup=False, soft_wrap=True)
        return 1


def entry_point() -> None:
    sys.exit(main())
