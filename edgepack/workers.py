"""Each format's conversions and validations in a child process of its own.

Why: a converter's memory is returned when its process ends (litert-torch, coremltools and MNN's
quantizer each hold a GB or more), a converter that crashes takes down only its own format, and
two formats convert at once on two cores. One child per format, not per artifact, so a
format's imports and shared intermediates (the onnx2torch module, pnnx's graph) are paid once.

The child gets the build by pickling (spawn: no inherited threads from torch or onnxruntime),
streams one manifest entry per finished artifact back over a pipe (so work done before a crash
is kept), and reports a bad-input error (SpecError, a full disk) for the parent to raise.
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import signal
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any, Callable, Iterator

from edgepack import console

# formats ordered by how long they usually take (benchmarks/, YOLOv8n-sized at 640): the slowest
# start first, so the short ones fill the cores at the end. With full int8, calibration dominates
# (MNN 247 s, TFLite 130 s, ncnn 72 s); without it, TFLite's and Core ML's conversions do (48 s and
# 44 s with validation, against 11-17 s for MNN and ncnn).
_SLOW_FIRST = ("tflite", "coreml", "executorch", "openvino", "ncnn", "mnn", "onnx", "tensorrt")
_SLOW_FIRST_INT8 = ("mnn", "tflite", "executorch", "ncnn", "openvino", "onnx", "tensorrt", "coreml")


@dataclass
class FormatGroup:
    """The planned artifacts of one format, built in one child."""

    format: str
    artifacts: list[Any]  # PlannedArtifact, in plan order


def group_by_format(plan: list[Any]) -> list[FormatGroup]:
    groups: dict[str, FormatGroup] = {}
    for planned in plan:
        groups.setdefault(planned.format, FormatGroup(planned.format, [])).artifacts.append(planned)
    rank = {name: i for i, name in enumerate(_SLOW_FIRST)}
    rank_int8 = {name: i for i, name in enumerate(_SLOW_FIRST_INT8)}

    def order(group: FormatGroup) -> tuple[bool, int]:
        if any(p.precision == "int8" for p in group.artifacts):  # a group with calibration before any without
            return False, rank_int8.get(group.format, len(rank_int8))
        return True, rank.get(group.format, len(rank))

    return sorted(groups.values(), key=order)


def worker_count(groups: int) -> int:
    """Concurrent children: one per core, at most one per format (EDGEPACK_WORKERS overrides)."""
    wanted = os.environ.get("EDGEPACK_WORKERS", "")
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    count = int(wanted) if wanted.isdigit() and int(wanted) > 0 else cores
    return max(1, min(count, groups))


def _die_with_parent(parent: int) -> None:
    """Linux: the kernel kills this child when the edgepack process ends, even by SIGKILL or a
    SIGTERM that runs no cleanup, so no orphaned converter keeps a core busy."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent's cleanup is all there is
        return
    if os.getppid() != parent:  # the parent ended before prctl took effect
        os._exit(1)


class ModelNotLoadable(Exception):
    """The child could not unpickle the build (a model class whose package imports differently in a
    fresh interpreter): the caller builds the rest in its own process."""


def _child_main(connection: Connection, run_group: Callable[..., Iterator[dict]], payload_bytes: bytes, prefix: str, parent: int) -> None:
    _die_with_parent(parent)
    # a terminal's Ctrl-C reaches the whole process group: the parent decides and ends its children
    # (an interrupt raised inside an import here could abort the child with SIGABRT)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    console.become_child(prefix)
    try:
        payload = pickle.loads(payload_bytes)
    except Exception as e:  # noqa: BLE001 -- any import failure of the user's package
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else ""
        connection.send(("unloadable", f"{type(e).__name__}: {first}"))
        connection.close()
        return
    try:
        for entry in run_group(payload):
            connection.send(("entry", entry))
        connection.send(("done", None))
    except BaseException as e:  # noqa: BLE001 -- reported to the parent, which decides
        try:
            connection.send(("abort", e))
        except Exception:  # an exception that cannot be pickled: its text is enough
            connection.send(("abort", RuntimeError(f"{type(e).__name__}: {e}")))
    finally:
        connection.close()


def _death(exitcode: int | None) -> str:
    if exitcode is not None and exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        hint = " (out of memory?)" if name == "SIGKILL" else ""
        return f"its process was killed by {name}{hint}"
    return f"its process exited with code {exitcode}"


def run_groups(
    groups: list[FormatGroup],
    run_group: Callable[[Any], Iterator[dict]],
    payload_for: Callable[[FormatGroup], Any],
    crashed_entry: Callable[[Any, str], dict],
    workers: int,
) -> Iterator[dict]:
    """Run every group in a child, `workers` at a time; yield manifest entries as they arrive.

    `run_group(payload)` runs in the child and yields one entry per artifact; `crashed_entry(planned,
    why)` makes the record of an artifact whose child died. An exception the child reports is raised
    here once the running children are stopped; ModelNotLoadable when a child cannot unpickle its
    payload (nothing of that group was built).
    """
    context = multiprocessing.get_context("spawn")
    pending = list(groups)
    running: dict[Any, tuple[Any, Connection, FormatGroup, list[str]]] = {}  # sentinel -> (process, conn, group, done ids)
    try:
        while pending or running:
            while pending and len(running) < workers:
                group = pending.pop(0)
                parent_end, child_end = context.Pipe(duplex=False)
                process = context.Process(
                    target=_child_main, args=(child_end, run_group, pickle.dumps(payload_for(group)), group.format, os.getpid()),
                    name=f"edgepack-{group.format}", daemon=True,
                )
                process.start()
                child_end.close()
                console.info(f"  started {group.format} ({', '.join(p.precision for p in group.artifacts)}) in process {process.pid}")
                running[process.sentinel] = (process, parent_end, group, [])
            ready = wait([c for _, c, _, _ in running.values()] + list(running))[0]
            key = next(k for k, (_, c, _, _) in running.items() if ready in (k, c))
            process, conn, group, done = running[key]
            message = _receive(conn)
            if message is not None:
                kind, value = message
                if kind == "entry":
                    done.append(value["id"])
                    yield value
                    continue
                if kind == "abort":
                    raise value
                if kind == "unloadable":
                    raise ModelNotLoadable(value)
            # "done", or the child is gone
            process.join()
            del running[key]
            conn.close()
            left = [p for p in group.artifacts if p.id not in done]
            if left:  # died: the artifact in progress failed, the rest go to a new child
                yield crashed_entry(left[0], _death(process.exitcode))
                if left[1:]:
                    pending.insert(0, FormatGroup(group.format, left[1:]))
    finally:
        for process, conn, _, _ in running.values():
            process.terminate()
            process.join(5)
            conn.close()


def _receive(conn: Connection) -> tuple[str, Any] | None:
    """The next message, or None once the child has gone (closed pipe, no message left)."""
    try:
        if conn.poll():
            return conn.recv()
    except (EOFError, OSError):
        return None
    return None
