package {{ package }}.core

/** One detected object; coordinates in model-input pixels until mapped to the view. */
data class Detection(
    val x1: Float,
    val y1: Float,
    val x2: Float,
    val y2: Float,
    val score: Float,
    val label: Int,
) {
    val width: Float get() = x2 - x1
    val height: Float get() = y2 - y1
}

/** How a source image of srcWidth x srcHeight maps into the model input (input = src * scale + pad). */
data class Letterbox(
    val scaleX: Float,
    val scaleY: Float,
    val padX: Float,
    val padY: Float,
    val resizedWidth: Int,
    val resizedHeight: Int,
) {
    fun toSource(d: Detection, srcWidth: Int, srcHeight: Int): Detection = d.copy(
        x1 = ((d.x1 - padX) / scaleX).coerceIn(0f, srcWidth.toFloat()),
        y1 = ((d.y1 - padY) / scaleY).coerceIn(0f, srcHeight.toFloat()),
        x2 = ((d.x2 - padX) / scaleX).coerceIn(0f, srcWidth.toFloat()),
        y2 = ((d.y2 - padY) / scaleY).coerceIn(0f, srcHeight.toFloat()),
    )

    companion object {
        /** keepAspect: fit and pad centered (the YOLO letterbox); otherwise stretch. */
        fun compute(srcWidth: Int, srcHeight: Int, dstWidth: Int, dstHeight: Int, keepAspect: Boolean): Letterbox {
            if (!keepAspect) {
                return Letterbox(dstWidth.toFloat() / srcWidth, dstHeight.toFloat() / srcHeight, 0f, 0f, dstWidth, dstHeight)
            }
            val scale = minOf(dstWidth.toFloat() / srcWidth, dstHeight.toFloat() / srcHeight)
            val w = maxOf(1, Math.round(srcWidth * scale))
            val h = maxOf(1, Math.round(srcHeight * scale))
            return Letterbox(
                w.toFloat() / srcWidth, h.toFloat() / srcHeight,
                ((dstWidth - w) / 2).toFloat(), ((dstHeight - h) / 2).toFloat(), w, h,
            )
        }
    }
}
