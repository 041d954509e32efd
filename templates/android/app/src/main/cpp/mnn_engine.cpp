{%- if has_mnn -%}
// MNN backend: CPU, OpenCL or Vulkan; MNN itself falls back to CPU when the GPU backend
// cannot be created, and the engine reports which backend the session really uses.
#include <MNN/Interpreter.hpp>
#include <MNN/Tensor.hpp>

#include <cstring>

#include "engine.h"

namespace edgepack {
namespace {

class MnnEngine : public Engine {
public:
    explicit MnnEngine(const EngineConfig& c) : config_(c) {
        net_.reset(MNN::Interpreter::createFromFile(c.files.at(0).c_str()), MNN::Interpreter::destroy);
        if (!net_) return;
        MNN::ScheduleConfig schedule;
        static const MNNForwardType kTypes[] = {MNN_FORWARD_CPU, MNN_FORWARD_OPENCL, MNN_FORWARD_VULKAN};
        schedule.type = kTypes[c.accelerator < 3 ? c.accelerator : 0];
        schedule.backupType = MNN_FORWARD_CPU;
        schedule.numThread = c.threads;
        MNN::BackendConfig backend;
        backend.precision = MNN::BackendConfig::Precision_Low;  // fp16 where the hardware has it
        schedule.backendConfig = &backend;
        session_ = net_->createSession(schedule);
        if (!session_) return;
        input_ = net_->getSessionInput(session_, c.input_name.c_str());
        output_ = net_->getSessionOutput(session_, c.output_name.c_str());
        MNNForwardType used = MNN_FORWARD_CPU;
        net_->getSessionInfo(session_, MNN::Interpreter::BACKENDS, &used);
        accelerator_ = used == MNN_FORWARD_OPENCL ? 1 : used == MNN_FORWARD_VULKAN ? 2 : 0;
    }
    bool ok() const { return session_ && input_ && output_; }
    std::vector<float> run(const std::vector<float>& chw) override {
        MNN::Tensor host(input_, MNN::Tensor::CAFFE);
        std::memcpy(host.host<float>(), chw.data(), chw.size() * sizeof(float));
        input_->copyFromHostTensor(&host);
        net_->runSession(session_);
        MNN::Tensor out(output_, MNN::Tensor::CAFFE);
        output_->copyToHostTensor(&out);
        const float* data = out.host<float>();
        return std::vector<float>(data, data + config_.output_size);
    }
    int accelerator() const override { return accelerator_; }

private:
    EngineConfig config_;
    std::shared_ptr<MNN::Interpreter> net_;
    MNN::Session* session_ = nullptr;
    MNN::Tensor* input_ = nullptr;
    MNN::Tensor* output_ = nullptr;
    int accelerator_ = 0;
};

}  // namespace

std::unique_ptr<Engine> create_mnn_engine(const EngineConfig& config) {
    auto engine = std::make_unique<MnnEngine>(config);
    if (!engine->ok()) return nullptr;
    return engine;
}

}  // namespace edgepack
{%- endif %}
