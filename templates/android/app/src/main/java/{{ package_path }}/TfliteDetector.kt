{%- if has_tflite -%}
package {{ package }}

import android.content.Context
import android.graphics.Bitmap
import {{ package }}.core.Letterbox
import {{ package }}.core.YoloDecoder
import {{ package }}.core.topK
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.gpu.CompatibilityList
import org.tensorflow.lite.gpu.GpuDelegate
import org.tensorflow.lite.nnapi.NnApiDelegate
import java.io.FileInputStream
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.nio.MappedByteBuffer
import java.nio.channels.FileChannel

/** LiteRT (TFLite) with a CPU (XNNPACK) / GPU / NNAPI choice and automatic fallback to CPU. */
class TfliteDetector(context: Context, info: BackendInfo, settings: RunSettings) : Detector {
    private val interpreter: Interpreter
    private var delegate: AutoCloseable? = null
    private val input = ByteBuffer.allocateDirect(4 * ModelConfig.INPUT_WIDTH * ModelConfig.INPUT_HEIGHT * 3).order(ByteOrder.nativeOrder())
    private val output = Array(1) { FloatArray(ModelConfig.OUTPUT_SIZE) }
    private val decoder = YoloDecoder(
        if (ModelConfig.HEAD == "yolov5") YoloDecoder.Head.YOLOV5 else YoloDecoder.Head.YOLOV8,
        ModelConfig.NUM_CLASSES, ModelConfig.NUM_ANCHORS, ModelConfig.CHANNELS_FIRST,
    )
    override val activeAccelerator: String
    override val fallbackNote: String?

    init {
        val model = mapAsset(context, info.assetFiles.first())
        val requested = info.accelerators[settings.accelerator]
        var note: String? = null
        var created: Interpreter? = null
        if (settings.accelerator != 0) {
            try {
                val options = Interpreter.Options().setNumThreads(settings.threads)
                if (settings.accelerator == 1) {
                    check(CompatibilityList().isDelegateSupportedOnThisDevice) { "GPU delegate not supported on this device" }
                    val gpu = GpuDelegate(CompatibilityList().bestOptionsForThisDevice)
                    delegate = gpu
                    options.addDelegate(gpu)
                } else {
                    val nnapi = NnApiDelegate() // deprecated since Android 15; kept for older devices
                    delegate = nnapi
                    options.addDelegate(nnapi)
                }
                created = Interpreter(model, options)
            } catch (e: Exception) {
                delegate?.close()
                delegate = null
                note = "$requested failed (${e.message}): running on CPU"
            }
        }
        interpreter = created ?: Interpreter(model, Interpreter.Options().setNumThreads(settings.threads))
        activeAccelerator = if (created != null) requested else info.accelerators[0]
        fallbackNote = note
    }

    override fun detect(frame: Bitmap, settings: RunSettings): FrameResult {
        val lb = Letterbox.compute(frame.width, frame.height, ModelConfig.INPUT_WIDTH, ModelConfig.INPUT_HEIGHT, ModelConfig.KEEP_ASPECT)
        fillInput(frame, lb)
        val start = System.nanoTime()
        interpreter.run(input, output)
        val ms = (System.nanoTime() - start) / 1e6
        if (ModelConfig.TASK == "classify") return FrameResult(emptyList(), topK(output[0], 3), ms)
        val dets = decoder.decode(output[0], settings.scoreThreshold, settings.iouThreshold)
            .map { lb.toSource(it, frame.width, frame.height) }
        return FrameResult(dets, emptyList(), ms)
    }

    /** Letterbox (pad 114) into an NHWC float buffer with the model's mean/std and channel order. */
    private fun fillInput(frame: Bitmap, lb: Letterbox) {
        val scaled = Bitmap.createScaledBitmap(frame, lb.resizedWidth, lb.resizedHeight, true)
        val pixels = IntArray(lb.resizedWidth * lb.resizedHeight)
        scaled.getPixels(pixels, 0, lb.resizedWidth, 0, 0, lb.resizedWidth, lb.resizedHeight)
        input.rewind()
        val padX = lb.padX.toInt()
        val padY = lb.padY.toInt()
        for (y in 0 until ModelConfig.INPUT_HEIGHT) {
            for (x in 0 until ModelConfig.INPUT_WIDTH) {
                val inside = x >= padX && y >= padY && x < padX + lb.resizedWidth && y < padY + lb.resizedHeight
                val p = if (inside) pixels[(y - padY) * lb.resizedWidth + (x - padX)] else 0xFF727272.toInt()
                val rgb = floatArrayOf(((p shr 16) and 0xFF).toFloat(), ((p shr 8) and 0xFF).toFloat(), (p and 0xFF).toFloat())
                for (c in 0 until 3) {
                    val v = rgb[if (ModelConfig.BGR) 2 - c else c]
                    input.putFloat((v - ModelConfig.MEAN[c]) / ModelConfig.STD[c])
                }
            }
        }
        input.rewind()
    }

    override fun close() {
        interpreter.close()
        delegate?.close()
    }

    private fun mapAsset(context: Context, name: String): MappedByteBuffer {
        context.assets.openFd(name).use { fd ->
            FileInputStream(fd.fileDescriptor).channel.use { channel ->
                return channel.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
            }
        }
    }
}
{%- endif %}
