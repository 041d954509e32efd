// Thin JNI bridge: copies model assets to files, owns one Engine per NativeDetector, converts
// frames with postprocess.cpp and returns decoded boxes. No model logic lives here.
#include <android/asset_manager_jni.h>
#include <jni.h>

#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "engine.h"
#include "postprocess.h"

namespace {

struct Handle {
    std::unique_ptr<edgepack::Engine> engine;
    edgepack::EngineConfig config;
    float mean[3] = {0, 0, 0}, std[3] = {1, 1, 1};
    bool bgr = false, keep_aspect = true;
    edgepack::Letterbox last_letterbox;
    std::vector<float> tensor;
};

std::string copy_asset(AAssetManager* assets, const std::string& name, const std::string& dir) {
    AAsset* asset = AAssetManager_open(assets, name.c_str(), AASSET_MODE_STREAMING);
    if (!asset) return {};
    const std::string path = dir + "/" + name.substr(name.find_last_of('/') + 1);
    std::ofstream out(path, std::ios::binary);
    char buffer[1 << 16];
    int n;
    while ((n = AAsset_read(asset, buffer, sizeof(buffer))) > 0) out.write(buffer, n);
    AAsset_close(asset);
    return path;
}

std::string jstring_to_string(JNIEnv* env, jstring s) {
    if (s == nullptr) return {};
    const char* chars = env->GetStringUTFChars(s, nullptr);
    if (chars == nullptr) return {};
    std::string result(chars);
    env->ReleaseStringUTFChars(s, chars);
    return result;
}

// The precision each bundled artifact was converted at (from edgepack's manifest): the engines
// pick their fp16/fp32 options from it.
std::string bundled_precision(const std::string& backend) {
{%- for b in backends %}
    if (backend == "{{ b.name | cpp_string }}") return "{{ b.precision | cpp_string }}";
{%- endfor %}
    return "fp32";
}

// The engines compiled into this library (CMakeLists.txt leaves out an engine whose prebuilt
// library is missing, so the app still builds with TFLite alone).
const char* const kCompiledBackends[] = {
#ifdef EDGEPACK_WITH_NCNN
    "ncnn",
#endif
#ifdef EDGEPACK_WITH_MNN
    "mnn",
#endif
    nullptr,
};

}  // namespace

#define EDGEPACK_JNI(name) Java_{{ package | replace("_", "_1") | replace(".", "_") }}_NativeDetector_##name

extern "C" JNIEXPORT jlong JNICALL EDGEPACK_JNI(nativeCreate)(
    JNIEnv* env, jobject, jobject asset_manager, jstring cache_dir, jstring backend, jobjectArray files, jstring input_name,
    jstring output_name, jint accelerator, jint threads, jint width, jint height, jfloatArray mean,
    jfloatArray std, jboolean bgr, jboolean keep_aspect, jint output_size) {
    auto handle = std::make_unique<Handle>();
    AAssetManager* assets = AAssetManager_fromJava(env, asset_manager);
    const std::string dir = jstring_to_string(env, cache_dir);  // engines load models from files
    for (jsize i = 0; i < env->GetArrayLength(files); ++i) {
        auto element = static_cast<jstring>(env->GetObjectArrayElement(files, i));
        const std::string name = jstring_to_string(env, element);
        env->DeleteLocalRef(element);
        const std::string path = copy_asset(assets, name, dir);
        if (path.empty()) return 0;
        handle->config.files.push_back(path);
    }
    handle->config.input_name = jstring_to_string(env, input_name);
    handle->config.output_name = jstring_to_string(env, output_name);
    handle->config.accelerator = accelerator;
    handle->config.threads = threads;
    handle->config.width = width;
    handle->config.height = height;
    handle->config.output_size = output_size;
    env->GetFloatArrayRegion(mean, 0, 3, handle->mean);
    env->GetFloatArrayRegion(std, 0, 3, handle->std);
    handle->bgr = bgr;
    handle->keep_aspect = keep_aspect;
    const std::string name = jstring_to_string(env, backend);
    handle->config.precision = bundled_precision(name);
#ifdef EDGEPACK_WITH_NCNN
    if (name == "ncnn") handle->engine = edgepack::create_ncnn_engine(handle->config);
#endif
#ifdef EDGEPACK_WITH_MNN
    if (name == "mnn") handle->engine = edgepack::create_mnn_engine(handle->config);
#endif
    if (!handle->engine) return 0;
    return reinterpret_cast<jlong>(handle.release());
}

// Names of the native backends built into this library (a String[]): the app offers only these.
// Kotlin: `@JvmStatic external fun nativeBackends(): Array<String>` in NativeDetector's companion
// object, which kotlinc compiles to a static native method of NativeDetector (checked with javap).
extern "C" JNIEXPORT jobjectArray JNICALL EDGEPACK_JNI(nativeBackends)(JNIEnv* env, jclass) {
    jsize count = 0;
    while (kCompiledBackends[count] != nullptr) ++count;
    jobjectArray result = env->NewObjectArray(count, env->FindClass("java/lang/String"), nullptr);
    for (jsize i = 0; i < count; ++i) {
        jstring name = env->NewStringUTF(kCompiledBackends[i]);
        env->SetObjectArrayElement(result, i, name);
        env->DeleteLocalRef(name);
    }
    return result;
}

extern "C" JNIEXPORT jint JNICALL EDGEPACK_JNI(nativeAccelerator)(JNIEnv*, jobject, jlong ptr) {
    return reinterpret_cast<Handle*>(ptr)->engine->accelerator();
}

extern "C" JNIEXPORT jfloatArray JNICALL EDGEPACK_JNI(nativeRun)(
    JNIEnv* env, jobject, jlong ptr, jobject rgba, jint width, jint height, jint row_stride) {
    auto* h = reinterpret_cast<Handle*>(ptr);
    const auto* pixels = static_cast<const uint8_t*>(env->GetDirectBufferAddress(rgba));
    if (pixels == nullptr || env->GetDirectBufferCapacity(rgba) < static_cast<jlong>(row_stride) * height) {
        return env->NewFloatArray(0);  // not a direct buffer of the frame's size
    }
    const int w = h->config.width, hh = h->config.height;
    h->last_letterbox = edgepack::compute_letterbox(width, height, w, hh, h->keep_aspect);
    h->tensor.resize(static_cast<size_t>(3) * w * hh);
    edgepack::rgba_to_tensor(pixels, width, height, row_stride, h->last_letterbox, w, hh, h->mean, h->std, h->bgr,
                             h->tensor.data());
    const std::vector<float> out = h->engine->run(h->tensor);  // empty when the engine failed
    jfloatArray result = env->NewFloatArray(static_cast<jsize>(out.size()));
    env->SetFloatArrayRegion(result, 0, static_cast<jsize>(out.size()), out.data());
    return result;
}

extern "C" JNIEXPORT jfloatArray JNICALL EDGEPACK_JNI(nativeDecode)(
    JNIEnv* env, jobject, jlong ptr, jfloatArray output, jint frame_width, jint frame_height, jfloat score,
    jfloat iou, jboolean yolov5, jint num_classes, jint num_anchors, jboolean channels_first) {
    auto* h = reinterpret_cast<Handle*>(ptr);
    std::vector<float> raw(static_cast<size_t>(env->GetArrayLength(output)));
    env->GetFloatArrayRegion(output, 0, static_cast<jsize>(raw.size()), raw.data());
    const size_t needed = static_cast<size_t>(num_anchors) * ((yolov5 ? 5 : 4) + num_classes);
    if (num_anchors <= 0 || raw.size() < needed) return env->NewFloatArray(0);  // failed run: no boxes
    auto dets = edgepack::nms(edgepack::decode(raw.data(), num_anchors, num_classes,
                                               yolov5 ? edgepack::Head::YoloV5 : edgepack::Head::YoloV8,
                                               channels_first, score),
                              iou);
    edgepack::unletterbox(dets, h->last_letterbox, frame_width, frame_height);
    std::vector<float> flat;
    for (const auto& d : dets) flat.insert(flat.end(), {d.x1, d.y1, d.x2, d.y2, d.score, static_cast<float>(d.label)});
    jfloatArray result = env->NewFloatArray(static_cast<jsize>(flat.size()));
    env->SetFloatArrayRegion(result, 0, static_cast<jsize>(flat.size()), flat.data());
    return result;
}

extern "C" JNIEXPORT void JNICALL EDGEPACK_JNI(nativeDestroy)(JNIEnv*, jobject, jlong ptr) {
    delete reinterpret_cast<Handle*>(ptr);
}
