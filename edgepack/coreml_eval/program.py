"""Load a saved ML Program with coremltools' own readers and evaluate it op by op.

Reading: `coremltools.utils.load_spec` reads the .mlpackage (Manifest.json, the model.mlmodel
protobuf in coremltools' proto classes); coremltools' MIL loader
(`converters.mil.frontend.milproto.load`) turns the program into MIL operations and reads every
weight from `weights/weight.bin` through its blob-file reader (`libmilstoragepython`). Nothing here
parses the protobuf or the blob format itself.

Evaluating: operations run in program order through the op table (`ops.OPS`); constants and the
compile-time `constexpr_*` decompression ops run once at load, as Core ML does. Every output is
cast to the dtype the program declares (fp16 values are stored as float16) and checked against
the declared shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgepack.coreml_eval.ops import OPS, Args, as_dtype


class UnsupportedOps(Exception):
    """The program uses operations the evaluator has no function for."""

    def __init__(self, ops: list[str]) -> None:
        self.ops = ops
        super().__init__(f"no evaluator for ML Program op(s): {', '.join(ops)}")


class EvaluationError(Exception):
    """An operation could not be evaluated (a parameter the op table does not cover, a shape
    that differs from the one the program declares)."""

    def __init__(self, op_type: str, name: str, detail: str) -> None:
        self.op_type = op_type
        super().__init__(f"{op_type} '{name}': {detail}")


@dataclass
class Step:
    type: str
    name: str
    inputs: dict[str, str | tuple[str, ...]]  # input name -> variable name(s)
    outputs: list[str]
    out_dtypes: list[Any]
    out_shapes: list[tuple[int, ...] | None]


@dataclass
class MLProgram:
    """The `main` function of an ML Program, ready to run on numpy inputs."""

    steps: list[Step]
    constants: dict[str, Any]  # variable name -> value (consts and decompressed constexpr outputs)
    inputs: dict[str, tuple[tuple[int, ...], Any]]  # input name -> (shape, dtype)
    outputs: list[str]
    op_types: list[str] = field(default_factory=list)  # every op type in the program, sorted

    @classmethod
    def from_spec(cls, model_spec: Any, weights_dir: Path) -> "MLProgram":
        from edgepack.coreml_eval.importing import coremltools_readers
        from edgepack.native import captured_native_output

        coremltools_readers()
        with captured_native_output("coremltools", (1, 2)):
            from coremltools.converters.mil.frontend.milproto.load import load
            from coremltools.converters.mil.mil import types

            program = load(model_spec, model_spec.specificationVersion, str(weights_dir))
        function = program.functions["main"]
        operations = list(function.operations)
        op_types = sorted({o.op_type for o in operations})
        missing = [t for t in op_types if t not in OPS]
        if missing:
            raise UnsupportedOps(missing)
        if any(o.blocks for o in operations):
            raise UnsupportedOps(sorted({o.op_type for o in operations if o.blocks}))

        def dtype_of(var: Any) -> Any:
            try:
                return np.dtype(types.nptype_from_builtin(var.dtype))
            except Exception:  # strings, dicts, lists: no numpy dtype
                return None

        def shape_of(var: Any) -> tuple[int, ...] | None:
            shape = getattr(var, "shape", None)
            if shape is None or not all(isinstance(d, (int, np.integer)) for d in shape):
                return None
            return tuple(int(d) for d in shape)

        constants: dict[str, Any] = {}
        steps: list[Step] = []
        # Variables by identity -> a name unique in this evaluation: coremltools' loader can give two
        # const ops one name (a pool's kernel and the classify op's labels were both `const_0` in a
        # coremltools classifier), and literals have no producing op at all.
        env_names: dict[int, str] = {id(var): name for name, var in function.inputs.items()}
        taken = set(env_names.values())

        def name_of(var: Any, literal_name: str) -> str:
            if id(var) not in env_names:
                name = var.name if var.op is not None else literal_name
                while name in taken:
                    name += "'"
                taken.add(name)
                env_names[id(var)] = name
                if var.op is None:  # a literal default: its value is known now
                    constants[name] = _const_value(var.val)
            return env_names[id(var)]

        for operation in operations:
            outputs = list(operation.outputs)
            if operation.op_type == "const":
                constants[name_of(outputs[0], outputs[0].name)] = _const_value(outputs[0].val)
                continue
            inputs: dict[str, str | tuple[str, ...]] = {}
            for key, value in operation.inputs.items():
                if isinstance(value, (list, tuple)):
                    inputs[key] = tuple(name_of(v, f"{operation.name}::{key}[{i}]") for i, v in enumerate(value))
                else:
                    inputs[key] = name_of(value, f"{operation.name}::{key}")
            step = Step(operation.op_type, operation.name, inputs, [name_of(o, o.name) for o in outputs],
                        [dtype_of(o) for o in outputs], [shape_of(o) for o in outputs])
            steps.append(step)
        program_inputs = {name: (shape_of(var), dtype_of(var)) for name, var in function.inputs.items()}
        evaluated = cls(steps, constants, program_inputs, [env_names.get(id(v), v.name) for v in function.outputs], op_types)
        evaluated._fold_compile_time_ops()
        return evaluated

    def _fold_compile_time_ops(self) -> None:
        """constexpr_* ops depend on constants only: decompress them once. fp16 constants are then
        kept widened to float32 (exact), since every op reads float inputs as float32 anyway."""
        remaining = []
        for step in self.steps:
            if step.type.startswith("constexpr_"):
                for name, value in zip(step.outputs, self._execute(step, self.constants)):
                    self.constants[name] = value
            else:
                remaining.append(step)
        self.steps = remaining
        for name, value in self.constants.items():
            if isinstance(value, np.ndarray) and value.dtype == np.float16:
                self.constants[name] = value.astype(np.float32)

    def _execute(self, step: Step, env: dict[str, Any]) -> list[Any]:
        values = {
            key: tuple(env[n] for n in names) if isinstance(names, tuple) else env[names]
            for key, names in step.inputs.items()
        }
        try:
            with np.errstate(all="ignore"):
                result = OPS[step.type](Args(step.type, values, step.out_dtypes, step.out_shapes))
        except Exception as e:
            raise EvaluationError(step.type, step.name, str(e).splitlines()[0] if str(e) else type(e).__name__) from e
        results = list(result) if isinstance(result, tuple) else [result]
        if len(results) != len(step.outputs):
            raise EvaluationError(step.type, step.name, f"{len(results)} outputs, the program declares {len(step.outputs)}")
        stored = []
        for value, dtype, shape in zip(results, step.out_dtypes, step.out_shapes):
            if dtype is not None and dtype != np.dtype(object):
                value = as_dtype(value, dtype)
                if shape is not None and value.shape != shape:
                    raise EvaluationError(step.type, step.name, f"shape {list(value.shape)}, the program declares {list(shape)}")
            stored.append(value)
        return stored

    def run(self, inputs: dict[str, np.ndarray], keep: tuple[str, ...] = ()) -> dict[str, Any]:
        """The program's outputs (and the variables named in `keep`) for one set of inputs."""
        env: dict[str, Any] = dict(self.constants)
        for name, (shape, dtype) in self.inputs.items():
            value = np.asarray(inputs[name]).astype(dtype or np.float32, copy=False)
            if shape is not None and value.shape != shape:
                raise ValueError(f"input {name}: shape {list(value.shape)}, the program expects {list(shape)}")
            env[name] = value
        for step in self.steps:
            for name, value in zip(step.outputs, self._execute(step, env)):
                env[name] = value
        return {name: env[name] for name in (*self.outputs, *keep)}


def _const_value(value: Any) -> Any:
    """A const's value as numpy, or a Python list for MIL lists (the classify op's labels)."""
    if hasattr(value, "ls"):  # coremltools' mil_list
        return [_const_value(v) for v in value.ls]
    if isinstance(value, (str, bytes)):
        return value
    return np.asarray(value)
