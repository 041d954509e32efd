"""What every task module shares: the task description (`TaskSpec`), the agreement record,
output parts for per-part metrics, and the errors a wrong task/head guess raises.

A task module (detect.py, classify.py, ...) implements `TaskHandler`:
- `bind`: pick the output(s) the task decodes, by name or by shape, before anything runs;
- `check_reference`: refuse a head whose decoded reference outputs are impossible, and record
  what the reference says about the outputs (logits or probabilities, ...);
- `results` / `agreement`: per-image task results and the agreement of a candidate with them;
- `parts`: slices of an output that deserve their own metrics (box coordinates vs scores).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from edgepack.errors import SpecError

# an agreement over fewer reference objects than this says nothing: the record says "not measurable"
MIN_IMAGES_WITH_OBJECTS = 3
MIN_OBJECTS = 5


@dataclass(frozen=True)
class TaskSpec:
    task: str  # see edgepack.spec.TASKS
    head: str | None  # see edgepack.spec.TASK_HEADS; None for tasks without heads
    score_threshold: float = 0.25
    iou_threshold: float = 0.45
    num_classes: int | None = None
    output: str | None = None  # the output the task decodes (None until bound, or for tasks without one)
    output_names: tuple[str, ...] = ()  # every output, in the reference's order
    output_shapes: tuple[tuple[int, ...], ...] = ()
    map_threshold: float = 0.3
    facts: tuple[tuple[str, Any], ...] = ()  # what the reference showed (classifier_output, ...), see `fact`
    input_shape: tuple[int, ...] = ()  # 1, C, H, W: boxes are checked against it

    @classmethod
    def for_model(cls, spec: Any, output_names: list[str], output_shapes: list[tuple[int, ...]],
                  input_shape: tuple[int, ...] = ()) -> "TaskSpec":
        """The task of a build (`spec` is a BuildSpec), bound to the model's outputs; raises
        SpecError (HeadMismatch) when no output fits the task."""
        from edgepack.spec import task_head
        from edgepack.validate.tasks import bind

        m, v = spec.model, spec.validation
        task = cls(m.task, task_head(m.task, m.head), v.score_threshold, v.iou_threshold, output=m.task_output,
                   map_threshold=float(m.map_threshold), input_shape=tuple(int(d) for d in input_shape))
        return bind(task, output_names, output_shapes)

    @classmethod
    def for_job(cls, job: Any) -> "TaskSpec":
        """The task of a conversion job (its spec's thresholds, its labels' class count)."""
        task = cls.for_model(job.spec, list(job.model.output_names), [tuple(s) for s in job.model.output_shapes],
                             tuple(job.model.input_shape))
        return dataclasses.replace(task, num_classes=len(job.labels or []) or task.num_classes)

    @classmethod
    def for_manifest(cls, manifest: dict[str, Any]) -> "TaskSpec":
        """The task recorded in an output folder's manifest (revalidation, device tests). The
        manifest is untrusted: a recorded output name must be one of the outputs."""
        from edgepack.spec import TASK_HEADS

        model, post = manifest["model"], manifest["postprocessing"]
        task = str(model.get("task"))
        if task not in TASK_HEADS:
            raise SpecError(f"manifest: unknown task {task!r} (choose from: {', '.join(TASK_HEADS)})")
        head = model.get("head")
        if TASK_HEADS[task]:
            head = head if head in TASK_HEADS[task] else ("raw" if task == "detect" else TASK_HEADS[task][0])
        else:
            head = None
        outputs = manifest["artifacts"][0]["outputs"] if manifest.get("artifacts") else []
        names = tuple(str(o["name"]) for o in outputs)
        shapes = tuple(tuple(int(d) for d in o["shape"]) for o in outputs)
        output = model.get("task_output")
        if output is not None and output not in names:
            raise SpecError(f"manifest: task_output {output!r} is not one of the outputs ({', '.join(names)})")
        facts = tuple((k, model[k]) for k in FACT_KEYS if model.get(k) is not None)
        input_shape = tuple(int(d) for d in (manifest.get("preprocessing") or {}).get("input_shape") or ())
        task_spec = cls(task, head, float(post["score_threshold"]), float(post["iou_threshold"]), model.get("num_classes") or None,
                        output, names, shapes, float(model.get("map_threshold") or 0.3), facts, input_shape)
        if output is None and names:
            from edgepack.validate.tasks import bind

            task_spec = bind(task_spec, list(names), list(shapes))  # manifests written before task_output existed
        return task_spec

    def fact(self, key: str, default: Any = None) -> Any:
        return dict(self.facts).get(key, default)

    def with_facts(self, **facts: Any) -> "TaskSpec":
        return dataclasses.replace(self, facts=tuple({**dict(self.facts), **facts}.items()))

    @property
    def main_index(self) -> int:
        return self.output_names.index(self.output) if self.output in self.output_names else 0

    def output_index(self, name: str) -> int:
        return self.output_names.index(name)

    def manifest_fields(self) -> dict[str, Any]:
        """Model-level manifest fields: the task's output, its head, and what the reference showed."""
        fields = {"head": self.head, "task_output": self.output, "map_threshold": self.map_threshold if self.head == "map" else None}
        fields.update(dict(self.facts))
        return fields


# model-level facts read back from a manifest (written by `TaskSpec.manifest_fields`)
FACT_KEYS = ("classifier_output", "map_values", "map_channels", "protos_output", "mask_coefficients", "num_keypoints",
             "keypoint_dims", "ctc_blank", "time_major", "channels_first")


@dataclass
class Agreement:
    """The task agreement of a candidate with the reference. `value` None means not measurable
    (or not applicable); `note` says why."""

    metric: str | None
    value: float | None
    note: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def measurable(self) -> bool:
        return self.value is not None


@dataclass(frozen=True)
class Part:
    """Channels `index` along `axis` (of the output without its batch dimension) of one output."""

    name: str
    axis: int
    index: tuple[int, ...]

    def take(self, stacked: np.ndarray) -> np.ndarray:
        """The part of an output stacked over images (images x 1 x ...)."""
        return np.take(stacked, list(self.index), axis=self.axis + 2)


def part(name: str, axis: int, start: int, stop: int, step: int = 1) -> Part:
    return Part(name, axis, tuple(range(start, stop, step)))


def shape_text(shape: tuple[int, ...] | list[int]) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]"


def outputs_text(task: TaskSpec) -> str:
    return ", ".join(f"{n} {shape_text(s)}" for n, s in zip(task.output_names, task.output_shapes))


class HeadMismatch(SpecError):
    """A task/head guess that does not fit the model's outputs (or whose decoded reference
    outputs are impossible). One line: what does not fit, why, and what to pick instead."""


class TaskHandler:
    name: ClassVar[str]
    dataset_metric: ClassVar[bool] = False  # `validate --dataset` can measure it

    def bind(self, task: TaskSpec) -> TaskSpec:
        return task

    def check_reference(self, task: TaskSpec, reference: list[np.ndarray]) -> TaskSpec:
        return task

    def results(self, task: TaskSpec, outputs: list[np.ndarray]) -> list[Any]:
        return []

    def agreement(self, task: TaskSpec, reference: list[Any], candidate: list[Any]) -> Agreement:
        return Agreement(None, None, f"not applicable: task {task.task!r}" + (f" head {task.head!r}" if task.head else "") + " has no decoder")

    def parts(self, task: TaskSpec, index: int) -> list[Part]:
        return []

    def expected_classes(self, task: TaskSpec) -> int | None:
        return None

    def looks_like(self, task: TaskSpec, reference: list[np.ndarray] | None) -> bool:
        """Whether to suggest this task/head for outputs another guess did not fit: stricter
        than `bind` + `check_reference`, which accept what the user asks for explicitly."""
        return True

    def to_json(self, results: list[Any]) -> list[Any]:
        return [r.to_list() if hasattr(r, "to_list") else r for r in results]


def pick_output(task: TaskSpec, fits: list[int], what: str) -> TaskSpec:
    """Bind the task to the named output or to the only output that fits; refuse otherwise
    (`edgepack.validate.tasks.bind` adds which task/head would fit)."""
    if task.output is not None:
        if task.output not in task.output_names:
            raise HeadMismatch(f"task_output {task.output!r} is not an output of the model (outputs: {outputs_text(task)})")
        if task.output_index(task.output) not in fits:
            i = task.output_index(task.output)
            raise HeadMismatch(f"{what} does not fit output {task.output!r} {shape_text(task.output_shapes[i])} (outputs: {outputs_text(task)})")
        return task
    if len(fits) == 1:
        return dataclasses.replace(task, output=task.output_names[fits[0]])
    if not fits:
        raise HeadMismatch(f"{what} fits none of the outputs: {outputs_text(task)}")
    names = ", ".join(f"{task.output_names[i]} {shape_text(task.output_shapes[i])}" for i in fits)
    raise HeadMismatch(f"{what} fits several outputs ({names}): name the one to decode with model.task_output")


def stack_rows(main: np.ndarray) -> np.ndarray:
    """images x 1 x A x B -> images x A x B (the batch dimension of each image is 1)."""
    return main.reshape(main.shape[0], *main.shape[-2:]) if main.ndim >= 3 else main
