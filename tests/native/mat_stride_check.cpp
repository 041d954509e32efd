// Negative control for the channel-stride fix: wraps one CHW tensor as ncnn::Mat(w, h, 3, ptr)
// (the old engine code) and copies it channel by channel (the engine's code), then prints how many
// input values ncnn would see at the wrong place and the largest difference of the model outputs.
#include <net.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <vector>

static ncnn::Mat run(ncnn::Net& net, const ncnn::Mat& in, const char* input, const char* output) {
    ncnn::Extractor ex = net.create_extractor();
    ex.input(input, in);
    ncnn::Mat out;
    ex.extract(output, out);
    return out.reshape(out.w * out.h * out.d * out.c);
}

int main(int argc, char** argv) {
    if (argc != 8) {
        std::fprintf(stderr, "usage: %s param bin input output w h input.f32\n", argv[0]);
        return 2;
    }
    const int w = std::atoi(argv[5]), h = std::atoi(argv[6]);
    const size_t plane = static_cast<size_t>(w) * h;
    std::vector<float> chw(3 * plane + 16, 0.f);  // slack: the wrapped Mat reads past 3*w*h
    std::ifstream file(argv[7], std::ios::binary);
    file.read(reinterpret_cast<char*>(chw.data()), static_cast<std::streamsize>(3 * plane * sizeof(float)));
    if (!file) return 3;
    ncnn::Net net;
    net.opt.use_fp16_packed = net.opt.use_fp16_storage = net.opt.use_fp16_arithmetic = false;
    if (net.load_param(argv[1]) != 0 || net.load_model(argv[2]) != 0) return 4;
    const ncnn::Mat wrapped_in(w, h, 3, chw.data());
    ncnn::Mat copied_in(w, h, 3);
    for (int c = 0; c < 3; ++c) std::memcpy(static_cast<float*>(copied_in.channel(c)), chw.data() + c * plane, sizeof(float) * plane);
    long misplaced = 0;
    for (int c = 0; c < 3; ++c) {
        const float* wrapped_c = wrapped_in.channel(c);
        for (size_t i = 0; i < plane; ++i) misplaced += wrapped_c[i] != chw[c * plane + i];
    }
    const ncnn::Mat wrapped = run(net, wrapped_in, argv[3], argv[4]);
    const ncnn::Mat copied = run(net, copied_in, argv[3], argv[4]);
    float diff = 0.f;
    for (int i = 0; i < copied.w; ++i) diff = std::max(diff, std::fabs(wrapped[i] - copied[i]));
    std::printf("%ld %g\n", misplaced, diff);
    return 0;
}
