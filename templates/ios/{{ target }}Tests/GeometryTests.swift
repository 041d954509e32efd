import CoreGraphics
import XCTest
@testable import {{ target }}

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

    func testFrameOrientation() {
        XCTAssertEqual(Geometry.frameOrientation(.portrait, frontCamera: false), .right)
        XCTAssertEqual(Geometry.frameOrientation(.portrait, frontCamera: true), .leftMirrored)
    }

    func testF1() {
        let a = [("x", CGRect(x: 0, y: 0, width: 1, height: 1))]
        XCTAssertEqual(Geometry.f1(expected: a, actual: a, iouThreshold: 0.5), 1)
        XCTAssertEqual(Geometry.f1(expected: a, actual: [], iouThreshold: 0.5), 0)
    }
}
