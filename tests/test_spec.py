import pytest

from edgepack.errors import SpecError
from edgepack.spec import load_spec, parse_shape


def test_config_paths_are_relative_to_the_file_and_flags_win(tmp_path):
    (tmp_path / "labels.txt").write_text("a\n")
    (tmp_path / "cal").mkdir()
    config = tmp_path / "edgepack.yaml"
    config.write_text(
        "model:\n  source: m.onnx\n  labels: labels.txt\n  task: classify\n"
        "calibration:\n  images: cal\n"
        "targets:\n  ncnn: [fp16]\n  mnn: [fp32, int8-weight]\n"
    )
    spec = load_spec(config)
    assert spec.model.source == str(tmp_path / "m.onnx")
    assert spec.calibration.images == str(tmp_path / "cal")
    assert spec.targets == {"ncnn": ["fp16"], "mnn": ["fp32", "int8-weight"]}
    spec = load_spec(config, {"task": "detect", "precisions": "fp32"})
    assert spec.model.task == "detect"
    assert spec.targets == {"ncnn": ["fp32"], "mnn": ["fp32"]}  # the flag replaces the per-format lists


def test_precisions_apply_to_the_formats_that_support_them():
    spec = load_spec(None, {"formats": "ncnn,mnn", "precisions": "fp16,int8-weight"})
    assert spec.targets == {"ncnn": ["fp16"], "mnn": ["fp16", "int8-weight"]}
    with pytest.raises(SpecError, match="int8-weight"):
        load_spec(None, {"formats": "ncnn", "precisions": "int8-weight"})


def test_module_factory_is_not_treated_as_a_path(tmp_path):
    config = tmp_path / "e.yaml"
    config.write_text("model:\n  source: mypkg.models:build\n")
    assert load_spec(config).model.source == "mypkg.models:build"


@pytest.mark.parametrize("text", ["1,3,224", "2,3,224,224", "1,3,a,224", "1,4,224,224"])
def test_bad_shapes(text):
    with pytest.raises(SpecError):
        parse_shape(text)


def test_bad_values_list_the_choices(tmp_path):
    config = tmp_path / "e.yaml"
    config.write_text("model:\n  head: yolov9\n")
    with pytest.raises(SpecError, match="'yolov9' is not valid .choose from: yolov8, yolov5"):
        load_spec(config)
    config.write_text("- a list\n")
    with pytest.raises(SpecError, match="mapping"):
        load_spec(config)
