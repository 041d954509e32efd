"""tensor: any model; no decoder. Every output is compared numerically (per output), the task
agreement is "not applicable", and int8 artifacts are never `ok` (nothing vouches for them)."""

from __future__ import annotations

from edgepack.validate.tasks.base import TaskHandler


class TensorTask(TaskHandler):
    name = "tensor"
