package {{ package }}.core

/**
 * Decodes YOLO-style outputs (boxes cx, cy, w, h in model-input pixels; scores already
 * activated) and applies class-aware NMS. Mirrors edgepack's Python reference decoder
 * (edgepack/validate/detection.py) and the C++ one in cpp/postprocess.cpp.
 */
class YoloDecoder(
    private val head: Head,
    private val numClasses: Int,
    private val numAnchors: Int,
    private val channelsFirst: Boolean = true,
) {
    enum class Head { YOLOV8, YOLOV5 }

    fun decode(output: FloatArray, scoreThreshold: Float, iouThreshold: Float, maxDet: Int = 100): List<Detection> =
        nms(candidates(output, scoreThreshold), iouThreshold, maxDet)

    fun candidates(output: FloatArray, scoreThreshold: Float): List<Detection> {
        val boxChannels = if (head == Head.YOLOV8) 4 else 5
        val channels = boxChannels + numClasses
        require(output.size == channels * numAnchors) { "output has ${output.size} values, expected ${channels * numAnchors}" }
        fun at(anchor: Int, channel: Int): Float =
            if (channelsFirst) output[channel * numAnchors + anchor] else output[anchor * channels + channel]
        val result = ArrayList<Detection>()
        for (a in 0 until numAnchors) {
            val objectness = if (head == Head.YOLOV5) at(a, 4) else 1f
            var best = 0
            var bestScore = -1f
            for (c in 0 until numClasses) {
                val s = at(a, boxChannels + c) * objectness
                if (s > bestScore) { // first maximum wins, as numpy's argmax
                    bestScore = s
                    best = c
                }
            }
            if (bestScore <= scoreThreshold) continue
            val cx = at(a, 0); val cy = at(a, 1); val w = at(a, 2); val h = at(a, 3)
            result.add(Detection(cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2, bestScore, best))
        }
        return result
    }

    companion object {
        fun iou(a: Detection, b: Detection): Float {
            val x1 = maxOf(a.x1, b.x1); val y1 = maxOf(a.y1, b.y1)
            val x2 = minOf(a.x2, b.x2); val y2 = minOf(a.y2, b.y2)
            val inter = maxOf(0f, x2 - x1) * maxOf(0f, y2 - y1)
            val union = a.width * a.height + b.width * b.height - inter
            return inter / maxOf(union, 1e-9f)
        }

        /** Class-aware greedy NMS, highest score first (stable for equal scores). */
        fun nms(dets: List<Detection>, iouThreshold: Float, maxDet: Int = 100): List<Detection> {
            val order = dets.indices.sortedByDescending { dets[it].score } // sortedBy is stable
            val suppressed = BooleanArray(dets.size)
            val kept = ArrayList<Detection>()
            for ((oi, i) in order.withIndex()) {
                if (kept.size >= maxDet) break
                if (suppressed[i]) continue
                kept.add(dets[i])
                for (oj in oi + 1 until order.size) {
                    val j = order[oj]
                    if (!suppressed[j] && dets[j].label == dets[i].label && iou(dets[i], dets[j]) > iouThreshold) {
                        suppressed[j] = true
                    }
                }
            }
            return kept
        }
    }
}

/** Top-k for classifiers: (class index, probability), highest first. */
fun topK(scores: FloatArray, k: Int): List<Pair<Int, Float>> =
    scores.indices.sortedByDescending { scores[it] }.take(k).map { it to scores[it] }
