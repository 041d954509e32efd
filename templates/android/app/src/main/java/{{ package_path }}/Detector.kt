package {{ package }}

import android.content.Context
import {{ package }}.core.Detection
import {{ package }}.core.RgbaFrame
import {{ package }}.core.RunSettings

/** What one frame produced: boxes in the upright frame's pixels (or top classes with probabilities), and timings. */
data class FrameResult(
    val detections: List<Detection>,
    val classes: List<Pair<Int, Float>>,
    val inferenceMs: Double,
)

/** One loaded model. Not thread-safe: the activity creates, uses and closes it on its analysis thread only. */
interface Detector : AutoCloseable {
    /** The accelerator actually in use; differs from the requested one after a fallback. */
    val activeAccelerator: String
    /** Why the requested accelerator is not in use, shown on screen; null when it is. */
    val fallbackNote: String?
    fun detect(frame: RgbaFrame, settings: RunSettings): FrameResult
}

object Detectors {
    /** Bundled backends this build can run: NCNN / MNN only when their libraries were present at build time. */
    val available: List<BackendInfo>
        get() = ModelConfig.BACKENDS.filter { isBuilt(it.name) }

    /** Bundled backends left out of this build, with the reason (shown on screen). */
    val missing: List<String>
        get() = ModelConfig.BACKENDS.filter { !isBuilt(it.name) }.map { "${it.name}: library not installed (see README.md)" }

    private fun isBuilt(name: String): Boolean = when (name) {
{%- if has_native %}
        // Gradle found the library (BuildConfig) and CMake compiled the engine in (the library says so)
        "ncnn" -> BuildConfig.HAS_NCNN && "ncnn" in NativeLibraries.compiledBackends
        "mnn" -> BuildConfig.HAS_MNN && "mnn" in NativeLibraries.compiledBackends
{%- else %}
        "ncnn" -> BuildConfig.HAS_NCNN
        "mnn" -> BuildConfig.HAS_MNN
{%- endif %}
        else -> true
    }

    fun defaultSettings(): RunSettings = RunSettings(
        backend = (available.firstOrNull() ?: ModelConfig.BACKENDS.first()).name,
        scoreThreshold = ModelConfig.DEFAULT_SCORE_THRESHOLD,
        iouThreshold = ModelConfig.DEFAULT_IOU_THRESHOLD,
    )

    fun create(context: Context, settings: RunSettings): Detector {
        val info = available.firstOrNull { it.name == settings.backend }
            ?: error("backend ${settings.backend} is not built into this app")
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
