// Camera frames, on the capture queue: Vision runs here (never on the main thread) and each
// result is handed to the main actor by the handler. The interface orientation and the camera in
// use are set from the main thread, behind a lock.
import AVFoundation
import CoreGraphics
import Foundation

struct FrameOutput: Sendable {
    let detections: [Detection]
    let inferenceMs: Double
    /// Size of the upright image the normalized boxes refer to.
    let imageSize: CGSize
}

final class FrameProcessor: NSObject, AVCaptureVideoDataOutputSampleBufferDelegate, @unchecked Sendable {
    let detector = Detector()
    /// Serial: one frame at a time; the output drops frames that arrive meanwhile.
    let queue = DispatchQueue(label: "edgepack.frames", qos: .userInitiated)
    private let lock = NSLock()
    private var orientation: InterfaceOrientation = .portrait
    private var frontCamera = false
    private var handler: (@Sendable (FrameOutput) -> Void)?

    func setHandler(_ handler: @escaping @Sendable (FrameOutput) -> Void) {
        lock.lock()
        defer { lock.unlock() }
        self.handler = handler
    }

    func update(orientation: InterfaceOrientation, frontCamera: Bool) {
        lock.lock()
        defer { lock.unlock() }
        self.orientation = orientation
        self.frontCamera = frontCamera
    }

    func captureOutput(_ output: AVCaptureOutput, didOutput sampleBuffer: CMSampleBuffer, from connection: AVCaptureConnection) {
        guard let pixelBuffer = CMSampleBufferGetImageBuffer(sampleBuffer) else { return }
        lock.lock()
        let orientation = self.orientation
        let frontCamera = self.frontCamera
        let handler = self.handler
        lock.unlock()
        // buffers arrive as the sensor delivers them (not rotated, not mirrored: see CameraSession);
        // Vision turns them upright itself from the EXIF orientation
        let rotation = Geometry.frameRotationDegrees(orientation, frontCamera: frontCamera)
        let (found, ms) = detector.detect(pixelBuffer: pixelBuffer, orientation: Geometry.exifOrientation(rotationDegrees: rotation))
        let size = Geometry.uprightSize(width: CVPixelBufferGetWidth(pixelBuffer), height: CVPixelBufferGetHeight(pixelBuffer),
                                        rotationDegrees: rotation)
        handler?(FrameOutput(detections: found, inferenceMs: ms, imageSize: size))
    }
}

/// Capture session set-up, run on the session queue (AVCaptureSession calls block).
enum CameraSession {
    /// Configures input and output for the camera; returns a message when there is no camera.
    static func configure(_ session: AVCaptureSession, output: AVCaptureVideoDataOutput, processor: FrameProcessor, frontCamera: Bool) -> String? {
        session.beginConfiguration()
        defer { session.commitConfiguration() }
        if session.canSetSessionPreset(.hd1280x720) { session.sessionPreset = .hd1280x720 }
        session.inputs.forEach { session.removeInput($0) }
        let position: AVCaptureDevice.Position = frontCamera ? .front : .back
        guard let camera = AVCaptureDevice.default(.builtInWideAngleCamera, for: .video, position: position),
              let input = try? AVCaptureDeviceInput(device: camera), session.canAddInput(input) else {
            return "No \(frontCamera ? "front" : "back") camera available (the simulator has none: run on an iPhone)."
        }
        session.addInput(input)
        if !session.outputs.contains(output), session.canAddOutput(output) {
            output.alwaysDiscardsLateVideoFrames = true
            output.videoSettings = [kCVPixelBufferPixelFormatTypeKey as String: kCVPixelFormatType_32BGRA]
            output.setSampleBufferDelegate(processor, queue: processor.queue)
            session.addOutput(output)
        }
        // Frames stay as the sensor delivers them: Geometry's rotation table assumes unrotated,
        // unmirrored buffers, so mirroring is switched off explicitly (the preview still mirrors
        // the front camera, and the overlay mirrors the boxes once to match).
        if let connection = output.connection(with: .video), connection.isVideoMirroringSupported {
            connection.automaticallyAdjustsVideoMirroring = false
            connection.isVideoMirrored = false
        }
        return nil
    }
}
