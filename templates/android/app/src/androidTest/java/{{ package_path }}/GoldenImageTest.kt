package {{ package }}

import android.graphics.Bitmap
import androidx.test.ext.junit.runners.AndroidJUnit4
import androidx.test.platform.app.InstrumentationRegistry
import org.json.JSONArray
import org.junit.Assert.assertTrue
import org.junit.Test
import org.junit.runner.RunWith
import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * Runs edgepack's golden input (the first validation image, already preprocessed) through every
 * bundled backend on the device and compares with the host reference detections in
 * golden_expected.json (./gradlew connectedAndroidTest).
 */
@RunWith(AndroidJUnit4::class)
class GoldenImageTest {
    private val testContext = InstrumentationRegistry.getInstrumentation().context
    private val appContext = InstrumentationRegistry.getInstrumentation().targetContext

    /** The golden tensor turned back into an image the size of the model input (no letterbox needed). */
    private fun goldenBitmap(): Bitmap {
        val bytes = testContext.assets.open("golden_input.f32").readBytes()
        val floats = FloatArray(bytes.size / 4)
        ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(floats)
        val w = ModelConfig.INPUT_WIDTH
        val h = ModelConfig.INPUT_HEIGHT
        val plane = w * h
        val pixels = IntArray(plane) { i ->
            val c = IntArray(3) { ch ->
                val src = if (ModelConfig.BGR) 2 - ch else ch
                (floats[src * plane + i] * ModelConfig.STD[src] + ModelConfig.MEAN[src]).toInt().coerceIn(0, 255)
            }
            (0xFF shl 24) or (c[0] shl 16) or (c[1] shl 8) or c[2]
        }
        return Bitmap.createBitmap(pixels, w, h, Bitmap.Config.ARGB_8888)
    }

    @Test
    fun everyBackendMatchesTheHostReference() {
        val expected = JSONArray(testContext.assets.open("golden_expected.json").bufferedReader().readText())
        val frame = goldenBitmap()
        for (backend in ModelConfig.BACKENDS) {
            val settings = RunSettings(backend = backend.name)
            Detectors.create(appContext, settings).use { detector ->
                val result = detector.detect(frame, settings)
                if (ModelConfig.TASK == "classify") {
                    val top = result.classes.first().first
                    assertTrue("${backend.name}: top-1 $top, host reference ${expected.getInt(0)}", top == expected.getInt(0))
                    return@use
                }
                var matched = 0
                for (i in 0 until expected.length()) {
                    val e = expected.getJSONObject(i)
                    val box = e.getJSONArray("box")
                    matched += result.detections.count { d ->
                        d.label == e.getInt("class") && iou(d.x1, d.y1, d.x2, d.y2, box) >= 0.5f
                    }.coerceAtMost(1)
                }
                val recall = if (expected.length() == 0) 1f else matched.toFloat() / expected.length()
                assertTrue("${backend.name}: matched $matched of ${expected.length()} reference boxes", recall >= 0.9f)
            }
        }
    }

    private fun iou(x1: Float, y1: Float, x2: Float, y2: Float, b: JSONArray): Float {
        val bx1 = b.getDouble(0).toFloat(); val by1 = b.getDouble(1).toFloat()
        val bx2 = b.getDouble(2).toFloat(); val by2 = b.getDouble(3).toFloat()
        val iw = maxOf(0f, minOf(x2, bx2) - maxOf(x1, bx1)); val ih = maxOf(0f, minOf(y2, by2) - maxOf(y1, by1))
        val inter = iw * ih
        return inter / maxOf((x2 - x1) * (y2 - y1) + (bx2 - bx1) * (by2 - by1) - inter, 1e-9f)
    }
}
