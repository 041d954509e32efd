// Classifier scores as probabilities (Foundation only). Mirrors core/Probabilities.kt of the
// Android app and edgepack/apps/ios_probabilities.py: change them together.
import Foundation

/// What a classifier outputs, from the manifest's model.classifier_output.
public enum ClassifierOutput {
    case logits, probabilities, auto
}

public enum Probabilities {
    /// How far from 1 the sum of real probabilities may be (fp16 models round).
    public static let sumTolerance = 0.01

    /// Vision reports a Core ML classifier's raw outputs as "confidence": for a model that ends in
    /// a linear layer those are logits (any sign, any sum), so they are turned into probabilities.
    public static func from(_ scores: [Float], kind: ClassifierOutput) -> [Float] {
        switch kind {
        case .logits: return softmax(scores)
        case .probabilities: return scores
        case .auto: return looksLikeProbabilities(scores) ? scores : softmax(scores)
        }
    }

    public static func looksLikeProbabilities(_ scores: [Float]) -> Bool {
        if scores.isEmpty { return false }
        var sum = 0.0
        for s in scores {
            if !(s >= 0 && s <= 1) { return false }  // also rejects NaN
            sum += Double(s)
        }
        return abs(sum - 1.0) <= sumTolerance
    }

    /// Numerically stable softmax (the maximum is subtracted before exp).
    public static func softmax(_ logits: [Float]) -> [Float] {
        guard let maximum = logits.max() else { return [] }
        let exps = logits.map { exp(Double($0) - Double(maximum)) }
        let total = exps.reduce(0, +)
        return exps.map { Float($0 / total) }
    }
}
