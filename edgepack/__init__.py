"""edgepack: one trained vision model in, validated mobile artifacts and starter apps out.

Public SDK:
    edgepack.convert(model=None, example_input=None, config=None, **overrides) -> manifest dict
    edgepack.revalidate(out_dir) -> manifest dict  (`edgepack.validate` is the subpackage once imported)
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def convert(model: Any = None, example_input: Any = None, config: str | None = None, **overrides: Any) -> dict[str, Any]:
    """Convert a model (nn.Module, or a path / `module:factory` string; None = built-in example).

    `overrides` take the CLI's names: task, formats, precisions, input_shape, labels, calib, output, strict.
    """
    from edgepack.pipeline import Build
    from edgepack.spec import load_spec

    module = None
    if model is not None and not isinstance(model, str):
        module = model
    elif model is not None:
        overrides["model"] = model
    spec = load_spec(config, overrides)
    return Build(spec, module=module, example_input=example_input).run()


def revalidate(out_dir: str) -> dict[str, Any]:
    """Run every artifact of an output folder again (the `edgepack validate OUT` command)."""
    from edgepack.validate.rerun import revalidate as _revalidate

    return _revalidate(out_dir)
