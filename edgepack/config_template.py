"""The commented edgepack.yaml that `edgepack init` writes."""

CONFIG_TEMPLATE = """\
# edgepack.yaml: every key is optional; command-line flags override this file.
# Paths are relative to this file.

model:
  # .onnx file, Keras .keras/.h5 file, TorchScript .pt file, or package.module:factory returning an nn.Module.
  # Leave out to use the built-in example (builtin:shapes-detector / builtin:shapes-classifier).
  # source: model.onnx
  task: detect              # detect | classify
  head: yolov8              # detectors: yolov8 ([1,4+C,N]) | yolov5 ([1,N,5+C]) | raw (no decoding)
  input_shape: [1, 3, 320, 320]   # needed for dynamic ONNX inputs and TorchScript files
  color_order: rgb          # rgb | bgr: the channel order the model was trained with
  mean: [0, 0, 0]           # pixel units (0..255): x = (pixel - mean) / std
  std: [255, 255, 255]
  resize: letterbox         # letterbox (keep aspect, pad with 114) | stretch
  # labels: labels.txt      # one class name per line (default: the model's built-in names or class_N)
  # name: my-model         # default: the source file's name
  description: ""
  version: "1.0"
  author: ""
  license: ""

calibration:                # int8 only
  # images: calib/          # a folder of representative images (100+ recommended)
  count: 200                # sampled with a fixed seed
  method: minmax            # minmax | percentile | kl (ncnn; MNN: EMA, or KL for kl)
  seed: 0
  int8_io: int8             # TFLite full int8: int8 | float input/output tensors

validation:
  images: null              # held-back images; default: generated scenes
  count: 8
  score_threshold: 0.25
  iou_threshold: 0.45
  strict: false             # true: a degraded artifact fails the build
  latency_runs: 10
  threads: 2

targets:                    # format: [precisions]; leave out for the defaults
  ncnn: [fp32, fp16]
  mnn: [fp32, fp16, int8-weight]
  tflite: [fp32, fp16, int8-dynamic]
  coreml: [fp16, int8-weight]

app:
  name: Edgepack Demo
  package: dev.edgepack.demo

output: edgepack-out
"""
