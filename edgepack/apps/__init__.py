"""App platforms: each module computes a template context from the manifest; templates live in
templates/<platform>/. Registered in APPS."""

from edgepack.apps.base import APPS, AppRenderer, render_app
from edgepack.apps import android, ios  # noqa: F401  (registration)

__all__ = ["APPS", "AppRenderer", "render_app"]
