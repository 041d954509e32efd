{%- if has_native -%}
package {{ package }}

import android.content.Context
import android.content.res.AssetManager
import android.graphics.Bitmap
import {{ package }}.core.Detection
import {{ package }}.core.topK
import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * NCNN and MNN through JNI (app/src/main/cpp/jni_bridge.cpp). Pre/post-processing runs in the
 * plain C++ of cpp/postprocess.cpp, the same code edgepack tests on the host.
 */
class NativeDetector(context: Context, private val info: BackendInfo, settings: RunSettings) : Detector {
    private val handle: Long
    private var buffer: ByteBuffer? = null
    override val activeAccelerator: String
    override val fallbackNote: String?

    init {
        val requested = info.accelerators[settings.accelerator]
        handle = nativeCreate(
            context.assets, context.cacheDir.absolutePath, info.name, info.assetFiles.toTypedArray(), info.inputName, info.outputName,
            settings.accelerator, settings.threads,
            ModelConfig.INPUT_WIDTH, ModelConfig.INPUT_HEIGHT, ModelConfig.MEAN, ModelConfig.STD,
            ModelConfig.BGR, ModelConfig.KEEP_ASPECT, ModelConfig.OUTPUT_SIZE,
        )
        check(handle != 0L) { "could not load ${info.name} model ${info.assetFiles}" }
        val used = nativeAccelerator(handle)
        activeAccelerator = info.accelerators[used]
        fallbackNote = if (used != settings.accelerator) "$requested unavailable on this device: running on $activeAccelerator" else null
    }

    override fun detect(frame: Bitmap, settings: RunSettings): FrameResult {
        val needed = frame.rowBytes * frame.height
        val pixels = buffer?.takeIf { it.capacity() >= needed }
            ?: ByteBuffer.allocateDirect(needed).order(ByteOrder.nativeOrder()).also { buffer = it }
        pixels.rewind()
        frame.copyPixelsToBuffer(pixels)
        val start = System.nanoTime()
        val raw = nativeRun(handle, pixels, frame.width, frame.height, frame.rowBytes)
        val ms = (System.nanoTime() - start) / 1e6
        if (ModelConfig.TASK == "classify") {
            return FrameResult(emptyList(), topK(raw, 3), ms)
        }
        // the native side decodes, runs NMS and maps boxes back to the frame: 6 floats per box
        val boxes = nativeDecode(handle, raw, frame.width, frame.height, settings.scoreThreshold, settings.iouThreshold,
            ModelConfig.HEAD == "yolov5", ModelConfig.NUM_CLASSES, ModelConfig.NUM_ANCHORS, ModelConfig.CHANNELS_FIRST)
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
        init {
            System.loadLibrary("edgepack_native")
        }
    }
}
{%- endif %}
