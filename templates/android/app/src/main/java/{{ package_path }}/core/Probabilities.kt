package {{ package }}.core

import kotlin.math.abs
import kotlin.math.exp

/**
 * Classifier scores as probabilities. Many classifiers end in a linear layer (logits: any sign,
 * any sum); showing those as percentages gives "153 %". The manifest says which kind the model
 * outputs when it knows (model.classifier_output); otherwise the values decide: probabilities are
 * all in [0, 1] and sum to 1. Mirrors Core/Probabilities.swift and edgepack/apps/ios_probabilities.py.
 */
object Probabilities {
    /** How far from 1 the sum of real probabilities may be (fp16 models round). */
    const val SUM_TOLERANCE = 0.01

    /** kind: "logits", "probabilities" or "auto". */
    fun from(scores: FloatArray, kind: String): FloatArray = when (kind) {
        "logits" -> softmax(scores)
        "probabilities" -> scores.copyOf()
        else -> if (looksLikeProbabilities(scores)) scores.copyOf() else softmax(scores)
    }

    fun looksLikeProbabilities(scores: FloatArray): Boolean {
        if (scores.isEmpty()) return false
        var sum = 0.0
        for (s in scores) {
            if (!(s >= 0f && s <= 1f)) return false // also rejects NaN
            sum += s
        }
        return abs(sum - 1.0) <= SUM_TOLERANCE
    }

    /** Numerically stable softmax (the maximum is subtracted before exp). */
    fun softmax(logits: FloatArray): FloatArray {
        if (logits.isEmpty()) return FloatArray(0)
        var max = Double.NEGATIVE_INFINITY
        for (v in logits) if (v > max) max = v.toDouble()
        val exps = DoubleArray(logits.size) { exp(logits[it] - max) }
        val total = exps.sum()
        return FloatArray(logits.size) { (exps[it] / total).toFloat() }
    }
}
