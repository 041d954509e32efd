// Facts about the bundled model, rendered from edgepack's manifest.json.
import Foundation

enum ModelInfo {
    static let displayName = "{{ app_name | swift_string }}"
    static let modelName = "{{ model_class }}"
    static let isDetector = {{ "true" if is_detector else "false" }}
    static let inputWidth = {{ input_width }}
    static let inputHeight = {{ input_height }}
    /// The model was converted for letterboxed input; Vision's scaleFit keeps the aspect ratio the same way.
    static let letterbox = {{ "true" if letterbox else "false" }}
    static let defaultConfidence: Double = {{ score_threshold }}
    static let defaultIoU: Double = {{ iou_threshold }}
    static let labels: [String] = [
{%- for label in labels %}
        "{{ label | swift_string }}",
{%- endfor %}
    ]
}
