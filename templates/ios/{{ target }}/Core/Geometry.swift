// Pure geometry shared by the app and the tests (Foundation + CoreGraphics only, no UIKit or
// AVFoundation). Mirrors edgepack's Python reference (edgepack/apps/ios_geometry.py).
import CoreGraphics
import Foundation
import ImageIO

/// How the device is held; kept independent of UIKit so the mapping is testable anywhere.
public enum DeviceOrientation {
    case portrait, portraitUpsideDown, landscapeLeft, landscapeRight
}

public enum Geometry {
    /// The EXIF orientation of camera frames for Vision: sensor buffers are landscape, so a
    /// portrait phone sees them rotated; the front camera is also mirrored.
    public static func frameOrientation(_ device: DeviceOrientation, frontCamera: Bool) -> CGImagePropertyOrientation {
        switch (device, frontCamera) {
        case (.portrait, false): return .right
        case (.portrait, true): return .leftMirrored
        case (.portraitUpsideDown, false): return .left
        case (.portraitUpsideDown, true): return .rightMirrored
        case (.landscapeLeft, false): return .up
        case (.landscapeLeft, true): return .downMirrored
        case (.landscapeRight, false): return .down
        case (.landscapeRight, true): return .upMirrored
        }
    }

    /// Vision's normalized rect (origin bottom-left) -> normalized rect with origin top-left.
    public static func topLeftRect(fromVision rect: CGRect) -> CGRect {
        CGRect(x: rect.minX, y: 1 - rect.maxY, width: rect.width, height: rect.height)
    }

    /// Maps a normalized (top-left origin) rect of the upright image into a view that shows the
    /// image with aspect-fill (the camera preview's resizeAspectFill), optionally mirrored.
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
