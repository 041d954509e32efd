// Runs the bundled Core ML model through Vision. The model is loaded off the main thread (the
// first load compiles it for the chosen compute units, which takes a few seconds) while frames
// keep arriving on the capture queue: the request and the thresholds sit behind locks.
import CoreML
import Foundation
import Vision

struct Detection: Identifiable {
    let id = UUID()
    let label: String
    /// A probability in 0...1 (classifier logits are turned into probabilities first).
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

/// The NMS pipeline takes its thresholds as optional inputs; Vision asks for them on the queue
/// that performs the request while the settings sheet changes them on the main thread.
final class ThresholdProvider: NSObject, MLFeatureProvider, @unchecked Sendable {
    private let lock = NSLock()
    private var iou: Double
    private var confidence: Double

    init(iou: Double, confidence: Double) {
        self.iou = iou
        self.confidence = confidence
    }

    func set(iou: Double, confidence: Double) {
        lock.lock()
        defer { lock.unlock() }
        self.iou = iou
        self.confidence = confidence
    }

    var featureNames: Set<String> { ["iouThreshold", "confidenceThreshold"] }

    func featureValue(for featureName: String) -> MLFeatureValue? {
        lock.lock()
        defer { lock.unlock() }
        switch featureName {
        case "iouThreshold": return MLFeatureValue(double: iou)
        case "confidenceThreshold": return MLFeatureValue(double: confidence)
        default: return nil
        }
    }
}

/// Thread-safe: load() runs on a background task, detect() on the capture queue.
final class Detector: @unchecked Sendable {
    private let lock = NSLock()
    private var loadedRequest: VNCoreMLRequest?
    private let thresholds = ThresholdProvider(iou: ModelInfo.defaultIoU, confidence: ModelInfo.defaultConfidence)

    /// The current request, nil until a model is loaded.
    var request: VNCoreMLRequest? {
        lock.lock()
        defer { lock.unlock() }
        return loadedRequest
    }

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
        lock.lock()
        loadedRequest = request
        lock.unlock()
    }

    func setThresholds(confidence: Double, iou: Double) {
        thresholds.set(iou: iou, confidence: confidence)
    }

    /// One frame on the capture queue; returns detections (or the top classes) and the inference time in ms.
    func detect(pixelBuffer: CVPixelBuffer, orientation: CGImagePropertyOrientation) -> ([Detection], Double) {
        guard let request = self.request else { return ([], 0) }
        let handler = VNImageRequestHandler(cvPixelBuffer: pixelBuffer, orientation: orientation, options: [:])
        return Detector.perform(request, handler: handler)
    }

    /// Performs the request synchronously on the calling thread (one request is only ever
    /// performed by one queue at a time: the capture queue, or a test).
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
            // Vision returns every class; the model's scores may be logits
            let probabilities = Probabilities.from(classes.map { $0.confidence }, kind: ModelInfo.classifierOutput)
            let ranked = zip(classes, probabilities).sorted { $0.1 > $1.1 }.prefix(3)
            return (ranked.map { Detection(label: $0.0.identifier, confidence: $0.1, rect: .zero) }, elapsed)
        }
        return ([], elapsed)
    }
}
