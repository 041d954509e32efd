"""Rendering a platform's templates with a context computed from the manifest alone.

Templates hold no logic beyond substitution, simple conditions and loops. Every file under
templates/<platform>/ is a Jinja template; path parts may contain variables; a file that
renders to nothing is left out (how optional backends drop their sources).
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

from edgepack.errors import TemplateError
from edgepack.registry import Registry

APPS: Registry[type["AppRenderer"]] = Registry("app platform")
LEFTOVER = re.compile(r"\{\{|\}\}|\{%|%\}|\{#|#\}")


def templates_root() -> Path:
    """templates/ at the top of the repository (an editable install) or inside the package."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent.parent / "templates", here.parent / "templates"):
        if candidate.is_dir():
            return candidate
    raise TemplateError("edgepack's templates folder is missing from this installation")


# --- escaping filters: user text (app name, labels) must not break the generated sources ---

def _escape(value: str, specials: dict[str, str], control: str) -> str:
    return "".join(specials.get(ch) or (control.format(ord(ch)) if ord(ch) < 0x20 else ch) for ch in str(value))


def kotlin_string(value: str) -> str:
    """Body of a Kotlin "..." literal."""
    return _escape(value, {"\\": "\\\\", '"': '\\"', "$": "\\$", "\n": "\\n"}, "\\u{:04x}")


def cpp_string(value: str) -> str:
    """Body of a C++ "..." literal (UTF-8 source); octal escapes, which stop after 3 digits
    (a hex escape would swallow following hex-digit characters), and no trigraphs."""
    return _escape(value, {"\\": "\\\\", '"': '\\"', "?": "\\?", "\n": "\\n"}, "\\{:03o}")


def xml_text(value: str) -> str:
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;").replace("'", "&apos;")


def android_string(value: str) -> str:
    """An Android string resource: XML-escaped, with aapt's own escapes for quotes and @/?."""
    text = str(value).replace("\\", "\\\\").replace("'", "\\'").replace('"', '\\"').replace("\n", "\\n")
    if text[:1] in ("@", "?"):
        text = "\\" + text
    return xml_text(text).replace("&apos;", "'").replace("&quot;", '"')


def _platform_filters() -> dict[str, Any]:
    from edgepack.apps.ios import pbx_string, swift_string

    return {"pbx": pbx_string, "swift_string": swift_string}


FILTERS = {"kotlin_string": kotlin_string, "cpp_string": cpp_string, "xml": xml_text, "android_string": android_string, "tojson": lambda v: json.dumps(v, ensure_ascii=False)}


class AppRenderer(ABC):
    platform: ClassVar[str]

    @abstractmethod
    def context(self, manifest: dict[str, Any], out_dir: Path, options: dict[str, Any]) -> dict[str, Any]:
        """Every template variable, computed from the manifest and the app options."""

    def copy_assets(self, manifest: dict[str, Any], out_dir: Path, project: Path, context: dict[str, Any]) -> None:
        """Copy models and labels into the rendered project."""


def render_app(platform: str, manifest: dict[str, Any], out_dir: Path, options: dict[str, Any]) -> Path:
    """Render OUT/<platform>/ atomically (staging folder, then rename)."""
    import jinja2

    renderer = APPS.get(platform)()
    context = renderer.context(manifest, out_dir, options)
    root = templates_root() / platform
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(root)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters.update(FILTERS)
    env.filters.update(_platform_filters())
    target = out_dir / platform
    staging = Path(tempfile.mkdtemp(prefix=f".{platform}.partial-", dir=out_dir))
    try:
        for source in sorted(p for p in root.rglob("*") if p.is_file()):
            relative = source.relative_to(root).as_posix()
            try:
                path_text = env.from_string(relative).render(context)
                text = env.get_template(relative).render(context)
            except jinja2.UndefinedError as e:
                raise TemplateError(f"{platform}: template {relative}: {e.message}") from None
            except jinja2.TemplateSyntaxError as e:
                raise TemplateError(f"{platform}: template {relative} line {e.lineno}: {e.message}") from None
            if not text.strip():
                continue  # an optional file whose feature is off
            leftover = LEFTOVER.search(text) if source.suffix not in (".cpp", ".h") else None
            if leftover and "{{" in text:
                raise TemplateError(f"{platform}: {relative} still contains template syntax after rendering")
            dest = staging / path_text
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_text(text, encoding="utf-8")
            if source.stat().st_mode & 0o111:
                dest.chmod(0o755)
        renderer.copy_assets(manifest, out_dir, staging, context)
        (staging / "edgepack-context.json").write_text(json.dumps(context, indent=2, ensure_ascii=False, default=str))
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if target.exists():
        shutil.rmtree(target)
    staging.rename(target)
    return target
