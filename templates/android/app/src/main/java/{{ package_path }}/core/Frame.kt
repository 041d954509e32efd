package {{ package }}.core

import java.nio.ByteBuffer
import java.nio.FloatBuffer

/**
 * Display rotation -> CameraX target rotation. The values are android.view.Surface.ROTATION_0..270
 * (0..3), kept as plain ints so this file stays free of Android imports and testable on a JVM.
 * With the activity rotating with the device, Preview and ImageAnalysis take the display's
 * rotation as their target rotation (CameraX "use case rotations" guide), so analysis frames are
 * upright in the same orientation as the screen the boxes are drawn on.
 */
object Rotation {
    const val ROTATION_0 = 0
    const val ROTATION_90 = 1
    const val ROTATION_180 = 2
    const val ROTATION_270 = 3

    fun targetRotationForDisplay(displayRotation: Int): Int {
        require(displayRotation in ROTATION_0..ROTATION_270) { "not a Surface rotation: $displayRotation" }
        return displayRotation
    }

    /** Degrees counter-clockwise of the display from its natural orientation. */
    fun degrees(surfaceRotation: Int): Int = targetRotationForDisplay(surfaceRotation) * 90
}

/**
 * One RGBA_8888 camera frame as ImageAnalysis delivers it: the plane's buffer with its row and
 * pixel strides, and how far it must be turned clockwise to be upright (0 when ImageAnalysis
 * rotates the output itself).
 */
class RgbaFrame(
    val pixels: ByteBuffer,
    val width: Int,
    val height: Int,
    val rowStride: Int,
    val pixelStride: Int = 4,
    val rotationDegrees: Int = 0,
) {
    init {
        require(width > 0 && height > 0) { "empty frame" }
        require(pixelStride >= 4 && rowStride >= width * pixelStride) { "not an RGBA plane: rowStride $rowStride, pixelStride $pixelStride" }
        require(rotationDegrees == 0 || rotationDegrees == 90 || rotationDegrees == 180 || rotationDegrees == 270) { "rotation $rotationDegrees" }
        require(pixels.capacity() >= (height - 1) * rowStride + width * pixelStride) { "buffer too small for ${width}x$height" }
    }

    val uprightWidth: Int get() = if (rotationDegrees % 180 == 0) width else height
    val uprightHeight: Int get() = if (rotationDegrees % 180 == 0) height else width

    /** Byte offset of the pixel at (x, y) of the upright image. */
    fun offsetOfUpright(x: Int, y: Int): Int {
        val bx: Int
        val by: Int
        when (rotationDegrees) {
            90 -> { bx = y; by = height - 1 - x }
            180 -> { bx = width - 1 - x; by = height - 1 - y }
            270 -> { bx = width - 1 - y; by = x }
            else -> { bx = x; by = y }
        }
        return by * rowStride + bx * pixelStride
    }
}

/**
 * Letterbox (pad 114) or stretch straight from the RGBA plane into a preallocated float tensor:
 * bilinear sampling at pixel centres (as cpp/postprocess.cpp), the frame's rotation applied while
 * sampling, the model's colour order and mean/std. No bitmaps, no per-pixel allocation.
 */
object FrameSampler {
    private const val PAD = 114f

    fun fill(
        frame: RgbaFrame, lb: Letterbox, dstWidth: Int, dstHeight: Int, channels: Int,
        mean: FloatArray, std: FloatArray, bgr: Boolean, nchw: Boolean, out: FloatBuffer,
    ) {
        require(channels == 1 || channels == 3) { "channels $channels" }
        require(out.capacity() >= dstWidth * dstHeight * channels) { "tensor buffer too small" }
        val src = frame.pixels
        val w = frame.uprightWidth
        val h = frame.uprightHeight
        val plane = dstWidth * dstHeight
        val rgb = FloatArray(3)
        for (y in 0 until dstHeight) {
            for (x in 0 until dstWidth) {
                val rx = x - lb.padX
                val ry = y - lb.padY
                if (rx >= 0f && ry >= 0f && rx < lb.resizedWidth && ry < lb.resizedHeight) {
                    val sx = ((rx + 0.5f) / lb.scaleX - 0.5f).coerceIn(0f, w - 1f)
                    val sy = ((ry + 0.5f) / lb.scaleY - 0.5f).coerceIn(0f, h - 1f)
                    val x0 = sx.toInt()
                    val y0 = sy.toInt()
                    val x1 = minOf(x0 + 1, w - 1)
                    val y1 = minOf(y0 + 1, h - 1)
                    val fx = sx - x0
                    val fy = sy - y0
                    val o00 = frame.offsetOfUpright(x0, y0)
                    val o01 = frame.offsetOfUpright(x1, y0)
                    val o10 = frame.offsetOfUpright(x0, y1)
                    val o11 = frame.offsetOfUpright(x1, y1)
                    for (c in 0 until 3) {
                        val p00 = (src.get(o00 + c).toInt() and 0xFF).toFloat()
                        val p01 = (src.get(o01 + c).toInt() and 0xFF).toFloat()
                        val p10 = (src.get(o10 + c).toInt() and 0xFF).toFloat()
                        val p11 = (src.get(o11 + c).toInt() and 0xFF).toFloat()
                        rgb[c] = (p00 * (1 - fx) + p01 * fx) * (1 - fy) + (p10 * (1 - fx) + p11 * fx) * fy
                    }
                } else {
                    rgb[0] = PAD; rgb[1] = PAD; rgb[2] = PAD
                }
                if (channels == 1) {
                    var sum = 0f
                    for (c in 0 until 3) sum += (rgb[if (bgr) 2 - c else c] - mean[c]) / std[c]
                    out.put(y * dstWidth + x, sum / 3f)
                    continue
                }
                for (c in 0 until 3) {
                    val v = (rgb[if (bgr) 2 - c else c] - mean[c]) / std[c]
                    out.put(if (nchw) c * plane + y * dstWidth + x else (y * dstWidth + x) * 3 + c, v)
                }
            }
        }
    }
}

/** Upright-frame pixels -> view pixels for PreviewView.ScaleType.FILL_CENTER, mirrored for the front camera. */
object ViewMapping {
    /** [left, top, right, bottom] in view pixels. */
    fun fillCenter(d: Detection, frameWidth: Int, frameHeight: Int, viewWidth: Int, viewHeight: Int, mirrored: Boolean): FloatArray {
        val scale = maxOf(viewWidth.toFloat() / frameWidth, viewHeight.toFloat() / frameHeight)
        val dx = (viewWidth - frameWidth * scale) / 2
        val dy = (viewHeight - frameHeight * scale) / 2
        var left = d.x1 * scale + dx
        var right = d.x2 * scale + dx
        if (mirrored) { // the preview shows the front camera mirrored; analysis frames are not
            val l = viewWidth - right
            right = viewWidth - left
            left = l
        }
        return floatArrayOf(left, d.y1 * scale + dy, right, d.y2 * scale + dy)
    }
}
