{%- if has_ncnn -%}
// NCNN backend: CPU or Vulkan (falls back to CPU when the device has no usable Vulkan GPU).
#include <net.h>
#include <gpu.h>

#include "engine.h"

namespace edgepack {
namespace {

class NcnnEngine : public Engine {
public:
    explicit NcnnEngine(const EngineConfig& c) : config_(c) {
        const bool want_vulkan = c.accelerator == 1;
        use_vulkan_ = want_vulkan && ncnn::get_gpu_count() > 0;
        net_.opt.use_vulkan_compute = use_vulkan_;
        net_.opt.num_threads = c.threads;
        ok_ = net_.load_param(c.files.at(0).c_str()) == 0 && net_.load_model(c.files.at(1).c_str()) == 0;
    }
    bool ok() const { return ok_; }
    std::vector<float> run(const std::vector<float>& chw) override {
        ncnn::Mat in(config_.width, config_.height, 3, const_cast<float*>(chw.data()));
        ncnn::Extractor ex = net_.create_extractor();
        ex.input(config_.input_name.c_str(), in);
        ncnn::Mat out;
        ex.extract(config_.output_name.c_str(), out);
        std::vector<float> result(static_cast<size_t>(config_.output_size));
        const ncnn::Mat flat = out.reshape(out.w * out.h * out.d * out.c);
        for (int i = 0; i < config_.output_size && i < flat.w; ++i) result[i] = flat[i];
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
    auto engine = std::make_unique<NcnnEngine>(config);
    if (!engine->ok()) return nullptr;
    return engine;
}

}  // namespace edgepack
{%- endif %}
