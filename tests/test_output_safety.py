"""The output folder with real faults: runs killed with SIGTERM and SIGKILL, two runs at once, a
folder that is not ours, a user's files inside OUT, a full disk, a mount point, the umask, a
tampered artifact, hostile manifests and configs."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import load_manifest, run_cli

FAST = ("--formats", "mnn", "--precisions", "fp32")  # the quickest real conversion


def cli_process(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edgepack", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, **kwargs)


def wait_for_staging(out: Path, proc: subprocess.Popen, timeout: float = 300) -> Path:
    """Block until the run has started writing (its staging folder exists inside OUT)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        found = list(out.glob(".edgepack-staging-*")) if out.is_dir() else []
        if found:
            return found[0]
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("the run never started writing")


def work_folders(pid: int) -> list[Path]:
    return list(Path("/tmp").glob(f"edgepack-work-{pid}-*"))


def test_foreign_folder_with_a_manifest_is_refused_and_untouched(tmp_path, onnx_detector):
    out = tmp_path / "project"
    out.mkdir()
    (out / "manifest.json").write_text('{"name": "my web app", "version": 3}')
    (out / "main.py").write_text("print('mine')\n")
    result = run_cli("convert", str(onnx_detector), *FAST, "-o", str(out))
    assert result.returncode == 9, result.stderr
    assert "is not an edgepack output" in result.stderr and "Traceback" not in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["main.py", "manifest.json"]
    assert (out / "manifest.json").read_text() == '{"name": "my web app", "version": 3}'


def test_output_dot_in_a_project_deletes_nothing(tmp_path, onnx_detector):
    project = tmp_path / "src"
    project.mkdir()
    (project / "train.py").write_text("# the user's code\n")
    result = run_cli("convert", str(onnx_detector), *FAST, "-o", ".", cwd=project)
    assert result.returncode == 9, result.stderr
    assert [p.name for p in project.iterdir()] == ["train.py"]


def test_rebuild_keeps_user_files_and_replaces_only_its_own(tmp_path, onnx_detector):
    out = tmp_path / "out"
    first = run_cli("convert", str(onnx_detector), "--formats", "mnn,ncnn", "--precisions", "fp32", "-o", str(out))
    assert first.returncode == 0, first.stderr
    (out / "android").mkdir()
    (out / "android" / "MainActivity.kt").write_text("// my edit\n")
    (out / "mnn" / "NOTES.md").write_text("mine\n")
    old_manifest = load_manifest(out)
    ncnn_files = [out / p for e in old_manifest["artifacts"] if e["format"] == "ncnn" for p in e["files"].values()]
    second = run_cli("convert", str(onnx_detector), "--formats", "mnn", "--precisions", "fp16", "-o", str(out), "--force")
    assert second.returncode == 0, second.stderr
    assert (out / "android" / "MainActivity.kt").read_text() == "// my edit\n"
    assert (out / "mnn" / "NOTES.md").read_text() == "mine\n"
    manifest = load_manifest(out)
    assert [e["id"] for e in manifest["artifacts"]] == ["mnn-fp16"]
    assert not any(p.exists() for p in ncnn_files), "files of the previous build that this one does not write go"
    assert not (out / "ncnn").exists() and not list(out.glob(".edgepack*"))
    assert "android/MainActivity.kt" not in manifest["owned_files"]


@pytest.mark.parametrize("stop, exit_code, said", [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "aborted")])
def test_sigterm_or_ctrl_c_mid_run_cleans_up(tmp_path, onnx_detector, stop, exit_code, said):
    out = tmp_path / "out"
    proc = cli_process("convert", str(onnx_detector), *FAST, "-o", str(out))
    wait_for_staging(out, proc)
    proc.send_signal(stop)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == exit_code, stderr
    assert said in stderr and "Traceback" not in stderr
    assert not out.exists(), "a first run that was stopped leaves no folder behind"
    assert not work_folders(proc.pid)


# SIGTERM sent from Python code that native code is running, where an exception cannot simply propagate.
# "import": onnx's nanobind module initialisation creates enums through Enum.__init__; an exception there
# makes nanobind call std::terminate (CI hit this window by chance: exit -6, staging folder left behind).
# "callback": onnxsim's C++ constant folding runs sub-models through a Python callback and swallows its errors.
SIGTERM_INSIDE_NATIVE_CODE = """
import enum, os, signal, sys
where = sys.argv.pop(1)

def send_sigterm():
    print(f"SIGTERM sent inside a native {where}", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGTERM)
    sum(range(1000))  # Python runs the handler at the next instructions, here

if where == "import":
    original_init = enum.Enum.__init__

    def init_called_by_an_extension(self, *args, **kwargs):
        if sys._getframe(1).f_code.co_filename.startswith("<frozen importlib"):
            enum.Enum.__init__ = original_init
            send_sigterm()

    enum.Enum.__init__ = init_called_by_an_extension
else:
    from onnxsim import onnx_simplifier
    original_run = onnx_simplifier.PyModelExecutor.Run

    def run_called_by_onnxsim(self, *args):
        onnx_simplifier.PyModelExecutor.Run = original_run
        send_sigterm()
        return original_run(self, *args)

    onnx_simplifier.PyModelExecutor.Run = run_called_by_onnxsim
sys.argv[0] = "edgepack"
from edgepack.cli import entry_point
entry_point()
"""


@pytest.mark.parametrize("where", ["import", "callback"])
def test_sigterm_inside_native_code_still_stops_and_cleans_up(tmp_path, onnx_detector, where):
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-c", SIGTERM_INSIDE_NATIVE_CODE, where, "convert", str(onnx_detector),
                             *FAST, "-o", str(out)], capture_output=True, text=True, timeout=300)
    assert f"SIGTERM sent inside a native {where}" in result.stderr, result.stderr
    assert result.returncode == 143, result.stderr  # was -6 (SIGABRT) for "import", 0 (a finished run) for "callback"
    assert "terminated" in result.stderr and "Traceback" not in result.stderr
    assert not out.exists()


def test_sigkill_leftovers_are_cleaned_by_the_next_run(tmp_path, onnx_detector):
    out = tmp_path / "out"
    proc = cli_process("convert", str(onnx_detector), *FAST, "-o", str(out))
    staging = wait_for_staging(out, proc)
    proc.kill()
    proc.communicate(timeout=60)
    assert staging.exists() and work_folders(proc.pid), "SIGKILL cannot be handled: this is what the next run finds"
    result = run_cli("convert", str(onnx_detector), *FAST, "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert not staging.exists() and not work_folders(proc.pid)
    assert not list(out.glob(".edgepack*"))
    assert [e["status"] for e in load_manifest(out)["artifacts"]] == ["ok"]


def test_two_runs_on_one_output_folder(tmp_path, onnx_detector):
    out = tmp_path / "out"
    first = cli_process("convert", str(onnx_detector), *FAST, "-o", str(out))
    wait_for_staging(out, first)
    second = run_cli("convert", str(onnx_detector), *FAST, "-o", str(out))
    assert second.returncode == 9 and "another edgepack run is writing" in second.stderr, second.stderr
    _, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr
    assert load_manifest(out)["artifacts"][0]["status"] == "ok"


@pytest.fixture
def tmpfs(tmp_path):
    """A small filesystem of our own (root can mount one): a full disk and a mount point, for real."""
    mounts = []

    def mount(path: Path, size: str) -> Path:
        path.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
        mounts.append(path)
        return path

    yield mount
    for path in reversed(mounts):
        subprocess.run(["umount", "-l", str(path)], check=False)


def test_full_disk_ends_with_exit_9_naming_the_path(tmp_path, onnx_detector, tmpfs):
    disk = tmpfs(tmp_path / "small", "64k")
    out = disk / "out"
    result = run_cli("convert", str(onnx_detector), *FAST, "-o", str(out))
    assert result.returncode == 9, result.stderr
    line = [x for x in result.stderr.splitlines() if x.startswith("error:")][0]
    assert "no space left" in line and str(out) in line and "Traceback" not in result.stderr
    assert not out.exists()


def test_output_folder_that_is_a_mount_point(tmp_path, onnx_detector, tmpfs):
    out = tmpfs(tmp_path / "mounted-out", "64m")
    result = run_cli("convert", str(onnx_detector), *FAST, "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert load_manifest(out)["artifacts"][0]["status"] == "ok"
    again = run_cli("convert", str(onnx_detector), *FAST, "-o", str(out), "--force")
    assert again.returncode == 0, again.stderr


def test_outputs_follow_the_umask(tmp_path, onnx_detector):
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, "-m", "edgepack", "convert", str(onnx_detector), *FAST, "-o", str(out)],
                            capture_output=True, text=True, preexec_fn=lambda: os.umask(0o027))
    assert result.returncode == 0, result.stderr
    for path in [out, *out.rglob("*")]:
        mode = path.stat().st_mode & 0o777
        assert mode == (0o750 if path.is_dir() else 0o640), (path, oct(mode))


def test_tampered_artifact_fails_validate(tmp_path, onnx_detector):
    out = tmp_path / "out"
    assert run_cli("convert", str(onnx_detector), *FAST, "-o", str(out)).returncode == 0
    entry = load_manifest(out)["artifacts"][0]
    model = out / entry["files"]["model"]
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit of one weight
    model.write_bytes(bytes(data))
    result = run_cli("validate", str(out))
    assert result.returncode == 6, result.stderr
    assert "changed since it was built" in result.stderr
    assert load_manifest(out)["artifacts"][0]["status"] == "failed"
    model.unlink()
    result = run_cli("validate", str(out))
    assert result.returncode == 6 and "is missing" in result.stderr, result.stderr


@pytest.mark.parametrize("field,value", [
    ("files", {"model": "../../outside.mnn"}),
    ("files", {"model": "/etc/passwd"}),
    ("id", "mnn-fp32\nrm -rf /"),
    ("precision", 'fp32"; System.exit(1); "'),
])
def test_hostile_manifest_is_refused(tmp_path, onnx_detector, field, value):
    out = tmp_path / "out"
    assert run_cli("convert", str(onnx_detector), *FAST, "-o", str(out)).returncode == 0
    manifest = load_manifest(out)
    manifest["artifacts"][0][field] = value
    (out / "manifest.json").write_text(json.dumps(manifest))
    for command in (("validate", str(out)), ("build", "--target", "android", "-o", str(out))):
        result = run_cli(*command)
        assert result.returncode == 2, result.stderr
        line = [x for x in result.stderr.splitlines() if x.startswith("error:")][0]
        assert "is not allowed" in line and "Traceback" not in result.stderr
    assert not (out / "android").exists()


@pytest.mark.parametrize("yaml_text,needle", [
    ("model:\n  std: abc\n", "model.std must be 3 numbers"),
    ("model:\n  mean: [1, 2]\n", "model.mean must be 3 numbers"),
    ("validation:\n  count: many\n", "validation.count must be a whole number"),
    ("calibration:\n  auto_mixed: 3\n", "calibration.auto_mixed must be true or false"),
    ("model:\n  task: [detect]\n", "model.task must be text"),
    ("model: resnet\n", "section 'model' must be a mapping"),
    ("model:\n  name: ../../x\n", "model.name '../../x' is not a plain file name"),
])
def test_wrong_config_types_name_the_key(tmp_path, yaml_text, needle):
    config = tmp_path / "edgepack.yaml"
    config.write_text(yaml_text)
    out = tmp_path / "out"
    result = run_cli("convert", "-c", str(config), "-o", str(out))
    assert result.returncode == 2, result.stderr
    assert needle in result.stderr and "Traceback" not in result.stderr and not out.exists()


def test_labels_bom_is_dropped_and_latin1_is_refused(tmp_path):
    from edgepack.errors import SpecError
    from edgepack.spec import read_labels

    bom = tmp_path / "bom.txt"
    bom.write_bytes("\ufeffcat\ndog\n".encode("utf-8"))
    assert read_labels(bom) == ["cat", "dog"]
    latin = tmp_path / "latin.txt"
    latin.write_bytes("café\nthé\n".encode("latin-1"))
    with pytest.raises(SpecError, match=r"latin.txt is not UTF-8 text \(byte 0xe9 at offset 3\)"):
        read_labels(latin)
    result = run_cli("convert", "--labels", str(latin), "-o", str(tmp_path / "out"))
    assert result.returncode == 2 and "save it as UTF-8" in result.stderr


def test_progress_counts_steps_and_the_next_command_runs_as_printed(tmp_path, onnx_detector):
    out = tmp_path / "out"
    result = run_cli("convert", str(onnx_detector), "--formats", "mnn", "--precisions", "fp32,fp16", "-o", str(out))
    assert result.returncode == 0, result.stderr
    # 3 set-up steps, one per artifact (built and validated in the format's child process), latency
    assert "[1/6] Loading" in result.stderr and "[5/6] Built mnn-fp16" in result.stderr and "[6/6] Measuring host latency" in result.stderr
    assert "[mnn] Converting mnn-fp16" in result.stderr and "[mnn] Validating mnn-fp16" in result.stderr  # the child's own lines
    assert "I tensorflow" not in result.stderr and "oneDNN" not in result.stderr
    printed = [line for line in result.stderr.splitlines() if "next: edgepack build" in line][0]
    command = printed.split("next: ", 1)[1].rstrip(")").split()
    assert command[:4] == ["edgepack", "build", "--target", "android"] and "ios" not in command  # no coreml built
    built = run_cli(*command[1:], cwd=tmp_path)
    assert built.returncode == 0, built.stderr
    assert (out / "android" / "settings.gradle.kts").is_file()


def test_inspect_sizes_and_json(tmp_path, onnx_detector):
    out = tmp_path / "out"
    assert run_cli("convert", str(onnx_detector), "--formats", "ncnn,coreml", "--precisions", "fp16", "-o", str(out)).returncode == 0
    manifest = load_manifest(out)
    by_format = {e["format"]: e for e in manifest["artifacts"]}
    param = out / by_format["ncnn"]["files"]["param"]
    result = run_cli("inspect", "--json", str(param.with_suffix(".bin")))
    report = json.loads(result.stdout)
    assert set(report["files"]) == {"param", "bin"}
    assert report["size_bytes"] == param.stat().st_size + param.with_suffix(".bin").stat().st_size
    package = out / by_format["coreml"]["files"]["model"]
    report = json.loads(run_cli("inspect", "--json", str(package)).stdout)
    assert report["size_bytes"] == sum(p.stat().st_size for p in package.rglob("*") if p.is_file()) > 100_000
    summary = json.loads(run_cli("inspect", "--json", str(out)).stdout)
    assert {a["id"] for a in summary["artifacts"]} == {"ncnn-fp16", "coreml-fp16"}


def test_factory_imports_from_the_current_directory_under_the_console_script(tmp_path):
    package = tmp_path / "mymodels"
    package.mkdir()
    (package / "__init__.py").write_text("")
    tests_dir = Path(__file__).parent
    (package / "nets.py").write_text(
        f"import sys\nsys.path.insert(0, {str(tests_dir)!r})\nfrom models import tiny_classifier_factory as build\n"
    )
    script = Path(sys.executable).parent / "edgepack"
    result = subprocess.run([str(script), "convert", "mymodels.nets:build", "--task", "classify", *FAST, "-o", "out"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    assert load_manifest(tmp_path / "out")["artifacts"][0]["status"] == "ok"
