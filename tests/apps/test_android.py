"""The generated Android project from real conversions: rendered for detect and classify and for
backend subsets, checked statically (XML parsed, Gradle/manifest/resources as Android needs them,
the TFLite shapes in ModelConfig.kt against the real model), and its pure C++ post-processing
compiled here and compared with edgepack's Python reference decoder. The pure Kotlin is compiled
and run in test_android_core.py; re-builds and hostile manifests in test_app_generation.py."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import xml.dom.minidom
from pathlib import Path

import numpy as np
import pytest

from conftest import load_manifest, run_cli
from edgepack.apps import render_app
from edgepack.apps.android import VERSIONS
from edgepack.errors import SpecError
from decoder_reference import compare, parse_lines, python_decode

GOLDEN = Path(__file__).parent / "golden"
NASTY_NAME = 'Tom\'s "Detector" $HOME \\ <ü&> ✓'


def render(out: Path, manifest: dict | None = None, **options) -> Path:
    manifest = manifest or load_manifest(out)
    return render_app("android", manifest, out, {"name": NASTY_NAME, "package": "com.example.my_app", **options})


@pytest.fixture(scope="module")
def detector_project(detector_out):
    return render(detector_out)


@pytest.fixture(scope="module")
def classifier_project(classifier_out):
    return render(classifier_out)


def all_text(project: Path) -> dict[str, str]:
    return {
        str(p.relative_to(project)): p.read_text(encoding="utf-8")
        for p in project.rglob("*")
        if p.is_file() and p.suffix in (".kt", ".kts", ".xml", ".toml", ".properties", ".cpp", ".h", ".txt", ".md", ".pro")
    }


@pytest.mark.parametrize("project_fixture", ["detector_project", "classifier_project"])
def test_every_template_renders_cleanly(request, project_fixture):
    project = request.getfixturevalue(project_fixture)
    files = all_text(project)
    for name, text in files.items():
        assert not re.search(r"\{\{|\{%|\{#", text), f"template syntax left in {name}"
        if name.endswith(".xml"):
            xml.dom.minidom.parseString(text.encode())  # raises on malformed XML
    assert "app/src/main/java/com/example/my_app/MainActivity.kt" in files
    assert "local.properties" not in files
    toml = files["gradle/libs.versions.toml"]
    for key in ("agp", "kotlin", "camerax", "litert"):
        assert f'"{VERSIONS[key]}"' in toml
    gradle = files["app/build.gradle.kts"]
    assert f"compileSdk = {VERSIONS['compile_sdk']}" in gradle and f"minSdk = {VERSIONS['min_sdk']}" in gradle
    assert "ANDROID_SUPPORT_FLEXIBLE_PAGE_SIZES=ON" in gradle and '"tflite", "mnn", "bin", "param"' in gradle
    # Kotlin 2.2: compilerOptions, not the deprecated kotlinOptions
    assert "kotlinOptions" not in gradle and "compilerOptions { jvmTarget.set(JvmTarget.JVM_17) }" in gradle
    assert "buildConfig = true" in gradle
    manifest_xml = files["app/src/main/AndroidManifest.xml"]
    assert 'android.permission.CAMERA' in manifest_xml and 'android:required="false"' in manifest_xml
    assert "Narwhal 3 Feature Drop (2025.1.3)" in files["README.md"]
    # a launcher icon for every API level from minSdk 24 (the adaptive one is 26+ only)
    assert "app/src/main/res/mipmap/ic_launcher.xml" in files and "app/src/main/res/mipmap-anydpi-v26/ic_launcher.xml" in files
    assert "statusBarColor" not in files["app/src/main/res/values/themes.xml"]
    activity = files["app/src/main/java/com/example/my_app/MainActivity.kt"]
    assert "setOnApplyWindowInsetsListener" in activity and "WindowInsetsCompat.Type.systemBars()" in activity
    assert "registerDisplayListener" in activity and "analysis?.targetRotation = target" in activity
    assert "setOutputImageRotationEnabled(true)" in activity and "toBitmap" not in activity
    assert "catch (e: LinkageError)" in activity


def test_assets_and_golden_files(detector_project, detector_out):
    assets = detector_project / "app/src/main/assets"
    assert (assets / "ncnn/detector-fp16.ncnn.param").is_file() and (assets / "mnn/detector-fp16.mnn").is_file()
    assert (assets / "labels.txt").read_text(encoding="utf-8") == (detector_out / "labels.txt").read_text(encoding="utf-8")
    golden = np.fromfile(detector_project / "app/src/androidTest/assets/golden_input.f32", dtype="<f4")
    assert golden.size == 3 * 128 * 128
    expected = json.loads((detector_project / "app/src/androidTest/assets/golden_expected.json").read_text())
    assert expected and {"box", "score", "class"} <= set(expected[0])
    config = (detector_project / "app/src/main/java/com/example/my_app/ModelConfig.kt").read_text()
    assert 'assetFiles = listOf("ncnn/detector-fp16.ncnn.param", "ncnn/detector-fp16.ncnn.bin")' in config
    assert 'inputName = "in0"' in config and 'outputShape = intArrayOf(1, 7, 336)' in config
    assert "numAnchors = 336" in config and "channelsFirst = true" in config


def test_user_text_is_escaped_for_each_language(detector_project):
    strings = (detector_project / "app/src/main/res/values/strings.xml").read_text(encoding="utf-8")
    dom = xml.dom.minidom.parseString(strings.encode())
    app_name = next(n for n in dom.getElementsByTagName("string") if n.getAttribute("name") == "app_name")
    # aapt un-escapes \' \" \\ : what the user sees is the original name
    shown = app_name.firstChild.data.replace("\\'", "'").replace('\\"', '"').replace("\\\\", "\\")
    assert shown == NASTY_NAME
    settings = (detector_project / "settings.gradle.kts").read_text(encoding="utf-8")
    assert 'rootProject.name = "Tom\'s _Detector_ \\$HOME _ _ü&_ ✓"' in settings
    jni = (detector_project / "app/src/main/cpp/jni_bridge.cpp").read_text()
    assert "Java_com_example_my_1app_NativeDetector_##name" in jni  # JNI mangling of '_'


def test_tflite_shapes_in_the_app_are_the_real_model_s(detector_project, detector_out):
    """ModelConfig.kt sizes the LiteRT buffers; the LiteRT interpreter reads the same model file."""
    from ai_edge_litert.interpreter import Interpreter

    config = (detector_project / "app/src/main/java/com/example/my_app/ModelConfig.kt").read_text()
    block = config[config.index('name = "tflite"'):]
    asset = re.search(r'assetFiles = listOf\("([^"]+)"\)', block).group(1)
    interpreter = Interpreter(model_path=str(detector_project / "app/src/main/assets" / asset))
    for kind, details in (("inputShape", interpreter.get_input_details()[0]), ("outputShape", interpreter.get_output_details()[0])):
        declared = [int(v) for v in re.search(kind + r" = intArrayOf\(([^)]*)\)", block).group(1).split(",")]
        assert declared == list(details["shape"]), kind


def test_classifier_project_shows_probabilities(classifier_project):
    config = (classifier_project / "app/src/main/java/com/example/my_app/ModelConfig.kt").read_text()
    assert 'const val TASK = "classify"' in config and 'CLASSIFIER_OUTPUT = "' in config
    for name in ("TfliteDetector.kt", "NativeDetector.kt"):
        assert "Probabilities.from(" in (classifier_project / "app/src/main/java/com/example/my_app" / name).read_text()


def test_backend_subsets_drop_their_sources(detector_out, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(detector_out, out, ignore=shutil.ignore_patterns("android", "ios"))
    manifest = load_manifest(out)
    manifest["artifacts"] = [a for a in manifest["artifacts"] if a["format"] == "mnn"]
    project = render(out, manifest)
    cmake = (project / "app/src/main/cpp/CMakeLists.txt").read_text()
    assert "mnn_engine.cpp" in cmake and "find_package(ncnn" not in cmake and "ncnn_engine.cpp" not in cmake
    assert not (project / "app/src/main/cpp/ncnn_engine.cpp").exists()
    assert not (project / "app/src/main/java/com/example/my_app/TfliteDetector.kt").exists()
    config = (project / "app/src/main/java/com/example/my_app/ModelConfig.kt").read_text()
    assert 'name = "mnn"' in config and 'name = "ncnn"' not in config and 'name = "tflite"' not in config
    gradle = (project / "app/build.gradle.kts").read_text()
    # MNN's GPU libraries reach the APK as CMake IMPORTED targets only: a jniLibs folder too would package them twice
    assert "libMNN_CL.so" in gradle and "jniLibs.srcDir" not in gradle and 'startsWith("ncnn")' not in gradle
    assert "IMPORTED" in cmake and "-Wl,--no-as-needed" in cmake
    native = (project / "app/src/main/java/com/example/my_app/NativeDetector.kt").read_text()
    assert 'listOf("MNN_CL", "MNN_Vulkan")' in native and "catch (e: UnsatisfiedLinkError)" in native
    assert 'uses-native-library android:name="libOpenCL.so"' in (project / "app/src/main/AndroidManifest.xml").read_text()


@pytest.mark.parametrize("package", ["Com.Example", "example", "com.example.class", "com..x", "com.ex-ample"])
def test_bad_package_names_are_rejected(detector_out, package):
    with pytest.raises(SpecError, match="package"):
        render(detector_out, package=package)


def test_build_command_end_to_end(detector_out, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(detector_out, out)
    result = run_cli("build", "--target", "android", "-o", str(out), "--package", "org.acme.shapes")
    assert result.returncode == 0, result.stderr
    assert "using the existing conversion" in result.stderr
    assert (out / "android/app/src/main/java/org/acme/shapes/MainActivity.kt").is_file()
    bad = run_cli("build", "--target", "android", "-o", str(out), "--package", "Not Valid")
    assert bad.returncode == 2 and "not a valid Android application id" in bad.stderr


# --- the pure C++ and Kotlin post-processing, compiled here, against the Python reference ---

def yolov5_case() -> np.ndarray:
    rng = np.random.default_rng(3)
    rows = np.concatenate([rng.uniform(10, 100, (50, 2)), rng.uniform(5, 30, (50, 2)), rng.random((50, 1)), rng.random((50, 3))], axis=1)
    return rows.astype(np.float32)  # [N, 5 + C]


@pytest.fixture(scope="module")
def cpp_decoder(detector_project, tmp_path_factory):
    binary = tmp_path_factory.mktemp("cpp") / "decode"
    cpp = detector_project / "app/src/main/cpp"
    subprocess.run(
        ["g++", "-std=c++17", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{cpp}", str(cpp / "postprocess.cpp"),
         str(GOLDEN / "decode_main.cpp"), "-o", str(binary)],
        check=True, capture_output=True, text=True,
    )
    return binary


def test_cpp_postprocess_matches_python_reference(cpp_decoder, detector_out, tmp_path):
    reference = np.load(detector_out / "validation/reference.npz")["output0"]
    total = 0
    for i, output in enumerate(reference):
        raw = output[0].astype("<f4")  # [7, 336]
        raw.tofile(tmp_path / f"{i}.f32")
        result = subprocess.run([str(cpp_decoder), str(tmp_path / f"{i}.f32"), "336", "3", "v8", "1", "0.25", "0.45"],
                                capture_output=True, text=True, check=True)
        expected = python_decode(raw, "yolov8", 3)
        compare(parse_lines(result.stdout), expected)
        total += len(expected)
    assert total > 0
    v5 = yolov5_case()
    v5.tofile(tmp_path / "v5.f32")
    result = subprocess.run([str(cpp_decoder), str(tmp_path / "v5.f32"), "50", "3", "v5", "0", "0.25", "0.45"],
                            capture_output=True, text=True, check=True)
    compare(parse_lines(result.stdout), python_decode(v5[None], "yolov5", 3))


def test_cpp_string_filter_survives_the_compiler(tmp_path):
    from edgepack.apps.base import cpp_string

    text = NASTY_NAME + "\n\x01a??=\tend"
    source = tmp_path / "s.cpp"
    source.write_text(f'#include <cstdio>\nint main() {{ std::fputs("{cpp_string(text)}", stdout); }}\n', encoding="utf-8")
    subprocess.run(["g++", "-Wall", "-Werror", str(source), "-o", str(tmp_path / "s")], check=True, capture_output=True)
    printed = subprocess.run([str(tmp_path / "s")], capture_output=True, check=True).stdout.decode()
    assert printed == text


def test_unknown_target_fails_before_converting(tmp_path):
    out = tmp_path / "out"
    result = run_cli("build", "--target", "androd", "-o", str(out))
    assert result.returncode == 2 and "did you mean 'android'" in result.stderr
    assert not out.exists()


def test_app_bundles_only_float_io_tflite_models():
    """The Kotlin TFLite path feeds floats: a full-integer model (int8 I/O) is not picked."""
    from edgepack.apps.android import pick_artifacts

    def tflite(precision, dtype):
        io = {"inputs": [{"dtype": dtype}], "outputs": [{"dtype": dtype}]}
        return {"format": "tflite", "precision": precision, "status": "ok", "tflite": {"io": io}}

    manifest = {"artifacts": [tflite("int8", "int8"), tflite("int8-dynamic", "float32")]}
    assert pick_artifacts(manifest)["tflite"]["precision"] == "int8-dynamic"
    assert pick_artifacts({"artifacts": [tflite("int8", "int8")]}) == {}
