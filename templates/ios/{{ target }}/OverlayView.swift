// Boxes and labels drawn with a pool of reusable layers (no per-frame allocation).
import UIKit

final class OverlayView: UIView {
    private var boxes: [CAShapeLayer] = []
    private var texts: [CATextLayer] = []

    override init(frame: CGRect) {
        super.init(frame: frame)
        isUserInteractionEnabled = false
    }

    required init?(coder: NSCoder) { fatalError("init(coder:) is not used") }

    /// detections: normalized rects of the upright image of imageSize; mirrored: the preview
    /// under this view shows the image mirrored (front camera), so the boxes are mirrored here, once.
    func show(_ detections: [Detection], imageSize: CGSize, mirrored: Bool) {
        let drawable = detections.filter { $0.rect != .zero }
        while boxes.count < drawable.count { addLayerPair() }
        CATransaction.begin()
        CATransaction.setDisableActions(true)
        for (i, box) in boxes.enumerated() {
            guard i < drawable.count, imageSize.width > 0, imageSize.height > 0 else {
                box.isHidden = true
                texts[i].isHidden = true
                continue
            }
            let d = drawable[i]
            let rect = Geometry.viewRect(d.rect, imageSize: imageSize, viewSize: bounds.size, mirrored: mirrored)
            box.path = UIBezierPath(roundedRect: rect, cornerRadius: 4).cgPath
            box.strokeColor = color(for: d.label).cgColor
            box.isHidden = false
            let text = texts[i]
            text.string = String(format: "%@ %.0f%%", d.label, d.confidence * 100)
            text.backgroundColor = color(for: d.label).withAlphaComponent(0.8).cgColor
            text.frame = CGRect(x: rect.minX, y: max(rect.minY - 20, 0), width: max(rect.width, 90), height: 20)
            text.isHidden = false
        }
        CATransaction.commit()
    }

    private func addLayerPair() {
        let box = CAShapeLayer()
        box.fillColor = UIColor.clear.cgColor
        box.lineWidth = 3
        layer.addSublayer(box)
        boxes.append(box)
        let text = CATextLayer()
        text.fontSize = 13
        text.foregroundColor = UIColor.white.cgColor
        text.contentsScale = traitCollection.displayScale
        layer.addSublayer(text)
        texts.append(text)
    }

    private func color(for label: String) -> UIColor {
        let index = ModelInfo.labels.firstIndex(of: label) ?? 0
        return UIColor(hue: CGFloat(index) / CGFloat(max(ModelInfo.labels.count, 1)), saturation: 0.85, brightness: 0.95, alpha: 1)
    }
}
