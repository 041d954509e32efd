// The live preview (AVCaptureVideoPreviewLayer, aspect-fill) with the box overlay on top. The
// preview follows the interface orientation in all four directions, and reports it to the
// controller so Vision turns frames the same way.
import AVFoundation
import SwiftUI
import UIKit

struct CameraPreview: UIViewRepresentable {
    let session: AVCaptureSession
    let detections: [Detection]
    let imageSize: CGSize
    let frontCamera: Bool
    let sessionGeneration: Int
    let onOrientation: (InterfaceOrientation) -> Void

    func makeUIView(context: Context) -> PreviewView {
        let view = PreviewView()
        view.previewLayer.session = session
        view.previewLayer.videoGravity = .resizeAspectFill
        view.onOrientation = onOrientation
        return view
    }

    func updateUIView(_ view: PreviewView, context: Context) {
        view.frontCamera = frontCamera
        view.onOrientation = onOrientation
        view.applyRotation()  // the connection is new after a session reconfiguration
        view.overlay.show(detections, imageSize: imageSize, mirrored: view.previewMirrored)
    }
}

final class PreviewView: UIView {
    let overlay = OverlayView()
    var frontCamera = false
    var onOrientation: ((InterfaceOrientation) -> Void)?
    private var orientation: InterfaceOrientation = .portrait
    private var geometryObservation: NSKeyValueObservation?

    override class var layerClass: AnyClass { AVCaptureVideoPreviewLayer.self }
    var previewLayer: AVCaptureVideoPreviewLayer { layer as! AVCaptureVideoPreviewLayer }

    /// The preview mirrors the front camera by default (the frames Vision sees are not mirrored).
    var previewMirrored: Bool { previewLayer.connection?.isVideoMirrored ?? frontCamera }

    override init(frame: CGRect) {
        super.init(frame: frame)
        addSubview(overlay)
    }

    required init?(coder: NSCoder) { fatalError("init(coder:) is not used") }

    override func didMoveToWindow() {
        super.didMoveToWindow()
        geometryObservation = nil
        guard let scene = window?.windowScene else { return }
        // the scene's geometry changes for every rotation, including the 180-degree turns
        // between the two landscapes that change no bounds (UIKit reports it on the main thread)
        geometryObservation = scene.observe(\.effectiveGeometry, options: [.initial, .new]) { [weak self] scene, _ in
            self?.interfaceOrientationChanged(scene.effectiveGeometry.interfaceOrientation)
        }
    }

    override func layoutSubviews() {
        super.layoutSubviews()
        overlay.frame = bounds
    }

    private func interfaceOrientationChanged(_ value: UIInterfaceOrientation) {
        switch value {
        case .portrait: orientation = .portrait
        case .portraitUpsideDown: orientation = .portraitUpsideDown
        case .landscapeLeft: orientation = .landscapeLeft
        case .landscapeRight: orientation = .landscapeRight
        default: return  // unknown: keep the last one
        }
        applyRotation()
        onOrientation?(orientation)
    }

    /// Turns the preview upright for the interface orientation: an angle from iOS 17, the
    /// (then deprecated) videoOrientation on iOS 16.
    func applyRotation() {
        guard let connection = previewLayer.connection else { return }
        if #available(iOS 17.0, *) {
            let angle = CGFloat(Geometry.frameRotationDegrees(orientation, frontCamera: frontCamera))
            if connection.isVideoRotationAngleSupported(angle) { connection.videoRotationAngle = angle }
        } else if connection.isVideoOrientationSupported {
            connection.videoOrientation = Self.videoOrientation(orientation)
        }
    }

    /// AVCaptureVideoOrientation names the interface orientation the video is shown in (the
    /// same raw values as UIInterfaceOrientation), whichever camera is in use.
    private static func videoOrientation(_ orientation: InterfaceOrientation) -> AVCaptureVideoOrientation {
        switch orientation {
        case .portrait: return .portrait
        case .portraitUpsideDown: return .portraitUpsideDown
        case .landscapeLeft: return .landscapeLeft
        case .landscapeRight: return .landscapeRight
        }
    }
}
