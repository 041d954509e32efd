"""The generated iOS project: rendered for detect and classify, its project.pbxproj parsed with a
maintained parser (`pbxproj`, kronenthaler/mod-pbxproj) and every reference resolved, the plist,
scheme and JSON parsed, hostile names escaped, and the Python mirror of the Swift geometry tested.
Swift cannot be compiled on Linux: this is what can be verified here."""

from __future__ import annotations

import json
import plistlib
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from pbxproj import XcodeProject

from conftest import load_manifest, run_cli
from edgepack.apps import render_app
from edgepack.apps import ios_geometry as geo
from edgepack.apps.ios import swift_identifier, xcode_id
from edgepack.errors import SpecError

NASTY_NAME = 'Tom\'s "Détecteur" \\ <ü&> ✓'
BUNDLE = "com.example.my-app"


def render(out: Path, **options) -> Path:
    return render_app("ios", load_manifest(out), out, {"name": NASTY_NAME, "package": BUNDLE, **options})


@pytest.fixture(scope="module")
def detector_ios(detector_out):
    return render(detector_out)


@pytest.fixture(scope="module")
def classifier_ios(classifier_out):
    return render(classifier_out)


TARGET = swift_identifier(NASTY_NAME)


def _objects(project: Path):
    return XcodeProject.load(str(project / f"{TARGET}.xcodeproj" / "project.pbxproj")).objects


def _resolved_paths(project: Path) -> dict[str, Path]:
    """file reference id -> path on disk, following the group hierarchy as Xcode does."""
    objects = _objects(project)
    parent: dict[str, str] = {}
    for group in objects.get_objects_in_section("PBXGroup"):
        for child in group.children:
            parent[child] = group.get_id()
    resolved = {}
    for ref in objects.get_objects_in_section("PBXFileReference"):
        if ref.sourceTree != "<group>":
            continue
        parts, node = [ref.path], ref.get_id()
        while node in parent:
            node = parent[node]
            group = objects[node]
            if "path" in group:
                parts.append(group.path)
        resolved[ref.get_id()] = project.joinpath(*reversed(parts))
    return resolved


@pytest.mark.parametrize("fixture", ["detector_ios", "classifier_ios"])
def test_every_template_renders_cleanly(request, fixture):
    project = request.getfixturevalue(fixture)
    texts = [p for p in project.rglob("*") if p.is_file() and p.suffix in (".swift", ".plist", ".pbxproj", ".xcscheme", ".json", ".md")
             and ".mlpackage" not in p.as_posix()]  # the model package is copied, not rendered
    assert len(texts) >= 15
    for path in texts:
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"\{\{|\}\}|\{%|%\}", text), path
        if path.suffix == ".json":
            json.loads(text)
    info = plistlib.loads((project / TARGET / "Info.plist").read_bytes())
    assert info["CFBundleDisplayName"] == NASTY_NAME
    assert "NSCameraUsageDescription" in info and info["UILaunchScreen"] == {}
    scheme = ET.parse(project / f"{TARGET}.xcodeproj" / "xcshareddata" / "xcschemes" / f"{TARGET}.xcscheme").getroot()
    ids = {ref.get("BlueprintIdentifier") for ref in scheme.iter("BuildableReference")}
    assert ids == {xcode_id("app_target"), xcode_id("test_target")}


def test_pbxproj_references_and_build_phases(detector_ios):
    objects = _objects(detector_ios)
    paths = _resolved_paths(detector_ios)
    assert paths and all(p.exists() for p in paths.values()), [str(p) for p in paths.values() if not p.exists()]
    targets = {t.name: t for t in objects.get_targets()}
    assert set(targets) == {TARGET, f"{TARGET}Tests"}

    def phase_files(target, isa):
        phase = next(objects[p] for p in target.buildPhases if objects[p].isa == isa)
        return {paths[objects[b].fileRef].relative_to(detector_ios).as_posix() for b in phase.files}

    app_sources = phase_files(targets[TARGET], "PBXSourcesBuildPhase")
    on_disk = {p.relative_to(detector_ios).as_posix() for p in (detector_ios / TARGET).rglob("*.swift")}
    assert on_disk and on_disk <= app_sources
    assert any(s.endswith(".mlpackage") for s in app_sources)  # Xcode compiles the model and generates its class
    assert {f"{TARGET}/Models/labels.txt", f"{TARGET}/Assets.xcassets"} <= phase_files(targets[TARGET], "PBXResourcesBuildPhase")
    test_sources = phase_files(targets[f"{TARGET}Tests"], "PBXSourcesBuildPhase")
    assert test_sources == {p.relative_to(detector_ios).as_posix() for p in (detector_ios / f"{TARGET}Tests").glob("*.swift")}
    assert {f"{TARGET}Tests/golden.png", f"{TARGET}Tests/golden_expected.json"} <= phase_files(targets[f"{TARGET}Tests"], "PBXResourcesBuildPhase")
    settings = [c.buildSettings for c in objects.get_objects_in_section("XCBuildConfiguration")]
    assert {s["IPHONEOS_DEPLOYMENT_TARGET"] for s in settings if "IPHONEOS_DEPLOYMENT_TARGET" in s} == {"16.0"}
    assert {s["SWIFT_VERSION"] for s in settings if "SWIFT_VERSION" in s} == {"5.0"}
    assert BUNDLE in {s["PRODUCT_BUNDLE_IDENTIFIER"] for s in settings if "PRODUCT_BUNDLE_IDENTIFIER" in s}
    assert all(s["DEVELOPMENT_TEAM"] == "" for s in settings if "DEVELOPMENT_TEAM" in s)  # the developer picks the team


def test_rendering_is_deterministic(detector_out, detector_ios, tmp_path):
    first = (detector_ios / f"{TARGET}.xcodeproj" / "project.pbxproj").read_text()
    again = render(detector_out)
    assert (again / f"{TARGET}.xcodeproj" / "project.pbxproj").read_text() == first


def _swift_literals(text: str) -> list[str]:
    literals = re.findall(r'"((?:[^"\\]|\\.)*)"', text)
    return [re.sub(r"\\u\{([0-9a-f]+)\}", lambda m: chr(int(m.group(1), 16)), s).replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\") for s in literals]


def test_user_text_is_escaped_in_swift(detector_ios, detector_labels):
    info = (detector_ios / TARGET / "ModelInfo.swift").read_text(encoding="utf-8")
    literals = _swift_literals(info)
    assert NASTY_NAME in literals
    for label in detector_labels.read_text(encoding="utf-8").splitlines():
        assert label in literals
    assert "static let isDetector = true" in info


def test_golden_files_match_the_reference(detector_out, detector_ios):
    from PIL import Image

    manifest = load_manifest(detector_out)
    x = np.load(detector_out / manifest["validation"]["inputs"])["inputs"][0][0]
    image = np.asarray(Image.open(detector_ios / f"{TARGET}Tests" / "golden.png"))
    assert image.shape == (128, 128, 3)
    assert np.abs(image.transpose(2, 0, 1) / 255.0 - x).max() <= 0.5 / 255 + 1e-6
    expected = json.loads((detector_ios / f"{TARGET}Tests" / "golden_expected.json").read_text())
    reference = json.loads((detector_out / manifest["validation"]["reference_task_outputs"]).read_text())[0]
    assert len(expected["boxes"]) == len(reference) > 0
    first, ref = expected["boxes"][0], reference[0]
    assert first["label"] == manifest["model"]["labels"][ref["class"]]
    assert np.allclose(first["rect"], [ref["box"][0] / 128, ref["box"][1] / 128, (ref["box"][2] - ref["box"][0]) / 128, (ref["box"][3] - ref["box"][1]) / 128], atol=1e-5)


def test_classifier_project(classifier_ios, classifier_out):
    info = (classifier_ios / TARGET / "ModelInfo.swift").read_text()
    assert "static let isDetector = false" in info
    expected = json.loads((classifier_ios / f"{TARGET}Tests" / "golden_expected.json").read_text())
    assert expected["task"] == "classify" and expected["label"] in load_manifest(classifier_out)["model"]["labels"]


SWIFT_GEOMETRY = Path(__file__).resolve().parents[2] / "templates" / "ios" / "{{ target }}" / "Core" / "Geometry.swift"


def test_python_mirror_of_swift_geometry():
    """The same numbers GeometryTests.swift asserts."""
    assert geo.top_left_rect((0.1, 0.2, 0.3, 0.4)) == pytest.approx((0.1, 0.4, 0.3, 0.4))
    full = geo.view_rect((0, 0, 1, 1), (720, 1280), (300, 600), mirrored=False)
    assert full[3] == pytest.approx(600) and full[0] + full[2] / 2 == pytest.approx(150)
    left = geo.view_rect((0, 0, 0.5, 1), (720, 1280), (300, 600), mirrored=True)
    assert left[0] == pytest.approx(150)
    assert geo.frame_orientation("portrait", False) == "right"
    assert geo.frame_orientation("landscapeRight", False) == "up" and geo.frame_orientation("landscapeLeft", False) == "down"
    assert geo.frame_orientation("landscapeRight", True) == "down" and geo.frame_orientation("landscapeLeft", True) == "up"
    assert geo.upright_size(1280, 720, 90) == (720, 1280) and geo.upright_size(1280, 720, 180) == (1280, 720)
    a = [("x", (0.0, 0.0, 1.0, 1.0))]
    assert geo.f1(a, a, 0.5) == 1 and geo.f1(a, [], 0.5) == 0


def test_swift_geometry_matches_its_mirror():
    """Every case of the Swift rotation switch is in the Python table with the same answer, and
    Vision only ever gets unmirrored EXIF orientations."""
    swift = SWIFT_GEOMETRY.read_text()
    cases = re.findall(r"case \(\.(\w+), (true|false)\): return (\d+)", swift)
    assert len(cases) == 8
    assert {(device, front == "true"): int(degrees) for device, front, degrees in cases} == geo.FRAME_ROTATION
    exif = dict(re.findall(r"case (\d+): return \.(\w+)", swift))
    exif["0"] = re.search(r"default: return \.(\w+)", swift[swift.index("func exifOrientation"):]).group(1)
    assert {int(k): v for k, v in exif.items()} == geo.EXIF_FOR_ROTATION
    assert "Mirrored" not in swift


# --- the camera -> Vision -> preview chain, simulated with pixels -----------------------------
# Phone axes as the user sees the screen in portrait: +x right, +y up. Two public facts fix the
# sensors (Apple's Vision samples): in portrait the back camera's buffer must be turned 90 degrees
# clockwise (EXIF .right) to be upright, and the front camera's buffer shown with EXIF
# .leftMirrored (a transpose) gives the mirrored selfie view. From them, each buffer's "right" and
# "up" directions in phone axes:
SENSOR_AXES = {False: {"right": (0, -1), "up": (1, 0)},   # back camera
               True: {"right": (0, -1), "up": (-1, 0)}}   # front camera
# The upright screen in phone axes for each interface orientation (landscapeRight: bottom edge on
# the right, i.e. the phone turned 90 degrees counter-clockwise from portrait).
SCREEN_AXES = {"portrait": {"up": (0, 1), "right": (1, 0)}, "portraitUpsideDown": {"up": (0, -1), "right": (-1, 0)},
               "landscapeRight": {"up": (1, 0), "right": (0, -1)}, "landscapeLeft": {"up": (-1, 0), "right": (0, 1)}}


def _neg(v):
    return (-v[0], -v[1])


def physical_rotation(interface: str, front: bool) -> int:
    """Clockwise turn that makes the buffer show the camera's own (unmirrored) view upright: its up
    must be the screen's up, and its right the screen's right (the front camera looks back at the
    user, so its own right is the screen's left)."""
    axes, screen = SENSOR_AXES[front], SCREEN_AXES[interface]
    for degrees, (up, right) in {0: (axes["up"], axes["right"]), 90: (_neg(axes["right"]), axes["up"]),
                                 180: (_neg(axes["up"]), _neg(axes["right"])), 270: (axes["right"], _neg(axes["up"]))}.items():
        if up == screen["up"]:
            assert right == (_neg(screen["right"]) if front else screen["right"]), "a rotation alone must make it upright"
            return degrees
    raise AssertionError("no rotation")


def test_rotation_table_follows_from_the_sensor_mounting():
    # the two portrait facts fix the other six cases: both landscapes differ, front and back differ by 180
    assert {k: physical_rotation(*k) for k in geo.FRAME_ROTATION} == geo.FRAME_ROTATION


def _exif_apply(buffer: np.ndarray, exif: str) -> np.ndarray:
    """What Vision sees for a buffer and an EXIF orientation (EXIF 1, 6, 3, 8 and the mirrored 2, 5, 4, 7)."""
    return {"up": lambda b: b, "right": lambda b: np.rot90(b, -1), "down": lambda b: np.rot90(b, 2), "left": lambda b: np.rot90(b, 1),
            "upMirrored": lambda b: b[:, ::-1], "leftMirrored": lambda b: b.T, "downMirrored": lambda b: b[::-1],
            "rightMirrored": lambda b: np.rot90(b, 2).T}[exif](buffer)


@pytest.mark.parametrize("interface", geo.INTERFACE_ORIENTATIONS)
@pytest.mark.parametrize("front", [False, True])
def test_boxes_land_on_the_object_in_the_preview_mirrored_once(interface, front):
    """A scene with one object: the sensor delivers a rotated buffer; Vision (given the table's
    orientation) must see the scene as the camera sees it, and the box, mapped with viewRect,
    must land where the preview (mirrored for the front camera) shows the object. The old code
    (mirrored EXIF for the front camera plus viewRect(mirrored:)) fails this for the front camera."""
    height, width = (64, 36) if interface.startswith("portrait") else (36, 64)
    scene = np.zeros((height, width), np.uint8)  # the camera's own view, upright
    top, left, h, w = 5, 3, 10, 7  # an object in the top-left area
    scene[top:top + h, left:left + w] = 1
    buffer = np.rot90(scene, physical_rotation(interface, front) // 90)  # the sensor's buffer (counter-clockwise back)
    seen = _exif_apply(buffer, geo.frame_orientation(interface, front))
    assert np.array_equal(seen, scene)  # Vision sees the scene itself, unmirrored
    assert (seen.shape[1], seen.shape[0]) == geo.upright_size(buffer.shape[1], buffer.shape[0], geo.FRAME_ROTATION[(interface, front)])
    ys, xs = np.nonzero(seen)
    vision = (xs.min() / width, ys.min() / height, (xs.max() + 1 - xs.min()) / width, (ys.max() + 1 - ys.min()) / height)
    view = (width * 3, height * 3)  # same aspect: aspect-fill is a plain scale
    drawn = geo.view_rect(vision, (width, height), view, mirrored=front)
    preview = scene[:, ::-1] if front else scene  # AVCaptureVideoPreviewLayer mirrors the front camera
    ys, xs = np.nonzero(preview)
    assert drawn == pytest.approx((xs.min() * 3, ys.min() * 3, (xs.max() + 1 - xs.min()) * 3, (ys.max() + 1 - ys.min()) * 3))
    if front:  # mirroring twice (mirrored EXIF, then viewRect mirrored) puts the box on the wrong side
        twice = _exif_apply(buffer, {90: "leftMirrored", 270: "rightMirrored", 0: "upMirrored", 180: "downMirrored"}[
            geo.FRAME_ROTATION[(interface, front)]])
        ys2, xs2 = np.nonzero(twice)
        wrong = geo.view_rect((xs2.min() / width, ys2.min() / height, w / width, h / height), (width, height), view, mirrored=True)
        assert wrong[0] != pytest.approx(drawn[0])


def test_swift_uses_only_apis_of_its_deployment_target():
    """iOS 16 target: iOS 17 APIs only behind #available, no MainActor.assumeIsolated (iOS 17, and a
    trap off the main thread), Vision on the capture queue, unmirrored buffers."""
    app = SWIFT_GEOMETRY.parents[1]
    sources = {p.name: p.read_text() for p in app.rglob("*.swift")}
    everything = "\n".join(sources.values())
    assert "assumeIsolated" not in everything
    preview = sources["CameraPreview.swift"]
    guarded = preview[preview.index("if #available(iOS 17.0, *)"):preview.index("} else if connection.isVideoOrientationSupported")]
    for api in ("videoRotationAngle", "isVideoRotationAngleSupported"):
        assert everything.count(api) == guarded.count(api) > 0, api
    assert "effectiveGeometry" in preview  # iOS 16 API, reports the 180-degree landscape turns too
    processor = sources["FrameProcessor.swift"]
    assert "setSampleBufferDelegate(processor, queue: processor.queue)" in processor
    assert "automaticallyAdjustsVideoMirroring = false" in processor and "isVideoMirrored = false" in processor
    detector = sources["Detector.swift"]
    assert detector.count("lock.lock()") >= 3 and "Probabilities.from(" in detector


@pytest.mark.parametrize("bundle", ["no dots", "com.example.my_app", "1com.example"])
def test_bad_bundle_ids_are_rejected(detector_out, bundle):
    with pytest.raises(SpecError, match="bundle id"):
        render(detector_out, package=bundle)


def test_build_ios_needs_a_coreml_artifact(tmp_path, onnx_detector):
    out = tmp_path / "out"
    result = run_cli("build", "--target", "ios", str(onnx_detector), "--formats", "ncnn", "--precisions", "fp16", "-o", str(out))
    assert result.returncode == 2
    assert "no Core ML artifact" in result.stdout + result.stderr and "--formats coreml" in result.stdout + result.stderr
