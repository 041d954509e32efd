"""sequence: CTC outputs [1, T, V] (per time step, scores over a vocabulary whose index 0 is the
CTC blank, as PaddleOCR/CRNN recognizers export them), or time-major [T, 1, V] (PyTorch CRNNs).

A result is the greedy CTC decoding of one image: argmax per step, repeats collapsed, blanks
dropped. Agreement (`sequence_agreement`): the share of images whose decoded sequence equals
the reference's, over the images where the reference decodes a non-empty sequence.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgepack.validate.tasks.base import MIN_IMAGES_WITH_OBJECTS, Agreement, TaskHandler, TaskSpec, pick_output

BLANK = 0


def ctc_greedy(scores: np.ndarray, blank: int = BLANK) -> tuple[int, ...]:
    """T x V scores -> the label sequence (repeats collapsed, blanks removed)."""
    best = scores.argmax(axis=-1)
    keep = np.ones(len(best), bool)
    keep[1:] = best[1:] != best[:-1]
    return tuple(int(v) for v in best[keep] if v != blank)


class SequenceTask(TaskHandler):
    name = "sequence"

    def bind(self, task: TaskSpec) -> TaskSpec:
        fits = [i for i, s in enumerate(task.output_shapes) if len(s) == 3 and 1 in s[:2] and min(s) > 0 and s[2] >= 2]
        task = pick_output(task, fits, "head 'ctc' ([1, T, V] or [T, 1, V] per-step scores)")
        shape = task.output_shapes[task.main_index]
        return task.with_facts(ctc_blank=BLANK, time_major=bool(shape[0] != 1))

    def _steps(self, task: TaskSpec, image: np.ndarray) -> np.ndarray:
        """One image's T x V scores (the stacked arrays keep the batch axis of size 1)."""
        return image.reshape(image.shape[-3:]).reshape(-1, image.shape[-1])

    def looks_like(self, task: TaskSpec, reference: list[np.ndarray] | None) -> bool:
        """Only softmax outputs are suggested as CTC: any [1, A, B] output would fit otherwise."""
        if reference is None:
            return False
        main = reference[task.main_index].astype(np.float64)
        return bool(main.min() >= 0 and np.all(np.abs(main.sum(axis=-1) - 1) < 1e-3))

    def results(self, task: TaskSpec, outputs: list[np.ndarray]) -> list[Any]:
        main = outputs[task.main_index] if len(outputs) > task.main_index else outputs[0]
        return [list(ctc_greedy(self._steps(task, image))) for image in main]

    def agreement(self, task: TaskSpec, reference: list[Any], candidate: list[Any]) -> Agreement:
        texts = [i for i, r in enumerate(reference) if r]
        details = {"images_with_sequences": len(texts),
                   "all_images_equal": round(float(np.mean([a == b for a, b in zip(reference, candidate)])), 6) if reference else None}
        if len(texts) < MIN_IMAGES_WITH_OBJECTS:
            note = (f"not measurable: the reference decodes a non-empty sequence on {len(texts)} of {len(reference)} images "
                    f"(at least {MIN_IMAGES_WITH_OBJECTS} needed)")
            return Agreement("sequence_agreement", None, note, details)
        return Agreement("sequence_agreement", float(np.mean([reference[i] == candidate[i] for i in texts])), None, details)
