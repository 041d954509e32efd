// Runs edgepack's golden image (the first validation input, letterboxed to the model size)
// through the bundled Core ML model with Vision and compares with the host reference from
// manifest.json (golden_expected.json). Run on a device or the simulator: Product > Test.
import CoreML
import ImageIO
import Vision
import XCTest
@testable import {{ target }}

final class GoldenImageTests: XCTestCase {
    private struct Expected: Decodable {
        struct Box: Decodable {
            let label: String
            let score: Double
            let rect: [Double]
        }
        let task: String
        let label: String?
        let boxes: [Box]?
        let min_f1: Double?
        let iou: Double?
    }

    func testGoldenImageMatchesHostReference() throws {
        let bundle = Bundle(for: GoldenImageTests.self)
        let expectedURL = try XCTUnwrap(bundle.url(forResource: "golden_expected", withExtension: "json"))
        let expected = try JSONDecoder().decode(Expected.self, from: Data(contentsOf: expectedURL))
        let imageURL = try XCTUnwrap(bundle.url(forResource: "golden", withExtension: "png"))
        let source = try XCTUnwrap(CGImageSourceCreateWithURL(imageURL as CFURL, nil))
        let image = try XCTUnwrap(CGImageSourceCreateImageAtIndex(source, 0, nil))

        let detector = Detector()
        try detector.load(computeUnits: .cpuOnly)  // the reference is fp32 on a CPU
        let request = try XCTUnwrap(detector.request)  // performed only by this test
        request.imageCropAndScaleOption = .scaleFill  // the golden image is already model-sized
        let (found, _) = Detector.perform(request, handler: VNImageRequestHandler(cgImage: image, options: [:]))

        if expected.task == "classify" {
            XCTAssertEqual(found.first?.label, expected.label)
            return
        }
        let want = (expected.boxes ?? []).map { ($0.label, CGRect(x: $0.rect[0], y: $0.rect[1], width: $0.rect[2], height: $0.rect[3])) }
        let got = found.map { ($0.label, $0.rect) }
        let f1 = Geometry.f1(expected: want, actual: got, iouThreshold: expected.iou ?? 0.5)
        XCTAssertGreaterThanOrEqual(f1, expected.min_f1 ?? 0.9, "boxes: \(got) expected: \(want)")
    }
}
