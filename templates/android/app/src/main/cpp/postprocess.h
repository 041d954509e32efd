// Pre/post-processing shared by the NCNN and MNN backends: letterbox geometry, YOLO decoding
// and NMS. Plain C++17 with no engine or JNI includes, so it compiles and is tested anywhere
// (edgepack tests it with the host g++ against its Python reference decoder).
#pragma once

#include <cstdint>
#include <vector>

namespace edgepack {

struct Detection {
    float x1, y1, x2, y2;  // model-input pixels (or original-image pixels after unletterbox)
    float score;
    int label;
};

// How an image of src_w x src_h maps into a dst_w x dst_h model input.
struct Letterbox {
    float scale_x = 1.f, scale_y = 1.f;
    float pad_x = 0.f, pad_y = 0.f;
    int resized_w = 0, resized_h = 0;
};

// keep_aspect=true: scale to fit and pad (centered); false: stretch to fill.
Letterbox compute_letterbox(int src_w, int src_h, int dst_w, int dst_h, bool keep_aspect);

// Map boxes from model-input pixels back to the source image (clamped to it).
void unletterbox(std::vector<Detection>& dets, const Letterbox& lb, int src_w, int src_h);

enum class Head { YoloV8, YoloV5 };

// output: the model's raw output, row-major.
//   YoloV8: [4 + num_classes, num_anchors] when channels_first, else [num_anchors, 4 + num_classes]
//   YoloV5: [num_anchors, 5 + num_classes]
// Boxes are cx, cy, w, h in model-input pixels; scores are already activated.
std::vector<Detection> decode(const float* output, int num_anchors, int num_classes, Head head,
                              bool channels_first, float score_threshold);

// Class-aware greedy NMS, highest score first (stable for equal scores), at most max_det boxes.
std::vector<Detection> nms(std::vector<Detection> dets, float iou_threshold, int max_det = 100);

float iou(const Detection& a, const Detection& b);

// RGBA8888 (with row stride in bytes) -> letterboxed float CHW tensor, (pixel - mean) / std,
// channel order RGB or BGR, pad value 114, bilinear resize.
void rgba_to_tensor(const uint8_t* rgba, int width, int height, int row_stride, const Letterbox& lb,
                    int dst_w, int dst_h, const float mean[3], const float std[3], bool bgr, float* out_chw);

}  // namespace edgepack
