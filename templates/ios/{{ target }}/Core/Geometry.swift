// Pure geometry shared by the app and the tests (Foundation, CoreGraphics and ImageIO only, no
// UIKit or AVFoundation). Mirrors edgepack's Python reference (edgepack/apps/ios_geometry.py),
// which edgepack tests on every build: change both together.
import CoreGraphics
import Foundation
import ImageIO

/// How the interface is turned (UIInterfaceOrientation's cases), kept independent of UIKit so the
/// tables are testable anywhere. landscapeRight: home button / bottom edge on the right.
public enum InterfaceOrientation: CaseIterable {
    case portrait, portraitUpsideDown, landscapeLeft, landscapeRight
}

public enum Geometry {
    /// Degrees to turn a camera buffer clockwise so it is upright on screen. Both iPhone cameras
    /// deliver landscape buffers; the back camera's are upright with the interface in
    /// landscapeRight, the front camera's with it in landscapeLeft (its sensor faces the other
    /// way), so the two differ by 180 degrees in landscape and agree in portrait.
    public static func frameRotationDegrees(_ interface: InterfaceOrientation, frontCamera: Bool) -> Int {
        switch (interface, frontCamera) {
        case (.portrait, false): return 90
        case (.portrait, true): return 90
        case (.portraitUpsideDown, false): return 270
        case (.portraitUpsideDown, true): return 270
        case (.landscapeRight, false): return 0
        case (.landscapeRight, true): return 180
        case (.landscapeLeft, false): return 180
        case (.landscapeLeft, true): return 0
        }
    }

    /// The EXIF orientation Vision needs for that rotation. Never a mirrored one: Vision sees the
    /// scene as it is (text and left/right stay right for the model), and the mirroring of the
    /// front camera's preview is applied once, in viewRect(mirrored:).
    public static func exifOrientation(rotationDegrees: Int) -> CGImagePropertyOrientation {
        switch rotationDegrees {
        case 90: return .right
        case 180: return .down
        case 270: return .left
        default: return .up
        }
    }

    public static func frameOrientation(_ interface: InterfaceOrientation, frontCamera: Bool) -> CGImagePropertyOrientation {
        exifOrientation(rotationDegrees: frameRotationDegrees(interface, frontCamera: frontCamera))
    }

    /// Size of the upright image for a buffer of width x height turned by rotationDegrees.
    public static func uprightSize(width: Int, height: Int, rotationDegrees: Int) -> CGSize {
        rotationDegrees % 180 == 0 ? CGSize(width: width, height: height) : CGSize(width: height, height: width)
    }

    /// Vision's normalized rect (origin bottom-left) -> normalized rect with origin top-left.
    public static func topLeftRect(fromVision rect: CGRect) -> CGRect {
        CGRect(x: rect.minX, y: 1 - rect.maxY, width: rect.width, height: rect.height)
    }

    /// Maps a normalized (top-left origin) rect of the upright image into a view that shows the
    /// image with aspect-fill (the camera preview's resizeAspectFill). mirrored: the preview shows
    /// the image mirrored (the front camera), which is the only place mirroring is applied.
    public static func viewRect(_ rect: CGRect, imageSize: CGSize, viewSize: CGSize, mirrored: Bool) -> CGRect {
        let scale = max(viewSize.width / imageSize.width, viewSize.height / imageSize.height)
        let shown = CGSize(width: imageSize.width * scale, height: imageSize.height * scale)
        let offset = CGPoint(x: (viewSize.width - shown.width) / 2, y: (viewSize.height - shown.height) / 2)
        var x = rect.minX
        if mirrored { x = 1 - rect.maxX }
        return CGRect(x: offset.x + x * shown.width, y: offset.y + rect.minY * shown.height,
                      width: rect.width * shown.width, height: rect.height * shown.height)
    }

    public static func iou(_ a: CGRect, _ b: CGRect) -> Double {
        let inter = a.intersection(b)
        if inter.isNull || inter.isEmpty { return 0 }
        let i = Double(inter.width * inter.height)
        return i / (Double(a.width * a.height) + Double(b.width * b.height) - i)
    }

    /// F1 of two labelled box sets: greedy one-to-one matching, same label, IoU >= threshold.
    public static func f1(expected: [(String, CGRect)], actual: [(String, CGRect)], iouThreshold: Double) -> Double {
        if expected.isEmpty && actual.isEmpty { return 1 }
        var used = Set<Int>()
        var matched = 0
        for (label, box) in expected {
            var best = -1
            var bestIoU = iouThreshold
            for (j, candidate) in actual.enumerated() where !used.contains(j) && candidate.0 == label {
                let value = iou(box, candidate.1)
                if value >= bestIoU { best = j; bestIoU = value }
            }
            if best >= 0 { used.insert(best); matched += 1 }
        }
        return 2.0 * Double(matched) / Double(expected.count + actual.count)
    }
}
