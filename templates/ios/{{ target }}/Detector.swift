// Runs the bundled Core ML model through Vision. The model is loaded off the main thread;
// the first load compiles it for the chosen compute units, which takes a few seconds.
import CoreML
import Foundation
import Vision

struct Detection: Identifiable {
    let id = UUID()
    let label: String
    let confidence: Float
    /// Normalized, origin top-left, in the upright frame.
    let rect: CGRect
}

enum ComputeChoice: String, CaseIterable, Identifiable {
    case cpuOnly = "CPU only"
    case cpuAndGPU = "CPU + GPU"
    case cpuAndNeuralEngine = "CPU + Neural Engine"
    case all = "All"

    var id: String { rawValue }

    var units: MLComputeUnits {
        switch self {
        case .cpuOnly: return .cpuOnly
        case .cpuAndGPU: return .cpuAndGPU
        case .cpuAndNeuralEngine: return .cpuAndNeuralEngine
        case .all: return .all
        }
    }
}

/// The NMS pipeline takes its thresholds as optional inputs; Vision passes them from here.
final class ThresholdProvider: MLFeatureProvider {
    var iou: Double
    var confidence: Double

    init(iou: Double, confidence: Double) {
        self.iou = iou
        self.confidence = confidence
    }

    var featureNames: Set<String> { ["iouThreshold", "confidenceThreshold"] }

    func featureValue(for featureName: String) -> MLFeatureValue? {
        switch featureName {
        case "iouThreshold": return MLFeatureValue(double: iou)
        case "confidenceThreshold": return MLFeatureValue(double: confidence)
        default: return nil
        }
    }
}

final class Detector {
    private(set) var request: VNCoreMLRequest?
    private let thresholds = ThresholdProvider(iou: ModelInfo.defaultIoU, confidence: ModelInfo.defaultConfidence)

    /// Loads (and compiles) the model for the compute units; call from a background task.
    func load(computeUnits: MLComputeUnits) throws {
        let configuration = MLModelConfiguration()
        configuration.computeUnits = computeUnits
        guard let url = Bundle.main.url(forResource: ModelInfo.modelName, withExtension: "mlmodelc") else {
            throw NSError(domain: "edgepack", code: 1, userInfo: [NSLocalizedDescriptionKey: "\(ModelInfo.modelName).mlmodelc is not in the app bundle"])
        }
        let model = try VNCoreMLModel(for: MLModel(contentsOf: url, configuration: configuration))
        if ModelInfo.isDetector { model.featureProvider = thresholds }
        let request = VNCoreMLRequest(model: model)
        request.imageCropAndScaleOption = ModelInfo.letterbox ? .scaleFit : .scaleFill
        self.request = request
    }

    func setThresholds(confidence: Double, iou: Double) {
        thresholds.confidence = confidence
        thresholds.iou = iou
    }

    /// One frame; returns detections (or the top classes) and the inference time in ms.
    func detect(pixelBuffer: CVPixelBuffer, orientation: CGImagePropertyOrientation) -> ([Detection], Double) {
        guard let request else { return ([], 0) }
        let handler = VNImageRequestHandler(cvPixelBuffer: pixelBuffer, orientation: orientation, options: [:])
        return Detector.perform(request, handler: handler)
    }

    static func perform(_ request: VNCoreMLRequest, handler: VNImageRequestHandler) -> ([Detection], Double) {
        let start = CFAbsoluteTimeGetCurrent()
        do {
            try handler.perform([request])
        } catch {
            return ([], 0)
        }
        let elapsed = (CFAbsoluteTimeGetCurrent() - start) * 1000
        let results = request.results ?? []
        if let objects = results as? [VNRecognizedObjectObservation] {
            let detections = objects.compactMap { o -> Detection? in
                guard let top = o.labels.first else { return nil }
                return Detection(label: top.identifier, confidence: top.confidence, rect: Geometry.topLeftRect(fromVision: o.boundingBox))
            }
            return (detections, elapsed)
        }
        if let classes = results as? [VNClassificationObservation] {
            let top = classes.prefix(3).map { Detection(label: $0.identifier, confidence: $0.confidence, rect: .zero) }
            return (Array(top), elapsed)
        }
        return ([], elapsed)
    }
}
