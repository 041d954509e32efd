{%- if has_tflite -%}
package {{ package }}

import android.content.Context
import {{ package }}.core.FrameSampler
import {{ package }}.core.Letterbox
import {{ package }}.core.Probabilities
import {{ package }}.core.RgbaFrame
import {{ package }}.core.RunSettings
import {{ package }}.core.TensorBuffers
import {{ package }}.core.YoloDecoder
import {{ package }}.core.topK
import org.tensorflow.lite.Interpreter
import org.tensorflow.lite.gpu.CompatibilityList
import org.tensorflow.lite.gpu.GpuDelegate
import org.tensorflow.lite.nnapi.NnApiDelegate
import java.io.FileInputStream
import java.nio.MappedByteBuffer
import java.nio.channels.FileChannel

/**
 * LiteRT (TFLite Interpreter API) with a CPU (XNNPACK) / GPU / NNAPI choice and automatic
 * fallback to CPU. Input and output are direct buffers sized from the manifest's tensor shapes
 * and checked against the model when it loads; nothing is allocated per frame.
 */
class TfliteDetector(context: Context, private val info: BackendInfo, settings: RunSettings) : Detector {
    private val interpreter: Interpreter
    private var delegate: AutoCloseable? = null
    private val input = TensorBuffers.allocate(info.inputShape)
    private val inputFloats = input.asFloatBuffer()
    private val output = TensorBuffers.allocate(info.outputShape)
    private val outputFloats = output.asFloatBuffer()
    private val scores = FloatArray(TensorBuffers.elementCount(info.outputShape))
    private val decoder = YoloDecoder(
        if (ModelConfig.HEAD == "yolov5") YoloDecoder.Head.YOLOV5 else YoloDecoder.Head.YOLOV8,
        ModelConfig.NUM_CLASSES, info.numAnchors, info.channelsFirst,
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
                    val gpu = CompatibilityList().use { list ->
                        check(list.isDelegateSupportedOnThisDevice) { "GPU delegate not supported on this device" }
                        GpuDelegate(list.bestOptionsForThisDevice)
                    }
                    delegate = gpu
                    options.addDelegate(gpu)
                } else {
                    val nnapi = NnApiDelegate() // deprecated since Android 15; kept for older devices
                    delegate = nnapi
                    options.addDelegate(nnapi)
                }
                created = Interpreter(model, options)
            } catch (e: Exception) {
                note = "$requested failed (${e.message}): running on CPU"
            } catch (e: LinkageError) { // the delegate's native library is missing for this ABI
                note = "$requested unavailable (${e.message}): running on CPU"
            }
            if (created == null) {
                delegate?.close()
                delegate = null
            }
        }
        interpreter = created ?: Interpreter(model, Interpreter.Options().setNumThreads(settings.threads))
        try {
            TensorBuffers.requireShape("input", interpreter.getInputTensor(0).shape(), info.inputShape)
            TensorBuffers.requireShape("output", interpreter.getOutputTensor(0).shape(), info.outputShape)
        } catch (e: IllegalArgumentException) {
            close()
            throw e
        }
        activeAccelerator = if (created != null) requested else info.accelerators[0]
        fallbackNote = note
    }

    override fun detect(frame: RgbaFrame, settings: RunSettings): FrameResult {
        val width = frame.uprightWidth
        val height = frame.uprightHeight
        val lb = Letterbox.compute(width, height, ModelConfig.INPUT_WIDTH, ModelConfig.INPUT_HEIGHT, ModelConfig.KEEP_ASPECT)
        // the TFLite model takes NHWC input (the manifest's inputs[0].layout)
        FrameSampler.fill(frame, lb, ModelConfig.INPUT_WIDTH, ModelConfig.INPUT_HEIGHT, ModelConfig.INPUT_CHANNELS,
            ModelConfig.MEAN, ModelConfig.STD, ModelConfig.BGR, nchw = false, out = inputFloats)
        input.rewind()
        output.rewind()
        val start = System.nanoTime()
        interpreter.run(input, output)
        val ms = (System.nanoTime() - start) / 1e6
        outputFloats.rewind()
        outputFloats.get(scores)
        if (ModelConfig.TASK == "classify") {
            return FrameResult(emptyList(), topK(Probabilities.from(scores, ModelConfig.CLASSIFIER_OUTPUT), 3), ms)
        }
        val dets = decoder.decode(scores, settings.scoreThreshold, settings.iouThreshold).map { lb.toSource(it, width, height) }
        return FrameResult(dets, emptyList(), ms)
    }

    override fun close() {
        interpreter.close()
        delegate?.close()
        delegate = null
    }

    private fun mapAsset(context: Context, name: String): MappedByteBuffer {
        // assets stay uncompressed (androidResources.noCompress) so they can be memory-mapped
        context.assets.openFd(name).use { fd ->
            FileInputStream(fd.fileDescriptor).channel.use { channel ->
                return channel.map(FileChannel.MapMode.READ_ONLY, fd.startOffset, fd.declaredLength)
            }
        }
    }
}
{%- endif %}
