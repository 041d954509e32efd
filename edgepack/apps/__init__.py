"""App platforms: each module computes a template context from the typed manifest records
(edgepack.apps.records); templates live in templates/<platform>/. Registered in APPS."""

from edgepack.apps.base import APPS, AppRenderer, AppResult, generate_apps, render_app, report
from edgepack.apps import android, ios  # noqa: F401  (registration)

__all__ = ["APPS", "AppRenderer", "AppResult", "generate_apps", "render_app", "report"]
