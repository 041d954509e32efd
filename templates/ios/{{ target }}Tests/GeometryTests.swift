import CoreGraphics
import XCTest
@testable import {{ target }}

/// The same cases edgepack's Python mirror (edgepack/apps/ios_geometry.py) is tested with on every build.
final class GeometryTests: XCTestCase {
    func testVisionRectFlipsToTopLeft() {
        let rect = Geometry.topLeftRect(fromVision: CGRect(x: 0.1, y: 0.2, width: 0.3, height: 0.4))
        XCTAssertEqual(rect.minY, 0.4, accuracy: 1e-9)
        XCTAssertEqual(rect.minX, 0.1, accuracy: 1e-9)
    }

    func testAspectFillMappingAndMirror() {
        let view = CGSize(width: 300, height: 600)
        let image = CGSize(width: 720, height: 1280)
        let full = Geometry.viewRect(CGRect(x: 0, y: 0, width: 1, height: 1), imageSize: image, viewSize: view, mirrored: false)
        XCTAssertEqual(full.height, 600, accuracy: 1e-6)
        XCTAssertEqual(full.midX, 150, accuracy: 1e-6)
        let left = Geometry.viewRect(CGRect(x: 0, y: 0, width: 0.5, height: 1), imageSize: image, viewSize: view, mirrored: true)
        XCTAssertEqual(left.minX, 150, accuracy: 1e-6)
    }

    func testRotationTablesCoverBothLandscapes() {
        XCTAssertEqual(Geometry.frameOrientation(.portrait, frontCamera: false), .right)
        XCTAssertEqual(Geometry.frameOrientation(.landscapeRight, frontCamera: false), .up)
        XCTAssertEqual(Geometry.frameOrientation(.landscapeLeft, frontCamera: false), .down)
        XCTAssertEqual(Geometry.frameOrientation(.landscapeRight, frontCamera: true), .down)
        XCTAssertEqual(Geometry.frameOrientation(.landscapeLeft, frontCamera: true), .up)
        for orientation in InterfaceOrientation.allCases {
            for front in [false, true] {
                // Vision never gets a mirrored orientation: the preview's mirroring is undone once, in viewRect
                let exif = Geometry.frameOrientation(orientation, frontCamera: front)
                XCTAssertTrue([.up, .down, .left, .right].contains(exif))
            }
        }
    }

    func testUprightSize() {
        XCTAssertEqual(Geometry.uprightSize(width: 1280, height: 720, rotationDegrees: 90), CGSize(width: 720, height: 1280))
        XCTAssertEqual(Geometry.uprightSize(width: 1280, height: 720, rotationDegrees: 180), CGSize(width: 1280, height: 720))
    }

    func testLogitsBecomeProbabilities() {
        let p = Probabilities.from([2, 1, 0.1], kind: .auto)
        XCTAssertEqual(p[0], 0.6590012, accuracy: 1e-6)
        XCTAssertEqual(p.reduce(0, +), 1, accuracy: 1e-6)
        XCTAssertEqual(Probabilities.from([0.25, 0.75], kind: .auto), [0.25, 0.75])
    }

    func testF1() {
        let a = [("x", CGRect(x: 0, y: 0, width: 1, height: 1))]
        XCTAssertEqual(Geometry.f1(expected: a, actual: a, iouThreshold: 0.5), 1)
        XCTAssertEqual(Geometry.f1(expected: a, actual: [], iouThreshold: 0.5), 0)
    }
}
