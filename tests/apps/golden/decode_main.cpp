// Host driver for the generated app's pure C++ post-processing: reads a raw float32 output
// and prints the decoded detections, one per line, for edgepack's tests to compare.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "postprocess.h"

int main(int argc, char** argv) {
    if (argc != 8) {
        std::fprintf(stderr, "usage: %s output.f32 anchors classes v8|v5 channels_first score iou\n", argv[0]);
        return 2;
    }
    const int anchors = std::atoi(argv[2]), classes = std::atoi(argv[3]);
    const auto head = std::string(argv[4]) == "v5" ? edgepack::Head::YoloV5 : edgepack::Head::YoloV8;
    const bool channels_first = std::atoi(argv[5]) != 0;
    const float score = std::strtof(argv[6], nullptr), iou = std::strtof(argv[7], nullptr);
    std::ifstream in(argv[1], std::ios::binary);
    std::vector<float> data((head == edgepack::Head::YoloV5 ? 5 : 4) * anchors + classes * anchors);
    in.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(data.size() * sizeof(float)));
    if (!in) return 3;
    auto dets = edgepack::nms(edgepack::decode(data.data(), anchors, classes, head, channels_first, score), iou);
    for (const auto& d : dets) std::printf("%.6f %.6f %.6f %.6f %.7f %d\n", d.x1, d.y1, d.x2, d.y2, d.score, d.label);
    return 0;
}
