{%- if has_mnn -%}
// MNN backend: CPU, OpenCL or Vulkan. MNN's GPU backends are separate libraries
// (libMNN_CL.so, libMNN_Vulkan.so) that register themselves with libMNN.so from static
// initialisers when they are loaded; CMakeLists.txt packages and links them when the MNN
// build has them, and the engine dlopen()s them as well, so a GPU backend is found however the
// app was linked. Without them MNN falls back to the CPU and the engine reports it.
#include <MNN/Interpreter.hpp>
#include <MNN/MNNForwardType.h>
#include <MNN/Tensor.hpp>

#include <dlfcn.h>

#include <algorithm>
#include <cstring>

#include "engine.h"

namespace edgepack {
namespace {

// Accelerator index (engine.h) -> MNN forward type, and the library that provides it.
struct MnnAccelerator {
    MNNForwardType type;
    const char* library;
};
constexpr MnnAccelerator kAccelerators[] = {
    {MNN_FORWARD_CPU, nullptr},
    {MNN_FORWARD_OPENCL, "libMNN_CL.so"},
    {MNN_FORWARD_VULKAN, "libMNN_Vulkan.so"},
};
constexpr int kAcceleratorCount = sizeof(kAccelerators) / sizeof(kAccelerators[0]);

void load_backend_library(const char* library) {
    // Kept loaded for the process lifetime: its static initialiser registered the backend.
    if (library != nullptr) dlopen(library, RTLD_NOW | RTLD_LOCAL);
}

MNN::BackendConfig::PrecisionMode precision_mode(const std::string& precision) {
    // As edgepack validates on the host: fp32 strictly fp32 (CPU and GPU), fp16 may use fp16
    // arithmetic (ARMv8.2 CPUs, GPUs), the int8 variants MNN's default.
    if (precision == "fp32") return MNN::BackendConfig::Precision_High;
    if (precision == "fp16") return MNN::BackendConfig::Precision_Low;
    return MNN::BackendConfig::Precision_Normal;
}

class MnnEngine : public Engine {
public:
    explicit MnnEngine(const EngineConfig& c) : config_(c) {
        net_.reset(MNN::Interpreter::createFromFile(c.files.at(0).c_str()), MNN::Interpreter::destroy);
        if (!net_) return;
        backend_.precision = precision_mode(c.precision);
        const int requested = c.accelerator >= 0 && c.accelerator < kAcceleratorCount ? c.accelerator : 0;
        if (requested != 0) {
            load_backend_library(kAccelerators[requested].library);
            session_ = create_session(kAccelerators[requested].type);
            if (session_ != nullptr && session_backend() == kAccelerators[requested].type) {
                accelerator_ = requested;
            } else if (session_ != nullptr) {
                // MNN fell back to backupType (CPU) but kept the GPU `mode` as its thread
                // count: start again with a real CPU configuration.
                net_->releaseSession(session_);
                session_ = nullptr;
            }
        }
        if (session_ == nullptr) session_ = create_session(MNN_FORWARD_CPU);
        if (session_ == nullptr) return;
        input_ = net_->getSessionInput(session_, c.input_name.c_str());
        output_ = net_->getSessionOutput(session_, c.output_name.c_str());
    }
    bool ok() const { return session_ && input_ && output_; }

    std::vector<float> run(const std::vector<float>& chw) override {
        MNN::Tensor host(input_, MNN::Tensor::CAFFE);  // NCHW host copy of the input's shape
        if (static_cast<size_t>(host.elementSize()) != chw.size()) return {};
        std::memcpy(host.host<float>(), chw.data(), chw.size() * sizeof(float));
        input_->copyFromHostTensor(&host);
        if (net_->runSession(session_) != MNN::NO_ERROR) return {};
        MNN::Tensor out(output_, MNN::Tensor::CAFFE);
        output_->copyToHostTensor(&out);
        if (out.elementSize() != config_.output_size) return {};
        const float* data = out.host<float>();
        return std::vector<float>(data, data + config_.output_size);
    }
    int accelerator() const override { return accelerator_; }

private:
    MNN::Session* create_session(MNNForwardType type) {
        MNN::ScheduleConfig schedule;
        schedule.type = type;
        schedule.backupType = MNN_FORWARD_CPU;
        // numThread and the GPU `mode` share one union in ScheduleConfig: for a GPU backend the
        // value is a set of MNN_GPU_* flags, not a thread count (threads=2 would mean "heavy
        // tuning", 3 an invalid combination). Wide tuning is MNN's documented default; the
        // memory layout (buffer/image) is left to MNN's per-GPU choice.
        if (type == MNN_FORWARD_CPU) {
            schedule.numThread = std::max(1, config_.threads);
        } else {
            schedule.mode = MNN_GPU_TUNING_WIDE;
        }
        schedule.backendConfig = &backend_;
        return net_->createSession(schedule);
    }

    MNNForwardType session_backend() const {
        // BACKENDS writes one int per pipeline of the session: give it room for all of them.
        int types[MNN_FORWARD_ALL] = {};
        if (!net_->getSessionInfo(session_, MNN::Interpreter::BACKENDS, types)) return MNN_FORWARD_CPU;
        return static_cast<MNNForwardType>(types[0]);
    }

    EngineConfig config_;
    MNN::BackendConfig backend_;
    std::shared_ptr<MNN::Interpreter> net_;
    MNN::Session* session_ = nullptr;
    MNN::Tensor* input_ = nullptr;
    MNN::Tensor* output_ = nullptr;
    int accelerator_ = 0;
};

}  // namespace

std::unique_ptr<Engine> create_mnn_engine(const EngineConfig& config) {
    if (config.files.empty()) return nullptr;
    auto engine = std::make_unique<MnnEngine>(config);
    if (!engine->ok()) return nullptr;
    return engine;
}

}  // namespace edgepack
{%- endif %}
