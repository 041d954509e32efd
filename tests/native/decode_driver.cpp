// Test driver: decodes a raw YOLO output (float32 file) with the app's C++ postprocess and prints
// one detection per line (x1 y1 x2 y2 score class), for comparison with edgepack's Python decoder.
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <vector>

#include "postprocess.h"

int main(int argc, char** argv) {
    if (argc != 6) {
        std::fprintf(stderr, "usage: %s output.f32 anchors classes score iou\n", argv[0]);
        return 2;
    }
    const int anchors = std::atoi(argv[2]), classes = std::atoi(argv[3]);
    std::vector<float> data(static_cast<size_t>(anchors) * (4 + classes));
    std::ifstream in(argv[1], std::ios::binary);
    in.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(data.size() * sizeof(float)));
    if (!in) return 3;
    const auto dets = edgepack::nms(edgepack::decode(data.data(), anchors, classes, edgepack::Head::YoloV8, true,
                                                     std::strtof(argv[4], nullptr)),
                                    std::strtof(argv[5], nullptr));
    for (const auto& d : dets) std::printf("%.4f %.4f %.4f %.4f %.6f %d\n", d.x1, d.y1, d.x2, d.y2, d.score, d.label);
    return 0;
}
