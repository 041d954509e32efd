"""Int8 quantization that the format's own pip packages do not provide (ncnn) or that needs a
generated configuration (MNN)."""
