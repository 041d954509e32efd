// The camera and the model, for the SwiftUI views: published state lives on the main actor; the
// capture session is configured, started and stopped on its own serial queue, and frames are
// analysed on the FrameProcessor's queue.
import AVFoundation
import SwiftUI

@MainActor
final class CameraController: ObservableObject {
    @Published private(set) var detections: [Detection] = []
    @Published private(set) var imageSize = CGSize(width: 720, height: 1280)
    @Published private(set) var inferenceMs: Double = 0
    @Published private(set) var fps: Double = 0
    @Published private(set) var status = "Loading the model (the first load compiles it for this device)..."
    @Published private(set) var frontCamera = false
    /// Bumped after each session (re)configuration: the preview re-applies its rotation then.
    @Published private(set) var sessionGeneration = 0
    @Published var computeChoice: ComputeChoice = .all {
        didSet { if computeChoice != oldValue { loadModel() } }
    }
    @Published var confidence: Double = ModelInfo.defaultConfidence { didSet { updateThresholds() } }
    @Published var iou: Double = ModelInfo.defaultIoU { didSet { updateThresholds() } }

    let session = AVCaptureSession()
    private let output = AVCaptureVideoDataOutput()
    private let sessionQueue = DispatchQueue(label: "edgepack.session")
    private let processor = FrameProcessor()
    private var orientation: InterfaceOrientation = .portrait
    private var lastFrame: CFAbsoluteTime = 0
    private var started = false

    func start() {
        guard !started else { return }
        started = true
        processor.setHandler { [weak self] result in
            Task { @MainActor in self?.publish(result) }
        }
        processor.update(orientation: orientation, frontCamera: frontCamera)
        if processor.detector.request == nil { loadModel() }
        AVCaptureDevice.requestAccess(for: .video) { granted in
            Task { @MainActor in
                guard granted else {
                    self.status = "Camera access is off: enable it in Settings > Privacy > Camera."
                    return
                }
                self.configureSession()
            }
        }
    }

    func stop() {
        let session = session
        sessionQueue.async { if session.isRunning { session.stopRunning() } }
        started = false
    }

    func switchCamera() {
        frontCamera.toggle()
        processor.update(orientation: orientation, frontCamera: frontCamera)
        configureSession()
    }

    /// From the preview view whenever the interface rotates (all four orientations).
    func interfaceOrientationChanged(_ orientation: InterfaceOrientation) {
        self.orientation = orientation
        processor.update(orientation: orientation, frontCamera: frontCamera)
    }

    private func configureSession() {
        let session = session, output = output, processor = processor, front = frontCamera
        sessionQueue.async {
            let problem = CameraSession.configure(session, output: output, processor: processor, frontCamera: front)
            if problem == nil && !session.isRunning { session.startRunning() }
            Task { @MainActor in
                if let problem { self.status = problem }
                self.sessionGeneration += 1
            }
        }
    }

    private func loadModel() {
        let units = computeChoice.units
        let detector = processor.detector
        let name = computeChoice.rawValue
        status = "Loading the model for \(name)..."
        Task.detached(priority: .userInitiated) {
            let started = CFAbsoluteTimeGetCurrent()
            do {
                try detector.load(computeUnits: units)
                let seconds = CFAbsoluteTimeGetCurrent() - started
                await MainActor.run {
                    self.status = String(format: "Model ready (loaded in %.1f s)", seconds)
                    self.updateThresholds()
                }
            } catch {
                let message = error.localizedDescription
                await MainActor.run { self.status = "Model failed to load: \(message)" }
            }
        }
    }

    private func updateThresholds() {
        processor.detector.setThresholds(confidence: confidence, iou: iou)
    }

    private func publish(_ result: FrameOutput) {
        let now = CFAbsoluteTimeGetCurrent()
        if lastFrame > 0 {
            let frameFps = 1 / max(now - lastFrame, 1e-6)
            fps = fps == 0 ? frameFps : 0.9 * fps + 0.1 * frameFps
        }
        lastFrame = now
        detections = result.detections
        inferenceMs = result.inferenceMs
        imageSize = result.imageSize
    }
}
