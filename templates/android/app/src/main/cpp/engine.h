// One interface over the NCNN and MNN runtimes; each engine file is compiled only when its
// library was found by CMakeLists.txt (EDGEPACK_WITH_NCNN / EDGEPACK_WITH_MNN).
#pragma once

#include <memory>
#include <string>
#include <vector>

namespace edgepack {

struct EngineConfig {
    std::vector<std::string> files;  // model files, already copied out of the APK
    std::string input_name, output_name;
    // The artifact's precision as converted (fp32, fp16, int8, int8-weight): an fp32 artifact
    // runs with every fp16 storage/arithmetic option off, since the engines' defaults would
    // otherwise quietly compute it in fp16 on ARMv8.2+ CPUs and GPUs.
    std::string precision = "fp32";
    int accelerator = 0;  // index into the backend's accelerator list (0 = CPU)
    int threads = 4;      // CPU threads (GPU backends ignore it)
    int width = 0, height = 0, output_size = 0;
};

class Engine {
public:
    virtual ~Engine() = default;
    // Runs one CHW float tensor (3 x height x width, planes contiguous), returns the raw first
    // output (output_size floats), or an empty vector when the engine failed.
    virtual std::vector<float> run(const std::vector<float>& chw) = 0;
    // The accelerator actually in use (differs from the requested one after a fallback).
    virtual int accelerator() const = 0;
};

// nullptr when the model cannot be loaded.
std::unique_ptr<Engine> create_ncnn_engine(const EngineConfig& config);
std::unique_ptr<Engine> create_mnn_engine(const EngineConfig& config);

// True for precisions whose artifact may run with reduced-precision arithmetic.
inline bool allows_fp16(const std::string& precision) { return precision != "fp32"; }

}  // namespace edgepack
