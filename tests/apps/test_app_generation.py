"""Generating projects from manifest.json: re-builds keep the developer's work, and a hostile
manifest is refused with one line, or its text rendered inert and escaped, before anything is
written. Runs on synthetic OUT folders (tests/apps/synthetic.py): no conversion needed."""

from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from pathlib import Path

import jinja2
import jinja2.nodes
import pytest

from conftest import load_manifest, run_cli
from edgepack.apps import generate_apps, render_app
from edgepack.apps.base import RECORD_NAME, templates_root
from edgepack.errors import SpecError
from synthetic import manifest_for, write_out

OPTIONS = {"name": "Shapes", "package": "com.example.shapes"}
ACTIVITY = "app/src/main/java/com/example/shapes/MainActivity.kt"


@pytest.fixture
def out(tmp_path) -> Path:
    return write_out(tmp_path / "out")


def build(out: Path, manifest: dict | None = None, targets=("android",), **options):
    return generate_apps(list(targets), manifest or load_manifest(out), out, {**OPTIONS, **options})


# --- re-builds ----------------------------------------------------------------------------------

def test_rebuild_keeps_user_edits_and_user_files_and_reports_them(out):
    [first] = build(out)
    project = first.project
    assert (project / RECORD_NAME).is_file() and ACTIVITY in first.written
    record = json.loads((project / RECORD_NAME).read_text())["files"]
    assert ACTIVITY in record and "app/src/main/assets/labels.txt" in record
    # the developer edits a generated file, adds their own, and edits generated config
    activity = project / ACTIVITY
    edited = activity.read_text().replace("class MainActivity", "// my change\nclass MainActivity")
    activity.write_text(edited)
    (project / "app/src/main/java/com/example/shapes/MyFeature.kt").write_text("package com.example.shapes\n// mine\n")
    (project / "notes.txt").write_text("my notes")
    untouched = project / "app/src/main/java/com/example/shapes/OverlayView.kt"
    before_untouched = untouched.read_text()
    untouched.write_text(before_untouched.replace("strokeWidth = 6f", "strokeWidth = 60f"))  # about to be "regenerated"
    untouched.write_text(before_untouched)  # ... then reverted: still ours
    # a re-conversion changes the model: labels, thresholds, model files
    manifest = load_manifest(out)
    manifest["model"]["labels"] = ["cat", "dog", "cow", "owl", "bee"]
    manifest["postprocessing"]["score_threshold"] = 0.5
    (out / "tflite/synthetic-fp16.tflite").write_bytes(b"a new model")
    [again] = build(out, manifest)
    assert activity.read_text() == edited and ACTIVITY in again.kept
    assert (project / "app/src/main/java/com/example/shapes/MyFeature.kt").read_text().endswith("// mine\n")
    assert (project / "notes.txt").read_text() == "my notes"
    assert "notes.txt" not in again.kept  # not ours, not generated: simply left alone
    # models, labels and generated config follow the new conversion
    assert (project / "app/src/main/assets/tflite/synthetic-fp16.tflite").read_bytes() == b"a new model"
    assert (project / "app/src/main/assets/labels.txt").read_text() == "cat\ndog\ncow\nowl\nbee\n"
    assert "DEFAULT_SCORE_THRESHOLD = 0.5f" in (project / "app/src/main/java/com/example/shapes/ModelConfig.kt").read_text()
    assert untouched.read_text() == before_untouched and "app/src/main/java/com/example/shapes/OverlayView.kt" in again.unchanged
    # the kept edit stays the developer's on the next build too
    [third] = build(out, manifest)
    assert ACTIVITY in third.kept and activity.read_text() == edited


def test_the_build_command_reports_kept_edits(out):
    assert run_cli("build", "--target", "android", "-o", str(out), "--app-name", "Shapes", "--package", "com.example.shapes").returncode == 0
    (out / "android" / ACTIVITY).write_text("// rewritten by me\n")
    result = run_cli("build", "--target", "android", "-o", str(out), "--app-name", "Shapes", "--package", "com.example.shapes")
    assert result.returncode == 0, result.stderr
    assert f"kept your edit: {ACTIVITY}" in result.stderr
    assert (out / "android" / ACTIVITY).read_text() == "// rewritten by me\n"


def test_generated_config_is_refreshed_even_when_edited(out):
    [first] = build(out)
    config = first.project / "app/src/main/java/com/example/shapes/ModelConfig.kt"
    config.write_text(config.read_text().replace("INPUT_WIDTH = 320", "INPUT_WIDTH = 999"))
    [again] = build(out)
    assert "INPUT_WIDTH = 320" in config.read_text()
    assert "app/src/main/java/com/example/shapes/ModelConfig.kt" in again.replaced


def test_files_no_longer_generated_are_removed_only_if_unchanged(out):
    [first] = build(out)
    project = first.project
    native = project / "app/src/main/java/com/example/shapes/NativeDetector.kt"
    engine = project / "app/src/main/cpp/ncnn_engine.cpp"
    assert native.is_file() and engine.is_file()
    engine.write_text(engine.read_text() + "\n// tuned by me\n")
    manifest = load_manifest(out)
    manifest["artifacts"] = [a for a in manifest["artifacts"] if a["format"] == "tflite"]
    [again] = build(out, manifest)
    assert not native.exists() and "app/src/main/java/com/example/shapes/NativeDetector.kt" in again.removed
    assert not (project / "app/src/main/assets/ncnn").exists()  # emptied folders go too
    assert engine.read_text().endswith("// tuned by me\n") and "app/src/main/cpp/ncnn_engine.cpp" in again.kept


def test_a_project_edgepack_did_not_write_is_never_overwritten(out):
    project = out / "android"
    (project / "app").mkdir(parents=True)
    (project / "app/build.gradle.kts").write_text("// the developer's own build\n")
    [result] = build(out)
    assert (project / "app/build.gradle.kts").read_text() == "// the developer's own build\n"
    assert "app/build.gradle.kts" in result.kept and ACTIVITY in result.written


def test_a_symlink_inside_the_project_is_not_written_through(out, tmp_path):
    [first] = build(out)
    outside = tmp_path / "outside.txt"
    outside.write_text("do not touch")
    readme = first.project / "README.md"
    readme.unlink()
    os.symlink(outside, readme)
    [again] = build(out)
    assert outside.read_text() == "do not touch" and "README.md" in again.kept


# --- hostile manifests ----------------------------------------------------------------------------

def _refused(out: Path, manifest: dict, match: str) -> str:
    with pytest.raises(SpecError, match=match) as error:
        build(out, manifest, targets=("android", "ios"), package="com.example.shapes")
    message = str(error.value)
    assert "\n" not in message and message.startswith("manifest.json: ")
    assert not (out / "android").exists() and not (out / "ios").exists()  # nothing half-written
    return message


@pytest.mark.parametrize("path", ["/etc/passwd", "../../x", "tflite/../../../x", "C:/Windows/win.ini", "tflite\\..\\x", "~/.ssh/id_rsa", ""])
def test_artifact_paths_outside_out_are_refused(out, path):
    manifest = load_manifest(out)
    manifest["artifacts"][0]["files"]["model"] = path
    _refused(out, manifest, "artifacts\\[0\\].files.model")


def test_a_symlink_leading_out_of_out_is_refused(out, tmp_path):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"secret")
    (out / "tflite/synthetic-fp16.tflite").unlink()
    os.symlink(secret, out / "tflite/synthetic-fp16.tflite")
    _refused(out, load_manifest(out), "leads outside the output folder")


@pytest.mark.parametrize("field,value,where", [
    ("edgepack_version", '0.1.0"\n}\nthrow Exception("pwned")\n//', "edgepack_version"),
    ("precision", 'fp16", "x"); System.exit(1); listOf("', "artifacts\\[0\\].precision"),
    ("id", "tflite-fp16\nrm -rf /", "artifacts\\[0\\].id"),
    ("input_name", 'in0"); Runtime.getRuntime().exec("x', "runtime_io.input"),
    ("shape", [1, "9", 2100], "outputs\\[0\\].shape\\[1\\]"),
    ("shape", [1, 9.5, 2100], "outputs\\[0\\].shape\\[1\\]"),
    ("shape", [1, True, 2100], "outputs\\[0\\].shape\\[1\\]"),
    ("threshold", float("nan"), "score_threshold"),
    ("threshold", "0.25", "score_threshold"),
    ("label", "line one\nline two", "model.labels\\[0\\]"),
    ("task", "detect'; drop", "model.task"),
])
def test_hostile_values_are_refused_with_one_line(out, field, value, where):
    manifest = load_manifest(out)
    tflite = manifest["artifacts"][0]
    if field == "edgepack_version":
        manifest["edgepack_version"] = value
    elif field in ("precision", "id"):
        tflite[field] = value
    elif field == "input_name":
        tflite["runtime_io"]["input"] = value
    elif field == "shape":
        tflite["outputs"][0]["shape"] = value
    elif field == "threshold":
        manifest["postprocessing"]["score_threshold"] = value
    elif field == "label":
        manifest["model"]["labels"][0] = value
    else:
        manifest["model"]["task"] = value
    _refused(out, manifest, where)


def test_template_syntax_in_labels_and_names_stays_inert_and_escaped(tmp_path):
    labels = ["{{ 7*7 }}", "{% raw %}x", 'say "hi" \\ $HOME ${x}', "ünïcode ✓", "{# c #}"]
    out = write_out(tmp_path / "out", manifest_for(num_classes=5, labels=labels))
    manifest = load_manifest(out)
    manifest["model"]["name"] = 'evil"); System.exit(0); ("{{ 6*6 }}'
    android, ios = generate_apps(["android", "ios"], manifest, out, {"name": "{{ 8*8 }} \"App\"", "package": "com.example.shapes"})
    assert (android.project / "app/src/main/assets/labels.txt").read_text(encoding="utf-8") == "\n".join(labels) + "\n"
    model_info = next((ios.project).rglob("ModelInfo.swift")).read_text(encoding="utf-8")
    for label in labels:  # Swift literal bodies: backslash and quote escaped, nothing evaluated
        assert '"' + label.replace("\\", "\\\\").replace('"', '\\"') + '",' in model_info
    assert "{{ 7*7 }}" in (android.project / "app/src/main/assets/manifest.json").read_text(encoding="utf-8")
    readme = (android.project / "README.md").read_text(encoding="utf-8")
    assert "{{ 7*7 }}" in readme and re.search(r"\b49\b", readme) is None
    strings = (android.project / "app/src/main/res/values/strings.xml").read_text(encoding="utf-8")
    assert '{{ 8*8 }} \\"App\\"' in strings and 'evil\\"); System.exit(0); (\\"{{ 6*6 }}' in strings
    settings = (android.project / "settings.gradle.kts").read_text(encoding="utf-8")
    assert 'rootProject.name = "{{ 8_8 }} _App_"' in settings  # Gradle forbids * in project names


# --- every value a template writes into code goes through that language's escaping ---------------

ESCAPES = {"kotlin_string", "swift_string", "cpp_string", "xml", "android_string", "pbx", "kotlin_float", "swift_double", "int", "tojson"}
# values computed or validated by edgepack (numbers, enumerations, identifiers from a safe alphabet)
TRUSTED = {"versions", "ids", "package", "package_path", "target", "f", "g", "config", "list", "owner", "loop", "edgepack_version",
           "input_width", "input_height", "input_channels", "num_classes", "task"}


def _names(node) -> set[str]:
    return {n.name for n in node.find_all(jinja2.nodes.Name)} | ({node.name} if isinstance(node, jinja2.nodes.Name) else set())


def test_every_template_value_in_code_is_escaped():
    """Parses every template: an output expression that reads free text (labels, names, tensor
    names, precisions, paths...) must end in that language's escaping filter. README.md files are
    documentation and exempt."""
    root = templates_root()
    env = jinja2.Environment()
    problems = []
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix != ".md"):
        tree = env.parse(path.read_text(encoding="utf-8"))
        for output in tree.find_all(jinja2.nodes.Output):
            for expr in output.nodes:
                if isinstance(expr, (jinja2.nodes.TemplateData, jinja2.nodes.Const)):
                    continue
                if isinstance(expr, jinja2.nodes.Filter) and expr.name in ESCAPES:
                    continue
                if isinstance(expr, jinja2.nodes.CondExpr) and all(n is None or isinstance(n, jinja2.nodes.Const) for n in (expr.expr1, expr.expr2)):
                    continue
                untrusted = _names(expr) - TRUSTED
                if untrusted:
                    problems.append(f"{path.relative_to(root)} line {expr.lineno}: {sorted(untrusted)}")
    assert not problems, problems


def test_gradlew_creates_the_wrapper_jar_then_runs_gradle(out, tmp_path):
    """The launcher written instead of Gradle's binary wrapper jar: without the jar and without
    Gradle it says what to do; with a `gradle` on PATH it makes the jar in a scratch folder (never
    configuring the project) and then starts GradleWrapperMain with the arguments."""
    [result] = build(out)
    gradlew = result.project / "gradlew"
    assert os.access(gradlew, os.X_OK)
    assert (result.project / "gradlew.bat").read_bytes().count(b"\r\n") > 10
    subprocess.run(["sh", "-n", str(gradlew)], check=True)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    missing = subprocess.run([str(gradlew), "tasks"], capture_output=True, text=True, env=env, cwd=result.project)
    assert missing.returncode == 1 and "open this folder in Android Studio" in missing.stderr
    # a stand-in for Gradle: `gradle wrapper` writes a jar whose GradleWrapperMain prints its arguments
    fake = tmp_path / "fake"
    (fake / "src/org/gradle/wrapper").mkdir(parents=True)
    (fake / "src/org/gradle/wrapper/GradleWrapperMain.java").write_text(
        "package org.gradle.wrapper;\npublic class GradleWrapperMain { public static void main(String[] a) {"
        " System.out.println(\"wrapper main: \" + String.join(\" \", a) + \" in \" + System.getProperty(\"user.dir\")); } }\n")
    subprocess.run(["javac", "-d", str(fake / "classes"), str(fake / "src/org/gradle/wrapper/GradleWrapperMain.java")], check=True)
    subprocess.run(["jar", "cf", str(fake / "wrapper.jar"), "-C", str(fake / "classes"), "."], check=True)
    (fake / "bin").mkdir()
    (fake / "bin/gradle").write_text(
        "#!/bin/sh\n[ -f settings.gradle ] && [ ! -f build.gradle.kts ] || { echo configured the wrong project >&2; exit 3; }\n"
        f"mkdir -p gradle/wrapper && cp {fake / 'wrapper.jar'} gradle/wrapper/gradle-wrapper.jar\n")
    (fake / "bin/gradle").chmod(0o755)
    env["PATH"] = f"{fake / 'bin'}:{env['PATH']}"
    ran = subprocess.run([str(gradlew), "assembleDebug", "--offline"], capture_output=True, text=True, env=env, cwd=result.project)
    assert ran.returncode == 0, ran.stderr
    assert f"wrapper main: assembleDebug --offline in {result.project}" in ran.stdout
    assert (result.project / "gradle/wrapper/gradle-wrapper.jar").is_file()


def test_nothing_is_written_when_one_platform_cannot_be_generated(out):
    """Both projects are planned before either is written: an iOS problem leaves no Android project."""
    manifest = load_manifest(out)
    manifest["artifacts"] = [a for a in manifest["artifacts"] if a["format"] != "coreml"]
    with pytest.raises(SpecError, match="no Core ML artifact"):
        build(out, manifest, targets=("android", "ios"))
    assert not (out / "android").exists() and not (out / "ios").exists()
