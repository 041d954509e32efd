"""The per-format child processes of a build (edgepack/workers.py), with real processes: entries
stream back as artifacts finish, a child that dies fails only the artifact it was building (the
rest of its format go to a new child), a bad-input error in a child reaches the parent with its
hint, and two formats really run at the same time."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgepack import workers
from edgepack.errors import SpecError


@dataclass(frozen=True)
class Planned:  # the shape of pipeline.PlannedArtifact
    format: str
    precision: str

    @property
    def id(self) -> str:
        return f"{self.format}-{self.precision}"


def building(payload: dict):
    """Runs in the child: one entry per artifact, with the child's pid and its start/end times."""
    for planned in payload["group"]:
        start = time.time()
        marker = Path(payload["dir"]) / f"crashed-{planned.id}"
        if planned.id in payload.get("crash", ()) and not marker.exists():
            marker.write_text("once")
            os.kill(os.getpid(), signal.SIGSEGV)
        if planned.id in payload.get("abort", ()):
            raise SpecError(f"{planned.id}: calibration image broken.png cannot be read", "remove it from --calib")
        time.sleep(payload.get("sleep", 0))
        yield {"id": planned.id, "pid": os.getpid(), "start": start, "end": time.time()}


def crashed(planned: Planned, why: str) -> dict:
    return {"id": planned.id, "crashed": why}


def run(plan: list[Planned], count: int, **payload) -> list[dict]:
    groups = workers.group_by_format(plan)
    return list(workers.run_groups(groups, building, lambda g: {**payload, "group": g.artifacts}, crashed, count))


def test_a_crash_fails_only_the_artifact_in_progress(tmp_path):
    plan = [Planned("ncnn", p) for p in ("fp32", "fp16", "int8")] + [Planned("mnn", "fp32")]
    entries = {e["id"]: e for e in run(plan, 2, dir=str(tmp_path), crash={"ncnn-fp16"})}
    assert set(entries) == {"ncnn-fp32", "ncnn-fp16", "ncnn-int8", "mnn-fp32"}
    assert entries["ncnn-fp16"] == {"id": "ncnn-fp16", "crashed": "its process was killed by SIGSEGV"}
    # what came before the crash was kept; what came after ran in a new child
    assert entries["ncnn-fp32"]["pid"] != entries["ncnn-int8"]["pid"]


def test_a_bad_input_error_in_a_child_is_raised_with_its_hint(tmp_path):
    plan = [Planned("tflite", "int8"), Planned("ncnn", "fp32")]
    with pytest.raises(SpecError) as caught:
        run(plan, 2, dir=str(tmp_path), abort={"tflite-int8"}, sleep=0.2)
    assert str(caught.value) == "tflite-int8: calibration image broken.png cannot be read (remove it from --calib)"


def test_two_formats_run_at_the_same_time(tmp_path):
    plan = [Planned("ncnn", "fp32"), Planned("mnn", "fp32"), Planned("tflite", "fp32")]
    entries = {e["id"]: e for e in run(plan, 2, dir=str(tmp_path), sleep=1.5)}
    assert len({e["pid"] for e in entries.values()}) == 3
    first, second = sorted(entries.values(), key=lambda e: e["start"])[:2]
    assert second["start"] < first["end"], "the second child started only after the first had finished"


def test_slowest_formats_start_first_and_workers_follow_the_cores(monkeypatch):
    plan = [Planned("ncnn", "fp32"), Planned("coreml", "fp32"), Planned("mnn", "int8"), Planned("tflite", "fp32")]
    assert [g.format for g in workers.group_by_format(plan)] == ["mnn", "tflite", "coreml", "ncnn"]
    plan = [Planned(f, "fp32") for f in ("ncnn", "mnn", "coreml", "tflite")] + [Planned("tflite", "int8"), Planned("ncnn", "int8")]
    assert [g.format for g in workers.group_by_format(plan)] == ["tflite", "ncnn", "coreml", "mnn"]
    monkeypatch.setenv("EDGEPACK_WORKERS", "1")
    assert workers.worker_count(4) == 1
    monkeypatch.delenv("EDGEPACK_WORKERS")
    assert 1 <= workers.worker_count(4) <= min(4, os.cpu_count() or 1)
    assert workers.worker_count(1) == 1


def test_children_end_with_the_parent(tmp_path):
    """A parent killed without cleanup (SIGKILL) takes its converter children with it."""
    import subprocess
    import sys

    script = tmp_path / "parent.py"
    script.write_text(
        "import sys; sys.path.insert(0, %r)\n"
        "import test_workers as t\n"
        "if __name__ == '__main__':\n"
        "    for e in t.run([t.Planned('ncnn', 'fp32')], 1, dir=%r, sleep=60): pass\n" % (str(Path(__file__).parent), str(tmp_path)))
    parent = subprocess.Popen([sys.executable, str(script)])
    deadline = time.time() + 60
    children: list[int] = []
    while time.time() < deadline and not children:
        time.sleep(0.2)
        out = subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True, text=True).stdout.split()
        children = [int(pid) for pid in out]
    assert children, "the parent started no child"
    parent.kill()
    parent.wait()

    def alive() -> list[int]:
        return [pid for pid in children if Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]]

    deadline = time.time() + 5
    while alive() and time.time() < deadline:
        time.sleep(0.2)
    assert not alive(), f"children {alive()} outlived their parent (the child sleeps 60 s)"


def loads_only_in_the_parent() -> str:
    import multiprocessing

    if multiprocessing.parent_process() is not None:  # what facenet-pytorch's ONet did in a fresh interpreter
        raise RuntimeError("operator torchvision::nms does not exist")
    return "model"


class ImportsDifferentlyInAChild:
    def __reduce__(self):
        return (loads_only_in_the_parent, ())


def test_a_model_a_child_cannot_load_is_reported_not_crashed(tmp_path):
    plan = [Planned("ncnn", "fp32"), Planned("mnn", "fp32")]
    with pytest.raises(workers.ModelNotLoadable) as caught:
        run(plan, 2, dir=str(tmp_path), model=ImportsDifferentlyInAChild())
    assert str(caught.value) == "RuntimeError: operator torchvision::nms does not exist"
