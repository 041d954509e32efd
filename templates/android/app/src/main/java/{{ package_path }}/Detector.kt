package {{ package }}

import android.content.Context
import android.graphics.Bitmap
import {{ package }}.core.Detection

/** Settings the user can change at run time from the settings sheet. */
data class RunSettings(
    val backend: String,
    val accelerator: Int = 0,
    val threads: Int = 4,
    val scoreThreshold: Float = ModelConfig.DEFAULT_SCORE_THRESHOLD,
    val iouThreshold: Float = ModelConfig.DEFAULT_IOU_THRESHOLD,
)

/** What one frame produced: boxes in the upright frame's pixels (or top classes), and timings. */
data class FrameResult(
    val detections: List<Detection>,
    val classes: List<Pair<Int, Float>>,
    val inferenceMs: Double,
)

interface Detector : AutoCloseable {
    /** The accelerator actually in use; differs from the requested one after a fallback. */
    val activeAccelerator: String
    /** Why the requested accelerator is not in use, shown on screen; null when it is. */
    val fallbackNote: String?
    fun detect(frame: Bitmap, settings: RunSettings): FrameResult
}

object Detectors {
    fun create(context: Context, settings: RunSettings): Detector {
        val info = ModelConfig.BACKENDS.first { it.name == settings.backend }
        return when (info.name) {
{%- if has_tflite %}
            "tflite" -> TfliteDetector(context, info, settings)
{%- endif %}
{%- if has_native %}
            "ncnn", "mnn" -> NativeDetector(context, info, settings)
{%- endif %}
            else -> error("backend ${info.name} is not bundled")
        }
    }
}
