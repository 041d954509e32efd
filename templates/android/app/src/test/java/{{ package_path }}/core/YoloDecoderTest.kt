package {{ package }}.core

import org.junit.Assert.assertEquals
import org.junit.Test

/** Local JVM tests of the pure Kotlin post-processing (./gradlew test). */
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
}
