"""Rendering a platform's templates from typed manifest records, and writing the project so that a
re-build keeps what the developer changed.

Every file under templates/<platform>/ is a Jinja template; path parts may contain variables; a
file that renders to nothing is left out (how optional backends drop their sources). Templates see
only the records of edgepack.apps.records and values computed from them, and every value that
reaches a source file goes through that language's escaping filter; user text is data, never a
template.

Writing happens in two phases: every platform asked for is planned first (templates rendered into
memory, copied files hashed), and only then written, so a bad value cannot leave one project
written and the other not. Each project keeps `.edgepack-generated.json` (relative path -> sha256
of what edgepack wrote). On a re-build a file is overwritten only when it is still exactly what
edgepack wrote; a file the developer changed, or one edgepack did not create, is kept and
reported. Files edgepack wrote earlier and no longer generates are removed only when unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Iterable

from edgepack.errors import OutputError, SpecError, TemplateError
from edgepack.registry import Registry
from edgepack.tools import sha256_file

APPS: Registry[type["AppRenderer"]] = Registry("app platform")
RECORD_NAME = ".edgepack-generated.json"
RECORD_SCHEMA = "edgepack.generated/1"


def templates_root() -> Path:
    """templates/ at the top of the repository (an editable install) or inside the package."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent.parent / "templates", here.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise TemplateError("edgepack's templates folder is missing from this installation")


# --- escaping filters: one per target language; user text must not break or change the sources ---

def _escape(value: str, specials: dict[str, str], control: str) -> str:
    return "".join(specials.get(ch) or (control.format(ord(ch)) if ord(ch) < 0x20 or ord(ch) == 0x7F else ch) for ch in str(value))


def kotlin_string(value: str) -> str:
    """Body of a Kotlin (and Gradle Kotlin DSL) "..." literal: no `$` templates, no line breaks."""
    return _escape(value, {"\\": "\\\\", '"': '\\"', "$": "\\$", "\n": "\\n", "\r": "\\r", "\t": "\\t",
                           "\u2028": "\\u2028", "\u2029": "\\u2029"}, "\\u{:04x}")


def cpp_string(value: str) -> str:
    """Body of a C++ "..." literal (UTF-8 source); octal escapes, which stop after 3 digits
    (a hex escape would swallow following hex-digit characters), and no trigraphs."""
    return _escape(value, {"\\": "\\\\", '"': '\\"', "?": "\\?", "\n": "\\n"}, "\\{:03o}")


def xml_text(value: str) -> str:
    """XML text or attribute value (also plist strings); control characters XML 1.0 forbids are dropped."""
    cleaned = "".join(ch for ch in str(value) if ord(ch) >= 0x20 or ch in "\t\n\r")
    return cleaned.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;").replace("'", "&apos;")


def android_string(value: str) -> str:
    """An Android string resource: XML-escaped, with aapt's own escapes for quotes and @/?."""
    text = str(value).replace("\\", "\\\\").replace("'", "\\'").replace('"', '\\"').replace("\n", "\\n")
    if text[:1] in ("@", "?"):
        text = "\\" + text
    return xml_text(text).replace("&apos;", "'").replace("&quot;", '"')


def kotlin_float(value: float) -> str:
    """A finite number as a Kotlin Float literal."""
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        raise TemplateError(f"cannot write {value!r} as a Kotlin number")
    return f"{number!r}f"


def swift_double(value: float) -> str:
    number = float(value)
    if number != number or number in (float("inf"), float("-inf")):
        raise TemplateError(f"cannot write {value!r} as a Swift number")
    return repr(number)


def integer_literal(value: int) -> str:
    """An integer, for any language (refuses anything else, bools included)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TemplateError(f"expected an integer, got {value!r:.40}")
    return str(value)


def _platform_filters() -> dict[str, Any]:
    from edgepack.apps.ios import pbx_string, swift_string

    return {"pbx": pbx_string, "swift_string": swift_string}


FILTERS = {
    "kotlin_string": kotlin_string, "cpp_string": cpp_string, "xml": xml_text, "android_string": android_string,
    "kotlin_float": kotlin_float, "swift_double": swift_double, "int": integer_literal,
    "tojson": lambda v: json.dumps(v, ensure_ascii=False),
}


# --- what a platform renderer provides ---

@dataclass(frozen=True)
class PlannedFile:
    """One file of a project: rendered text (`data`) or a copy of a file under OUT (`source`)."""

    path: str  # relative, POSIX, inside the project
    sha256: str
    data: bytes | None = None
    source: Path | None = None
    executable: bool = False
    always_refresh: bool = False  # models, labels, generated config: updated on every build when ours


@dataclass
class AppPlan:
    platform: str
    project: Path
    files: list[PlannedFile]


@dataclass
class AppResult:
    platform: str
    project: Path
    written: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # the developer's edits and files edgepack did not write
    removed: list[str] = field(default_factory=list)  # stale files edgepack wrote earlier, unchanged since
    replaced: list[str] = field(default_factory=list)  # generated config / models the developer had changed


class AppRenderer(ABC):
    platform: ClassVar[str]
    # templates (relative paths under templates/<platform>/) that are generated configuration:
    # refreshed on every build like the models, never treated as the developer's code
    refresh_templates: ClassVar[frozenset[str]] = frozenset()

    @abstractmethod
    def context(self, manifest: Any, out_dir: Path, options: dict[str, Any]) -> dict[str, Any]:
        """Every template variable, computed from the typed manifest and the app options."""

    @abstractmethod
    def assets(self, manifest: Any, out_dir: Path, context: dict[str, Any]) -> list[tuple[str, Path | bytes]]:
        """Files copied or generated into the project besides the templates: (path, source file or bytes)."""


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _environment(root: Path):
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(root)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(FILTERS)
    env.filters.update(_platform_filters())
    return env


def _project_path(text: str, where: str) -> str:
    """A rendered path must stay inside the project."""
    parts = text.split("/")
    if not text or text.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in text or re.search(r"[\x00-\x1f]", text):
        raise TemplateError(f"{where}: rendered path {text!r} is not inside the project")
    return text


def plan_app(platform: str, manifest: dict[str, Any], out_dir: Path, options: dict[str, Any]) -> AppPlan:
    """Everything OUT/<platform>/ should contain, rendered in memory; nothing is written."""
    import jinja2

    from edgepack.apps.records import parse_manifest

    out_dir = Path(out_dir)
    renderer = APPS.get(platform)()
    records = parse_manifest(manifest, out_dir)
    context = renderer.context(records, out_dir, options)
    root = templates_root() / platform
    env = _environment(root)
    files: dict[str, PlannedFile] = {}
    for source in sorted(p for p in root.rglob("*") if p.is_file()):
        relative = source.relative_to(root).as_posix()
        try:
            path_text = _project_path(env.from_string(relative).render(context), f"{platform}: template {relative}")
            text = env.get_template(relative).render(context)
        except jinja2.UndefinedError as e:
            raise TemplateError(f"{platform}: template {relative}: {e.message}") from None
        except jinja2.TemplateSyntaxError as e:
            raise TemplateError(f"{platform}: template {relative} line {e.lineno}: {e.message}") from None
        if not text.strip():
            continue  # an optional file whose feature is off
        if path_text.endswith(".bat"):
            text = text.replace("\r\n", "\n").replace("\n", "\r\n")  # cmd.exe scripts keep CRLF line ends
        data = text.encode("utf-8")
        files[path_text] = PlannedFile(path_text, sha256_bytes(data), data=data, executable=bool(source.stat().st_mode & 0o111),
                                       always_refresh=relative in renderer.refresh_templates)
    for path_text, content in renderer.assets(records, out_dir, context):
        _project_path(path_text, f"{platform}: asset")
        if isinstance(content, bytes):
            files[path_text] = PlannedFile(path_text, sha256_bytes(content), data=content, always_refresh=True)
        else:
            if not content.is_file():
                raise SpecError(f"{content} is listed in manifest.json but missing", "run `edgepack convert` again")
            files[path_text] = PlannedFile(path_text, sha256_file(content), source=content, always_refresh=True)
    return AppPlan(platform, out_dir / platform, [files[k] for k in sorted(files)])


# --- writing ---

def _load_record(project: Path) -> dict[str, set[str]]:
    """path -> acceptable hashes of what edgepack wrote (a list while a build is in progress)."""
    path = project / RECORD_NAME
    if not path.is_file() or path.is_symlink():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        entries = data["files"] if data.get("schema") == RECORD_SCHEMA else {}
    except (OSError, ValueError, KeyError, AttributeError, TypeError):
        return {}  # unreadable: treat every existing file as the developer's
    record: dict[str, set[str]] = {}
    for rel, hashes in entries.items() if isinstance(entries, dict) else ():
        hashes = [hashes] if isinstance(hashes, str) else hashes
        if isinstance(rel, str) and isinstance(hashes, list) and all(isinstance(h, str) for h in hashes):
            try:
                record[_project_path(rel, "record")] = set(hashes)
            except TemplateError:
                continue
    return record


def _write_record(project: Path, files: dict[str, Iterable[str]]) -> None:
    data = {"schema": RECORD_SCHEMA, "note": "files edgepack generated here (sha256); edit freely: a re-build keeps changed files",
            "files": {rel: sorted(h) if len(set(h)) > 1 else next(iter(h)) for rel, h in sorted(files.items())}}
    _atomic_write(project / RECORD_NAME, (json.dumps(data, indent=1) + "\n").encode(), executable=False)


def _atomic_write(dest: Path, data: bytes | None, executable: bool, source: Path | None = None) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            if source is not None:
                with open(source, "rb") as src:
                    shutil.copyfileobj(src, f, 1 << 20)
            else:
                f.write(data or b"")
        os.chmod(tmp, 0o755 if executable else 0o644)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _current_hash(project: Path, rel: str) -> str | None:
    """sha256 of the file at rel, or None if absent; 'foreign' when it is not a plain file of the project."""
    path = project / rel
    if not path.exists() and not path.is_symlink():
        return None
    if path.is_symlink() or not path.is_file() or not path.resolve().is_relative_to(project.resolve()):
        return "foreign"
    for parent in Path(rel).parents:
        if (project / parent).is_symlink():
            return "foreign"
    return sha256_file(path)


def write_app(plan: AppPlan) -> AppResult:
    """Write a planned project, keeping the developer's edits (see the module docstring)."""
    project = plan.project
    result = AppResult(plan.platform, project)
    try:
        if project.is_symlink() or (project.exists() and not project.is_dir()):
            raise OutputError(f"{project} exists and is not a folder", "move it away, then build again")
        project.mkdir(parents=True, exist_ok=True)
        record = _load_record(project)
        planned = {f.path: f for f in plan.files}
        decisions: list[tuple[PlannedFile, str]] = []
        for f in plan.files:
            current = _current_hash(project, f.path)
            # ours: still what edgepack wrote; generated configuration and models are ours as
            # long as edgepack wrote that path (they must match the new model)
            ours = f.path in record and (current in record[f.path] or (f.always_refresh and current != "foreign"))
            if ours and current not in record.get(f.path, ()) and current != f.sha256:
                result.replaced.append(f.path)
            if current == f.sha256:
                decisions.append((f, "same"))
            elif current is None or ours:
                decisions.append((f, "write"))
            else:
                decisions.append((f, "keep"))
        stale = []
        for rel in sorted(set(record) - set(planned)):
            current = _current_hash(project, rel)
            if current is None:
                continue
            stale.append((rel, "remove" if current in record[rel] else "keep"))
        # the record lists old and new hashes while files change, so an interrupted build still
        # recognises every file it wrote
        pending: dict[str, set[str]] = {rel: set(h) for rel, h in record.items()}
        for f, action in decisions:
            if action in ("write", "same"):
                pending.setdefault(f.path, set()).add(f.sha256)
        _write_record(project, pending)
        final: dict[str, set[str]] = {}
        for f, action in decisions:
            if action == "keep":
                result.kept.append(f.path)
                continue
            if action == "write":
                _atomic_write(project / f.path, f.data, f.executable, f.source)
                result.written.append(f.path)
            else:
                if f.executable and not os.access(project / f.path, os.X_OK):
                    os.chmod(project / f.path, 0o755)
                result.unchanged.append(f.path)
            final[f.path] = {f.sha256}
        for rel, action in stale:
            if action == "remove":
                (project / rel).unlink()
                result.removed.append(rel)
                _prune_empty_dirs(project, Path(rel).parent)
            else:
                result.kept.append(rel)
        _write_record(project, final)
    except OSError as e:
        raise OutputError(f"cannot write {project}: {e.strerror or e}", "check permissions and free space") from None
    return result


def _prune_empty_dirs(project: Path, folder: Path) -> None:
    while str(folder) not in ("", "."):
        try:
            (project / folder).rmdir()
        except OSError:
            return
        folder = folder.parent


def generate_apps(platforms: list[str], manifest: dict[str, Any], out_dir: Path, options: dict[str, Any]) -> list[AppResult]:
    """Plan every platform, then write them all (what `edgepack build` calls)."""
    plans = [plan_app(platform, manifest, Path(out_dir), options) for platform in platforms]
    return [write_app(plan) for plan in plans]


def report(results: list[AppResult]) -> None:
    """One line per project, then each kept file (a developer's edit or a file edgepack did not write)."""
    from edgepack import console

    for r in results:
        console.info(f"{r.platform}: {r.project}  ({len(r.written)} written, {len(r.unchanged)} unchanged"
                     f"{f', {len(r.removed)} stale removed' if r.removed else ''}{f', {len(r.kept)} kept' if r.kept else ''})")
        for rel in r.kept:
            console.info(f"  kept your edit: {rel}")
        if r.kept:
            console.info("  (delete a kept file, or the whole folder, and build again to get edgepack's version)")
        for rel in r.replaced:
            console.info(f"  updated generated file (your edit replaced): {rel}")


def render_app(platform: str, manifest: dict[str, Any], out_dir: Path, options: dict[str, Any]) -> Path:
    """Render one platform into OUT/<platform>/ (see generate_apps); returns the project folder."""
    return generate_apps([platform], manifest, out_dir, options)[0].project
