"""Target formats. Each module registers itself in FORMATS on import."""

from edgepack.formats.base import FORMATS, ConversionJob, ConvertedModel, FormatInfo, TargetFormat
from edgepack.formats import ncnn, mnn, tflite, coreml  # noqa: F401  (registration)
from edgepack.formats import onnx_format, openvino, executorch, tensorrt  # noqa: F401  (registration; not default-enabled)

__all__ = ["FORMATS", "ConversionJob", "ConvertedModel", "FormatInfo", "TargetFormat"]
