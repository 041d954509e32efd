package {{ package }}

/** Facts about the bundled model, rendered from edgepack's manifest.json. */
object ModelConfig {
    const val TASK = "{{ task }}"
    const val HEAD = "{{ head }}"
    const val INPUT_WIDTH = {{ input_width }}
    const val INPUT_HEIGHT = {{ input_height }}
    const val NUM_CLASSES = {{ num_classes }}
    const val NUM_ANCHORS = {{ num_anchors }}
    const val OUTPUT_SIZE = {{ output_size }}
    const val CHANNELS_FIRST = {{ "true" if channels_first else "false" }}
    const val KEEP_ASPECT = {{ "true" if keep_aspect else "false" }} // letterbox, pad value 114
    const val BGR = {{ "true" if bgr else "false" }}
    val MEAN = floatArrayOf({{ mean | join("f, ") }}f)
    val STD = floatArrayOf({{ std | join("f, ") }}f)
    const val DEFAULT_SCORE_THRESHOLD = {{ score_threshold }}f
    const val DEFAULT_IOU_THRESHOLD = {{ iou_threshold }}f

    /** Backends bundled in assets/, with their model files. */
    val BACKENDS: List<BackendInfo> = listOf(
{%- for b in backends %}
        BackendInfo("{{ b.name }}", "{{ b.precision }}", listOf({% for role, path in b.files.items() %}"{{ path | kotlin_string }}"{{ ", " if not loop.last }}{% endfor %}), "{{ b.input_blob | kotlin_string }}", "{{ b.output_blob | kotlin_string }}"),
{%- endfor %}
    )
}

data class BackendInfo(
    val name: String,
    val precision: String,
    val assetFiles: List<String>,
    val inputName: String,
    val outputName: String,
) {
    /** The accelerators this backend can try; the first is the CPU path every device has. */
    val accelerators: List<String>
        get() = when (name) {
            "tflite" -> listOf("CPU (XNNPACK)", "GPU", "NNAPI")
            "ncnn" -> listOf("CPU", "Vulkan")
            else -> listOf("CPU", "OpenCL", "Vulkan")
        }
}
