#include "postprocess.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace edgepack {

Letterbox compute_letterbox(int src_w, int src_h, int dst_w, int dst_h, bool keep_aspect) {
    Letterbox lb;
    if (!keep_aspect) {
        lb.scale_x = static_cast<float>(dst_w) / src_w;
        lb.scale_y = static_cast<float>(dst_h) / src_h;
        lb.resized_w = dst_w;
        lb.resized_h = dst_h;
        return lb;
    }
    const float scale = std::min(static_cast<float>(dst_w) / src_w, static_cast<float>(dst_h) / src_h);
    lb.resized_w = std::max(1, static_cast<int>(std::lround(src_w * scale)));
    lb.resized_h = std::max(1, static_cast<int>(std::lround(src_h * scale)));
    lb.scale_x = static_cast<float>(lb.resized_w) / src_w;
    lb.scale_y = static_cast<float>(lb.resized_h) / src_h;
    lb.pad_x = static_cast<float>((dst_w - lb.resized_w) / 2);
    lb.pad_y = static_cast<float>((dst_h - lb.resized_h) / 2);
    return lb;
}

void unletterbox(std::vector<Detection>& dets, const Letterbox& lb, int src_w, int src_h) {
    for (auto& d : dets) {
        d.x1 = std::clamp((d.x1 - lb.pad_x) / lb.scale_x, 0.f, static_cast<float>(src_w));
        d.x2 = std::clamp((d.x2 - lb.pad_x) / lb.scale_x, 0.f, static_cast<float>(src_w));
        d.y1 = std::clamp((d.y1 - lb.pad_y) / lb.scale_y, 0.f, static_cast<float>(src_h));
        d.y2 = std::clamp((d.y2 - lb.pad_y) / lb.scale_y, 0.f, static_cast<float>(src_h));
    }
}

std::vector<Detection> decode(const float* output, int num_anchors, int num_classes, Head head,
                              bool channels_first, float score_threshold) {
    std::vector<Detection> dets;
    const int box_channels = head == Head::YoloV8 ? 4 : 5;
    const int channels = box_channels + num_classes;
    auto at = [&](int anchor, int channel) {
        return channels_first ? output[channel * num_anchors + anchor] : output[anchor * channels + channel];
    };
    for (int a = 0; a < num_anchors; ++a) {
        const float objectness = head == Head::YoloV5 ? at(a, 4) : 1.f;
        int best = 0;
        float best_score = -1.f;
        for (int c = 0; c < num_classes; ++c) {
            const float s = at(a, box_channels + c) * objectness;
            if (s > best_score) {  // first maximum wins, as numpy's argmax
                best_score = s;
                best = c;
            }
        }
        if (best_score <= score_threshold) continue;
        const float cx = at(a, 0), cy = at(a, 1), w = at(a, 2), h = at(a, 3);
        dets.push_back({cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, best_score, best});
    }
    return dets;
}

float iou(const Detection& a, const Detection& b) {
    const float x1 = std::max(a.x1, b.x1), y1 = std::max(a.y1, b.y1);
    const float x2 = std::min(a.x2, b.x2), y2 = std::min(a.y2, b.y2);
    const float inter = std::max(0.f, x2 - x1) * std::max(0.f, y2 - y1);
    const float area_a = (a.x2 - a.x1) * (a.y2 - a.y1), area_b = (b.x2 - b.x1) * (b.y2 - b.y1);
    return inter / std::max(area_a + area_b - inter, 1e-9f);
}

std::vector<Detection> nms(std::vector<Detection> dets, float iou_threshold, int max_det) {
    std::vector<size_t> order(dets.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t i, size_t j) { return dets[i].score > dets[j].score; });
    std::vector<Detection> kept;
    std::vector<bool> suppressed(dets.size(), false);
    for (size_t oi = 0; oi < order.size() && static_cast<int>(kept.size()) < max_det; ++oi) {
        const size_t i = order[oi];
        if (suppressed[i]) continue;
        kept.push_back(dets[i]);
        for (size_t oj = oi + 1; oj < order.size(); ++oj) {
            const size_t j = order[oj];
            if (!suppressed[j] && dets[j].label == dets[i].label && iou(dets[i], dets[j]) > iou_threshold) {
                suppressed[j] = true;
            }
        }
    }
    return kept;
}

void rgba_to_tensor(const uint8_t* rgba, int width, int height, int row_stride, const Letterbox& lb,
                    int dst_w, int dst_h, const float mean[3], const float std[3], bool bgr, float* out_chw) {
    const int plane = dst_w * dst_h;
    for (int y = 0; y < dst_h; ++y) {
        for (int x = 0; x < dst_w; ++x) {
            float rgb[3] = {114.f, 114.f, 114.f};
            const float rx = x - lb.pad_x, ry = y - lb.pad_y;
            if (rx >= 0 && ry >= 0 && rx < lb.resized_w && ry < lb.resized_h) {
                // bilinear sample at the pixel centre, as PIL's resize for upscaling
                const float sx = std::clamp((rx + 0.5f) / lb.scale_x - 0.5f, 0.f, width - 1.f);
                const float sy = std::clamp((ry + 0.5f) / lb.scale_y - 0.5f, 0.f, height - 1.f);
                const int x0 = static_cast<int>(sx), y0 = static_cast<int>(sy);
                const int x1 = std::min(x0 + 1, width - 1), y1 = std::min(y0 + 1, height - 1);
                const float fx = sx - x0, fy = sy - y0;
                for (int c = 0; c < 3; ++c) {
                    const float p00 = rgba[y0 * row_stride + x0 * 4 + c], p01 = rgba[y0 * row_stride + x1 * 4 + c];
                    const float p10 = rgba[y1 * row_stride + x0 * 4 + c], p11 = rgba[y1 * row_stride + x1 * 4 + c];
                    rgb[c] = (p00 * (1 - fx) + p01 * fx) * (1 - fy) + (p10 * (1 - fx) + p11 * fx) * fy;
                }
            }
            for (int c = 0; c < 3; ++c) {
                const int src = bgr ? 2 - c : c;
                out_chw[c * plane + y * dst_w + x] = (rgb[src] - mean[c]) / std[c];
            }
        }
    }
}

}  // namespace edgepack
