// edgepack-runner: the device side of `edgepack device-test` for the NCNN and MNN backends.
// It follows edgepack's runner contract (edgepack/devices/runner.py):
//   edgepack-runner --backend ncnn|mnn --accelerator cpu|vulkan|opencl --model FILE [--weights FILE]
//                   --input-name NAME --output-names A --output-shapes 1x9x2100 --input-shape 1,3,H,W
//                   --inputs a.f32,b.f32 --threads N --iterations N --warmup N --out DIR [--precision P]
// --precision is the artifact's (default fp32): it selects the engines' fp16/fp32 options.
// Inputs/outputs are raw little-endian float32 (NCHW); DIR/result.json holds the per-iteration
// latencies and the output files. Exit 2: backend or accelerator unavailable on this device.
// Built by the NDK through this project's CMake (-DEDGEPACK_BUILD_RUNNER=ON); only the engines
// found by CMake are compiled in. TFLite is not part of this runner (see the project README).
// The same file builds for Linux hosts and (static) arm64 Linux, which is how edgepack tests it
// (edgepack/devices/native_build.py).
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "../engine.h"

namespace {

constexpr int kExitUnavailable = 2;

std::vector<std::string> split(const std::string& text, char sep) {
    std::vector<std::string> parts;
    std::stringstream stream(text);
    std::string part;
    while (std::getline(stream, part, sep)) {
        if (!part.empty()) parts.push_back(part);
    }
    return parts;
}

bool read_floats(const std::string& path, size_t count, std::vector<float>& out) {
    std::ifstream file(path, std::ios::binary);
    out.assign(count, 0.0f);
    file.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(count * sizeof(float)));
    return static_cast<size_t>(file.gcount()) == count * sizeof(float);
}

bool write_floats(const std::string& path, const std::vector<float>& values) {
    std::ofstream file(path, std::ios::binary);
    file.write(reinterpret_cast<const char*>(values.data()), static_cast<std::streamsize>(values.size() * sizeof(float)));
    return static_cast<bool>(file);
}

std::string json_string(const std::string& text) {
    std::string out = "\"";
    for (char c : text) {
        if (c == '"' || c == '\\') out += '\\';
        if (static_cast<unsigned char>(c) < 0x20) {
            char buffer[8];
            std::snprintf(buffer, sizeof buffer, "\\u%04x", c);
            out += buffer;
        } else {
            out += c;
        }
    }
    return out + "\"";
}

// Accelerator names in the order of each engine's accelerator index (see engine.h).
int accelerator_index(const std::string& backend, const std::string& name) {
    const std::map<std::string, std::vector<std::string>> names = {
        {"ncnn", {"cpu", "vulkan"}},
        {"mnn", {"cpu", "opencl", "vulkan"}},
    };
    auto found = names.find(backend);
    if (found == names.end()) return -1;
    for (size_t i = 0; i < found->second.size(); ++i) {
        if (found->second[i] == name) return static_cast<int>(i);
    }
    return -1;
}

bool backend_built_in(const std::string& backend) {
#ifdef EDGEPACK_WITH_NCNN
    if (backend == "ncnn") return true;
#endif
#ifdef EDGEPACK_WITH_MNN
    if (backend == "mnn") return true;
#endif
    (void)backend;
    return false;
}

std::unique_ptr<edgepack::Engine> create_engine(const std::string& backend, const edgepack::EngineConfig& config) {
#ifdef EDGEPACK_WITH_NCNN
    if (backend == "ncnn") return edgepack::create_ncnn_engine(config);
#endif
#ifdef EDGEPACK_WITH_MNN
    if (backend == "mnn") return edgepack::create_mnn_engine(config);
#endif
    (void)config;
    (void)backend;
    return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
    std::map<std::string, std::string> args = {
        {"accelerator", "cpu"}, {"threads", "2"}, {"iterations", "10"}, {"warmup", "2"}, {"precision", "fp32"}};
    for (int i = 1; i + 1 < argc; i += 2) {
        std::string key = argv[i];
        if (key.rfind("--", 0) != 0) {
            std::cerr << "unexpected argument " << key << "\n";
            return 1;
        }
        args[key.substr(2)] = argv[i + 1];
    }
    for (const char* required : {"backend", "model", "input-name", "output-names", "output-shapes", "input-shape", "inputs", "out"}) {
        if (args.find(required) == args.end()) {
            std::cerr << "missing --" << required << "\n";
            return 1;
        }
    }
    const std::string backend = args["backend"];
    const int accelerator = accelerator_index(backend, args["accelerator"]);
    if (accelerator < 0) {
        std::cerr << "backend " << backend << " with accelerator " << args["accelerator"] << " is not built into this runner\n";
        return kExitUnavailable;
    }
    std::vector<int> shape;
    for (const auto& d : split(args["input-shape"], ',')) shape.push_back(std::stoi(d));
    if (shape.size() != 4) {
        std::cerr << "--input-shape must be 1,C,H,W\n";
        return 1;
    }
    const size_t input_size = static_cast<size_t>(shape[1]) * shape[2] * shape[3];
    size_t output_size = 1;
    const auto output_shape = split(split(args["output-shapes"], ';').at(0), 'x');
    for (const auto& d : output_shape) output_size *= static_cast<size_t>(std::stoul(d));

    edgepack::EngineConfig config;
    config.files = {args["model"]};
    if (args.count("weights")) config.files.push_back(args["weights"]);
    config.input_name = args["input-name"];
    config.output_name = split(args["output-names"], ',').at(0);
    config.precision = args["precision"];  // fp32 artifacts run with the engines' fp16 options off
    config.accelerator = accelerator;
    config.threads = std::stoi(args["threads"]);
    config.width = shape[3];
    config.height = shape[2];
    config.output_size = static_cast<int>(output_size);
    if (!backend_built_in(backend)) {
        std::cerr << "backend " << backend << " is not built into this runner\n";
        return kExitUnavailable;
    }
    auto engine = create_engine(backend, config);
    if (!engine) {  // a model that does not load is a failure, not an unavailable backend
        std::cerr << "cannot load the " << backend << " model " << args["model"] << "\n";
        return 1;
    }
    if (engine->accelerator() != accelerator) {
        std::cerr << args["accelerator"] << " is not available on this device (the engine fell back)\n";
        return kExitUnavailable;
    }

    std::vector<std::vector<float>> inputs;
    for (const auto& path : split(args["inputs"], ',')) {
        std::vector<float> data;
        if (!read_floats(path, input_size, data)) {
            std::cerr << "cannot read " << input_size << " floats from " << path << "\n";
            return 1;
        }
        inputs.push_back(std::move(data));
    }
    const std::string out_dir = args["out"];
    const std::string mkdir = "mkdir -p '" + out_dir + "'";
    if (std::system(mkdir.c_str()) != 0) {
        std::cerr << "cannot create " << out_dir << "\n";
        return 1;
    }
    std::ostringstream outputs;
    for (size_t i = 0; i < inputs.size(); ++i) {
        const std::vector<float> result = engine->run(inputs[i]);
        if (result.size() != output_size) {
            std::cerr << "output has " << result.size() << " values, expected " << output_size << "\n";
            return 1;
        }
        const std::string name = "out_" + std::to_string(i) + "_0.f32";
        if (!write_floats(out_dir + "/" + name, result)) {
            std::cerr << "cannot write " << name << "\n";
            return 1;
        }
        outputs << (i ? ", " : "") << "{\"input\": " << i << ", \"name\": " << json_string(config.output_name)
                << ", \"file\": " << json_string(name) << ", \"shape\": [";
        for (size_t d = 0; d < output_shape.size(); ++d) outputs << (d ? ", " : "") << output_shape[d];
        outputs << "]}";
    }
    for (int i = 0; i < std::stoi(args["warmup"]); ++i) engine->run(inputs[0]);
    std::ostringstream latencies;
    for (int i = 0; i < std::stoi(args["iterations"]); ++i) {
        const auto start = std::chrono::steady_clock::now();
        engine->run(inputs[0]);
        const std::chrono::duration<double, std::milli> elapsed = std::chrono::steady_clock::now() - start;
        latencies << (i ? ", " : "") << elapsed.count();
    }
    std::ofstream json(out_dir + "/result.json");
    json << "{\"contract\": 1, \"runner\": \"edgepack-runner (native)\", \"backend\": " << json_string(backend)
         << ", \"accelerator\": " << json_string(args["accelerator"]) << ", \"precision\": " << json_string(config.precision)
         << ", \"threads\": " << config.threads
         << ", \"latencies_ms\": [" << latencies.str() << "], \"outputs\": [" << outputs.str() << "]}\n";
    return json ? 0 : 1;
}
