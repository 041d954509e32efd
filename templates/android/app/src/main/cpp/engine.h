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
    int accelerator = 0;  // index into the backend's accelerator list (0 = CPU)
    int threads = 4;
    int width = 0, height = 0, output_size = 0;
};

class Engine {
public:
    virtual ~Engine() = default;
    // Runs one CHW float tensor, returns the raw first output (output_size floats).
    virtual std::vector<float> run(const std::vector<float>& chw) = 0;
    // The accelerator actually in use (differs from the requested one after a fallback).
    virtual int accelerator() const = 0;
};

std::unique_ptr<Engine> create_ncnn_engine(const EngineConfig& config);
std::unique_ptr<Engine> create_mnn_engine(const EngineConfig& config);

}  // namespace edgepack
