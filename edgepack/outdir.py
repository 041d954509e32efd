"""The output folder (OUT): recognised by its manifest's schema, locked for the length of a run,
and updated in place, so that nothing edgepack did not write is ever touched.

A run builds into a staging folder *inside* OUT (same filesystem, so a mount point or a
read-only sibling does not matter), then moves its files into place, removes the files the
previous build wrote that the new one does not (only when they are unchanged since), and
replaces `manifest.json` last. Generated app projects, device reports and the user's own files
live beside the conversion and are never part of it.

Runs killed with SIGKILL leave a staging folder and a work folder; both carry the PID of their
run in their name and are removed by the next run once that process is gone.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from edgepack.errors import OutputError

MANIFEST_NAME = "manifest.json"
SCHEMA_PREFIX = "edgepack.manifest/"
LOCK_NAME = ".edgepack.lock"
STAGING_PREFIX = ".edgepack-staging-"
WORK_PREFIX = "edgepack-work-"
_PID_NAME = re.compile(r"-(\d+)-[^-]*$")

# errnos that mean "this place cannot be written", reported with the path and exit 9
_OUTPUT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EACCES, errno.EPERM, errno.EROFS, errno.EBUSY, errno.EXDEV, errno.ENOTDIR}


def umask() -> int:
    current = os.umask(0)
    os.umask(current)
    return current


def output_error(e: OSError, what: str = "output", where: Path | None = None) -> OutputError:
    """One line naming the path and the reason of a filesystem failure (`where` when the error has no file name)."""
    path = e.filename or where or "?"
    reason = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
              errno.EROFS: "read-only filesystem", errno.EBUSY: "busy (a mount point?)"}.get(e.errno, e.strerror or str(e))
    return OutputError(f"cannot write {what + ' ' if what else ''}{path}: {reason}", "free space, fix permissions or choose another -o")


def is_output_error(e: BaseException) -> bool:
    return isinstance(e, OSError) and e.errno in _OUTPUT_ERRNOS


def read_own_manifest(out: Path) -> dict[str, Any] | None:
    """OUT's manifest when it is an edgepack manifest (by its schema, not its file name)."""
    path = out / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if isinstance(data, dict) and isinstance(data.get("schema"), str) and data["schema"].startswith(SCHEMA_PREFIX):
        return data
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _dead_run_folders(parent: Path, prefix: str) -> list[Path]:
    if not parent.is_dir():
        return []
    found = []
    for path in parent.iterdir():
        match = _PID_NAME.search(path.name)
        if path.name.startswith(prefix) and path.is_dir() and not path.is_symlink() and match and not _pid_alive(int(match.group(1))):
            found.append(path)
    return found


def clean_stale_work_folders() -> list[Path]:
    """Work folders of runs that were killed (their PID is gone)."""
    removed = _dead_run_folders(Path(tempfile.gettempdir()), WORK_PREFIX)
    for path in removed:
        shutil.rmtree(path, ignore_errors=True)
    return removed


def work_folder() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix=f"{WORK_PREFIX}{os.getpid()}-")


def _is_leftover(path: Path) -> bool:
    return path.name == LOCK_NAME or path.name.startswith(STAGING_PREFIX)


def check_output_folder(out: Path) -> dict[str, Any] | None:
    """Refuse an OUT that exists and is not an edgepack output; return its manifest if any."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"output folder {out} exists and is a file", "choose another -o")
    if not out.exists():
        return None
    manifest = read_own_manifest(out)
    if manifest is None and any(not _is_leftover(p) for p in out.iterdir()):
        raise OutputError(
            f"output folder {out} exists and is not an edgepack output (no {MANIFEST_NAME} with schema {SCHEMA_PREFIX}N)",
            "choose a new or empty folder with -o",
        )
    return manifest


@dataclass
class Publication:
    """What a finished build wrote into OUT, and what it left alone."""

    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # previous files that were changed since: not ours to delete


def _confined(out: Path, rel: str) -> Path | None:
    """OUT/rel when rel is a plain relative path that stays inside OUT, else None (untrusted manifests)."""
    if not isinstance(rel, str) or not rel or os.path.isabs(rel) or "\\" in rel or "\x00" in rel:
        return None
    parts = Path(rel).parts
    if any(p in ("..", "") for p in parts):
        return None
    path = out / rel
    try:
        path.resolve().relative_to(out.resolve())
    except (ValueError, OSError):
        return None
    return path


def owned_files(manifest: dict[str, Any] | None) -> dict[str, str | None]:
    """relative path -> sha256 (None: unknown) of every file a previous build recorded writing."""
    if not manifest:
        return {}
    owned = manifest.get("owned_files")
    if isinstance(owned, dict):
        return {str(k): (v if isinstance(v, str) else None) for k, v in owned.items()}
    return {}


def _tree_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root]
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.is_symlink())


def record_owned(staging: Path) -> dict[str, str]:
    """relative path -> sha256 of every file in the staging folder (goes into the manifest)."""
    from edgepack.tools import sha256_file

    return {str(p.relative_to(staging)): sha256_file(p) for p in _tree_files(staging) if p.name != MANIFEST_NAME}


def _apply_mode(path: Path, mask: int) -> None:
    """The modes a plain `open`/`mkdir` would give under the user's umask (scripts keep their x bit)."""
    for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
        if p.is_symlink():
            continue
        executable = p.is_dir() or p.stat().st_mode & 0o111
        p.chmod((0o777 if executable else 0o666) & ~mask)


def publish(staging: Path, out: Path, previous: dict[str, Any] | None) -> Publication:
    """Move the staging folder's files into OUT; remove what the previous build wrote and this
    one does not, when unchanged since; `manifest.json` goes last."""
    from edgepack.tools import sha256_file

    result = Publication()
    _apply_mode(staging, umask())
    new_files = [p.relative_to(staging) for p in _tree_files(staging)]
    new_set = {str(p) for p in new_files}
    old = owned_files(previous)
    for rel, digest in old.items():
        if rel in new_set or rel == MANIFEST_NAME:
            continue
        path = _confined(out, rel)
        if path is None or not path.is_file() or path.is_symlink():
            continue
        if digest is not None and sha256_file(path) != digest:
            result.kept.append(rel)
            continue
        path.unlink()
        result.removed.append(rel)
        _remove_empty_parents(path.parent, out)
    for rel in sorted(new_files, key=lambda p: (str(p) == MANIFEST_NAME, str(p))):
        dest = out / rel
        if dest.is_symlink() or (dest.exists() and dest.is_dir()):
            raise OutputError(f"cannot write {dest}: a folder or link of yours is in the way", "move it, then run again")
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staging / rel, dest)
        result.written.append(str(rel))
    return result


def _remove_empty_parents(folder: Path, out: Path) -> None:
    while folder != out and out in folder.parents:
        try:
            folder.rmdir()
        except OSError:
            return
        folder = folder.parent


@contextlib.contextmanager
def locked_output(out: Path) -> Iterator[tuple[Path, dict[str, Any] | None]]:
    """Check and lock OUT, clean stale staging folders of dead runs, yield (staging, previous manifest).
    The caller publishes the staging folder; on any failure everything this run created goes."""
    out = out.resolve()
    previous = check_output_folder(out)
    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = open(out / LOCK_NAME, "a+")
    except OSError as e:
        raise output_error(e, "output folder") from None
    acquired = False
    try:
        try:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            acquired = True
        except BlockingIOError:
            raise OutputError(f"another edgepack run is writing {out}", "wait for it to finish, or use another -o") from None
        for stale in _dead_run_folders(out, STAGING_PREFIX):
            shutil.rmtree(stale, ignore_errors=True)
        clean_stale_work_folders()
        previous = read_own_manifest(out)  # re-read under the lock
        staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=out))
        try:
            yield staging, previous
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    except OSError as e:
        if is_output_error(e):
            raise output_error(e, "output folder", out) from None
        raise
    finally:
        if acquired:  # the lock file belongs to the run that holds it
            with contextlib.suppress(OSError):
                (out / LOCK_NAME).unlink()
        lock.close()
        if created:
            with contextlib.suppress(OSError):
                out.rmdir()  # only when the run left nothing behind
