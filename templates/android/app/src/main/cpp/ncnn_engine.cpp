{%- if has_ncnn -%}
// NCNN backend: CPU or Vulkan (falls back to CPU when the device has no usable Vulkan GPU).
#include <net.h>
#if NCNN_VULKAN
#include <gpu.h>
#endif

#include <algorithm>
#include <cstring>

#include "engine.h"

namespace edgepack {
namespace {

class NcnnEngine : public Engine {
public:
    explicit NcnnEngine(const EngineConfig& c) : config_(c) {
#if NCNN_VULKAN
        use_vulkan_ = c.accelerator == 1 && ncnn::get_gpu_count() > 0;
#endif
        // Options must be set before load_param/load_model (ncnn packs the weights at load).
        net_.opt.use_vulkan_compute = use_vulkan_;
        net_.opt.num_threads = std::max(1, c.threads);
        if (!allows_fp16(c.precision)) {
            // ncnn defaults to fp16 storage/arithmetic wherever the CPU (ARMv8.2, x86 F16C) or the
            // GPU has it; an fp32 artifact must run in fp32 or it loses what fp32 was chosen for.
            net_.opt.use_fp16_packed = false;
            net_.opt.use_fp16_storage = false;
            net_.opt.use_fp16_arithmetic = false;
            net_.opt.use_bf16_storage = false;
        }
        ok_ = net_.load_param(c.files.at(0).c_str()) == 0 && net_.load_model(c.files.at(1).c_str()) == 0;
    }
    bool ok() const { return ok_; }

    std::vector<float> run(const std::vector<float>& chw) override {
        const int w = config_.width, h = config_.height;
        const size_t plane = static_cast<size_t>(w) * h;
        if (chw.size() != 3 * plane) return {};
        // ncnn pads each channel to 16 bytes (cstep), so a CHW buffer cannot be wrapped as is
        // when w*h is not a multiple of 4 (e.g. 225x225, 299x299): copy plane by plane.
        ncnn::Mat in(w, h, 3);
        if (in.empty()) return {};
        for (int c = 0; c < 3; ++c) std::memcpy(static_cast<float*>(in.channel(c)), chw.data() + c * plane, plane * sizeof(float));
        ncnn::Extractor ex = net_.create_extractor();
        if (ex.input(config_.input_name.c_str(), in) != 0) return {};
        ncnn::Mat out;
        if (ex.extract(config_.output_name.c_str(), out) != 0 || out.empty()) return {};
        // extract() returns fp32, elempack 1; channels are again cstep apart.
        const size_t per_channel = static_cast<size_t>(out.w) * out.h * out.d;
        if (per_channel * out.c != static_cast<size_t>(config_.output_size)) return {};
        std::vector<float> result(per_channel * out.c);
        for (int c = 0; c < out.c; ++c) {
            const float* src = static_cast<const float*>(out.channel(c));
            std::copy(src, src + per_channel, result.begin() + c * per_channel);
        }
        return result;
    }
    int accelerator() const override { return use_vulkan_ ? 1 : 0; }

private:
    EngineConfig config_;
    ncnn::Net net_;
    bool use_vulkan_ = false;
    bool ok_ = false;
};

}  // namespace

std::unique_ptr<Engine> create_ncnn_engine(const EngineConfig& config) {
    if (config.files.size() < 2) return nullptr;
    auto engine = std::make_unique<NcnnEngine>(config);
    if (!engine->ok()) return nullptr;
    return engine;
}

}  // namespace edgepack
{%- endif %}
