{%- if has_native -%}
package {{ package }}

import android.content.Context
import android.content.res.AssetManager
import {{ package }}.core.Detection
import {{ package }}.core.Probabilities
import {{ package }}.core.RgbaFrame
import {{ package }}.core.RunSettings
import {{ package }}.core.topK
import java.nio.ByteBuffer

/**
 * The native libraries, loaded once and never fatally: a missing library is an Error
 * (UnsatisfiedLinkError), reported on screen instead of crashing the app.
 */
internal object NativeLibraries {
    /** Why libedgepack_native.so cannot be used, or null when it is loaded. */
    val loadError: String? by lazy {
        try {
            System.loadLibrary("edgepack_native")
            null
        } catch (e: UnsatisfiedLinkError) {
            "native backends unavailable (${e.message})"
        }
    }

    /** The engines compiled into libedgepack_native.so (CMake leaves out one whose library it did not find). */
    val compiledBackends: Set<String> by lazy {
        if (loadError != null) emptySet() else NativeDetector.nativeBackends().toSet()
    }

    /**
     * MNN's OpenCL and Vulkan backends are separate libraries (libMNN_CL.so, libMNN_Vulkan.so)
     * that register themselves with MNN when loaded; without them MNN falls back to the CPU.
     * Loaded after libedgepack_native.so, which pulls in libMNN.so. name -> loaded.
     */
    val mnnGpuBackends: Map<String, Boolean> by lazy {
        if (loadError != null) return@lazy emptyMap()
        listOf("MNN_CL", "MNN_Vulkan").associateWith { name ->
            try {
                System.loadLibrary(name)
                true
            } catch (e: UnsatisfiedLinkError) {
                false
            }
        }
    }
}

/**
 * NCNN and MNN through JNI (app/src/main/cpp/jni_bridge.cpp). Pre/post-processing runs in the
 * plain C++ of cpp/postprocess.cpp, the same code edgepack tests on the host. The frame's RGBA
 * plane is handed over as it is (a direct buffer with its row stride): no copy on the Java side.
 */
class NativeDetector(context: Context, private val info: BackendInfo, settings: RunSettings) : Detector {
    private val handle: Long
    override val activeAccelerator: String
    override val fallbackNote: String?

    init {
        NativeLibraries.loadError?.let { throw IllegalStateException(it) }
        val gpuNote = if (info.name == "mnn" && settings.accelerator != 0) {
            val plugin = if (settings.accelerator == 1) "MNN_CL" else "MNN_Vulkan"
            if (NativeLibraries.mnnGpuBackends[plugin] == true) null else "lib$plugin.so is not in the app"
        } else null
        val requested = info.accelerators[settings.accelerator]
        handle = nativeCreate(
            context.assets, context.cacheDir.absolutePath, info.name, info.assetFiles.toTypedArray(), info.inputName, info.outputName,
            settings.accelerator, settings.threads,
            ModelConfig.INPUT_WIDTH, ModelConfig.INPUT_HEIGHT, ModelConfig.MEAN, ModelConfig.STD,
            ModelConfig.BGR, ModelConfig.KEEP_ASPECT, info.outputSize,
        )
        check(handle != 0L) { "could not load ${info.name} model ${info.assetFiles}" }
        val used = nativeAccelerator(handle)
        activeAccelerator = info.accelerators.getOrElse(used) { info.accelerators[0] }
        fallbackNote = if (used != settings.accelerator) {
            "$requested unavailable on this device${gpuNote?.let { " ($it)" } ?: ""}: running on $activeAccelerator"
        } else null
    }

    override fun detect(frame: RgbaFrame, settings: RunSettings): FrameResult {
        // the native letterbox reads upright RGBA rows with 4 bytes per pixel from a direct buffer
        check(frame.rotationDegrees == 0 && frame.pixelStride == 4 && frame.pixels.isDirect) {
            "native backends need upright RGBA frames in a direct buffer"
        }
        val start = System.nanoTime()
        val raw = nativeRun(handle, frame.pixels, frame.width, frame.height, frame.rowStride)
        val ms = (System.nanoTime() - start) / 1e6
        if (ModelConfig.TASK == "classify") {
            return FrameResult(emptyList(), topK(Probabilities.from(raw, ModelConfig.CLASSIFIER_OUTPUT), 3), ms)
        }
        // the native side decodes, runs NMS and maps boxes back to the frame: 6 floats per box
        val boxes = nativeDecode(handle, raw, frame.width, frame.height, settings.scoreThreshold, settings.iouThreshold,
            ModelConfig.HEAD == "yolov5", ModelConfig.NUM_CLASSES, info.numAnchors, info.channelsFirst)
        val dets = (boxes.indices step 6).map { i ->
            Detection(boxes[i], boxes[i + 1], boxes[i + 2], boxes[i + 3], boxes[i + 4], boxes[i + 5].toInt())
        }
        return FrameResult(dets, emptyList(), ms)
    }

    override fun close() = nativeDestroy(handle)

    private external fun nativeCreate(
        assets: AssetManager, cacheDir: String, backend: String, files: Array<String>, inputName: String, outputName: String,
        accelerator: Int, threads: Int, width: Int, height: Int, mean: FloatArray, std: FloatArray,
        bgr: Boolean, keepAspect: Boolean, outputSize: Int,
    ): Long
    private external fun nativeAccelerator(handle: Long): Int
    private external fun nativeRun(handle: Long, rgba: ByteBuffer, width: Int, height: Int, rowStride: Int): FloatArray
    private external fun nativeDecode(
        handle: Long, output: FloatArray, frameWidth: Int, frameHeight: Int, score: Float, iou: Float,
        yolov5: Boolean, numClasses: Int, numAnchors: Int, channelsFirst: Boolean,
    ): FloatArray
    private external fun nativeDestroy(handle: Long)

    companion object {
        @JvmStatic external fun nativeBackends(): Array<String>
    }
}
{%- endif %}
