// The camera: an AVCaptureSession with a preview and a video data output whose frames go to
// the detector on a serial queue (late frames are dropped, never queued).
import AVFoundation
import SwiftUI
import UIKit

@MainActor
final class CameraController: NSObject, ObservableObject {
    @Published var detections: [Detection] = []
    @Published var inferenceMs: Double = 0
    @Published var fps: Double = 0
    @Published var status = "Loading the model (the first load compiles it for this device)..."
    @Published var frontCamera = false
    @Published var computeChoice: ComputeChoice = .all { didSet { loadModel() } }
    @Published var confidence: Double = ModelInfo.defaultConfidence { didSet { updateThresholds() } }
    @Published var iou: Double = ModelInfo.defaultIoU { didSet { updateThresholds() } }

    let session = AVCaptureSession()
    private let output = AVCaptureVideoDataOutput()
    private let frames = DispatchQueue(label: "edgepack.frames")
    private let detector = Detector()
    private var lastFrame = CFAbsoluteTimeGetCurrent()
    private var deviceOrientation: DeviceOrientation = .portrait
    private var configured = false

    func start() {
        AVCaptureDevice.requestAccess(for: .video) { granted in
            Task { @MainActor in
                guard granted else {
                    self.status = "Camera access is off: enable it in Settings > Privacy > Camera."
                    return
                }
                self.configure()
                self.loadModel()
                let session = self.session
                DispatchQueue.global(qos: .userInitiated).async { session.startRunning() }
            }
        }
    }

    func stop() {
        let session = session
        DispatchQueue.global(qos: .userInitiated).async { session.stopRunning() }
    }

    func switchCamera() {
        frontCamera.toggle()
        configured = false
        configure()
    }

    func orientationChanged(_ orientation: UIDeviceOrientation) {
        switch orientation {
        case .portrait: deviceOrientation = .portrait
        case .portraitUpsideDown: deviceOrientation = .portraitUpsideDown
        case .landscapeLeft: deviceOrientation = .landscapeLeft
        case .landscapeRight: deviceOrientation = .landscapeRight
        default: break  // face up/down: keep the last one
        }
    }

    private func configure() {
        guard !configured else { return }
        session.beginConfiguration()
        defer { session.commitConfiguration() }
        session.sessionPreset = .hd1280x720
        session.inputs.forEach { session.removeInput($0) }
        let position: AVCaptureDevice.Position = frontCamera ? .front : .back
        guard let camera = AVCaptureDevice.default(.builtInWideAngleCamera, for: .video, position: position),
              let input = try? AVCaptureDeviceInput(device: camera), session.canAddInput(input) else {
            status = "No camera available (the simulator has none: run on an iPhone)."
            return
        }
        session.addInput(input)
        if session.outputs.isEmpty, session.canAddOutput(output) {
            output.alwaysDiscardsLateVideoFrames = true
            output.videoSettings = [kCVPixelBufferPixelFormatTypeKey as String: kCVPixelFormatType_32BGRA]
            output.setSampleBufferDelegate(self, queue: frames)
            session.addOutput(output)
        }
        configured = true
    }

    private func loadModel() {
        let units = computeChoice.units
        let detector = detector
        status = "Loading the model for \(computeChoice.rawValue)..."
        Task.detached(priority: .userInitiated) {
            let started = CFAbsoluteTimeGetCurrent()
            do {
                try detector.load(computeUnits: units)
                let seconds = CFAbsoluteTimeGetCurrent() - started
                await MainActor.run { self.status = String(format: "Model ready (loaded in %.1f s)", seconds) }
                await self.updateThresholds()
            } catch {
                await MainActor.run { self.status = "Model failed to load: \(error.localizedDescription)" }
            }
        }
    }

    private func updateThresholds() {
        detector.setThresholds(confidence: confidence, iou: iou)
    }

    fileprivate func handle(_ pixelBuffer: CVPixelBuffer) {
        let orientation = Geometry.frameOrientation(deviceOrientation, frontCamera: frontCamera)
        let (found, ms) = detector.detect(pixelBuffer: pixelBuffer, orientation: orientation)
        let now = CFAbsoluteTimeGetCurrent()
        let frameFps = 1 / max(now - lastFrame, 1e-6)
        lastFrame = now
        detections = found
        inferenceMs = ms
        fps = fps == 0 ? frameFps : 0.9 * fps + 0.1 * frameFps
    }
}

extension CameraController: AVCaptureVideoDataOutputSampleBufferDelegate {
    nonisolated func captureOutput(_ output: AVCaptureOutput, didOutput sampleBuffer: CMSampleBuffer, from connection: AVCaptureConnection) {
        guard let pixelBuffer = CMSampleBufferGetImageBuffer(sampleBuffer) else { return }
        // Vision runs synchronously on this serial queue; results are published on the main actor.
        MainActor.assumeIsolated { self.handle(pixelBuffer) }
    }
}
