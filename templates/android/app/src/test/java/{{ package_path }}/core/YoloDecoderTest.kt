package {{ package }}.core

import org.junit.Assert.assertArrayEquals
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertTrue
import org.junit.Test
import java.nio.ByteBuffer

/** Local JVM tests of the pure Kotlin logic (./gradlew test). */
class YoloDecoderTest {
    @Test
    fun decodesChannelsFirstAndSuppressesOverlaps() {
        // 3 anchors, 2 classes, layout [4 + 2, 3]: two overlapping class-0 boxes and one class-1 box
        val out = floatArrayOf(
            50f, 51f, 80f, // cx
            50f, 50f, 20f, // cy
            20f, 20f, 10f, // w
            10f, 10f, 10f, // h
            0.9f, 0.8f, 0.1f, // class 0
            0.1f, 0.2f, 0.7f, // class 1
        )
        val dets = YoloDecoder(YoloDecoder.Head.YOLOV8, 2, 3).decode(out, 0.25f, 0.45f)
        assertEquals(2, dets.size)
        assertEquals(0, dets[0].label)
        assertEquals(40f, dets[0].x1, 1e-5f)
        assertEquals(1, dets[1].label)
    }

    @Test
    fun letterboxMapsBackToTheSource() {
        val lb = Letterbox.compute(640, 480, 320, 320, keepAspect = true)
        assertEquals(40f, lb.padY, 1e-6f)
        val back = lb.toSource(Detection(0f, 40f, 320f, 280f, 1f, 0), 640, 480)
        assertEquals(640f, back.x2, 1e-3f)
        assertEquals(480f, back.y2, 1e-3f)
    }

    @Test
    fun logitsBecomeProbabilities() {
        val p = Probabilities.from(floatArrayOf(2f, 1f, 0.1f), "auto")
        assertArrayEquals(floatArrayOf(0.6590012f, 0.24243297f, 0.09856589f), p, 1e-6f)
        assertFalse(Probabilities.looksLikeProbabilities(floatArrayOf(1.53f, -0.2f)))
        assertTrue(Probabilities.looksLikeProbabilities(floatArrayOf(0.25f, 0.75f)))
    }

    @Test
    fun outputBufferHoldsTheWholeTensor() {
        assertEquals(4 * 9 * 2100, TensorBuffers.allocate(intArrayOf(1, 9, 2100)).capacity())
    }

    @Test
    fun rotatedFramesAreSampledUpright() {
        // a 2x1 RGBA frame (red, green) that must be turned 90 degrees clockwise: upright it is 1x2, red on top
        val pixels = ByteBuffer.allocate(8).put(byteArrayOf(255.toByte(), 0, 0, 255.toByte(), 0, 255.toByte(), 0, 255.toByte()))
        val frame = RgbaFrame(pixels, 2, 1, rowStride = 8, rotationDegrees = 90)
        assertEquals(1, frame.uprightWidth)
        assertEquals(0, frame.offsetOfUpright(0, 0)) // red, the row's first pixel, ends up on top
        assertEquals(4, frame.offsetOfUpright(0, 1))
    }
}
