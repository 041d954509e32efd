"""Target formats. Each module registers itself in FORMATS on import."""

from edgepack.formats.base import FORMATS, ConversionJob, ConvertedModel, FormatInfo, TargetFormat
from edgepack.formats import ncnn, mnn, tflite, coreml  # noqa: F401  (registration)

__all__ = ["FORMATS", "ConversionJob", "ConvertedModel", "FormatInfo", "TargetFormat"]
