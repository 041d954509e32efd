package {{ package }}

import androidx.test.ext.junit.runners.AndroidJUnit4
import androidx.test.platform.app.InstrumentationRegistry
import {{ package }}.core.RgbaFrame
import org.json.JSONArray
import org.junit.Assert.assertTrue
import org.junit.Test
import org.junit.runner.RunWith
import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * Runs edgepack's golden input (the first validation image, already preprocessed) through every
 * backend built into the app, on the device, exactly as camera frames go (an RGBA plane through
 * Detector.detect), and compares with the host reference in golden_expected.json
 * (./gradlew connectedAndroidTest).
 */
@RunWith(AndroidJUnit4::class)
class GoldenImageTest {
    private val testContext = InstrumentationRegistry.getInstrumentation().context
    private val appContext = InstrumentationRegistry.getInstrumentation().targetContext

    /** The golden tensor turned back into an RGBA frame the size of the model input (no letterbox needed). */
    private fun goldenFrame(): RgbaFrame {
        val bytes = testContext.assets.open("golden_input.f32").readBytes()
        val floats = FloatArray(bytes.size / 4)
        ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(floats)
        val w = ModelConfig.INPUT_WIDTH
        val h = ModelConfig.INPUT_HEIGHT
        val plane = w * h
        val rgba = ByteBuffer.allocateDirect(plane * 4)
        for (i in 0 until plane) {
            for (ch in 0 until 3) {
                // model channel c holds image channel (bgr ? 2 - c : c); pixel values were integers
                val c = if (ModelConfig.INPUT_CHANNELS == 1) 0 else if (ModelConfig.BGR) 2 - ch else ch
                val v = floats[c * plane + i] * ModelConfig.STD[c] + ModelConfig.MEAN[c]
                rgba.put(i * 4 + ch, Math.round(v).coerceIn(0, 255).toByte())
            }
            rgba.put(i * 4 + 3, 0xFF.toByte())
        }
        return RgbaFrame(rgba, w, h, rowStride = w * 4)
    }

    @Test
    fun everyBackendMatchesTheHostReference() {
        val expected = JSONArray(testContext.assets.open("golden_expected.json").bufferedReader().readText())
        val frame = goldenFrame()
        assertTrue("no backend is built into this app", Detectors.available.isNotEmpty())
        for (backend in Detectors.available) {
            val settings = Detectors.defaultSettings().copy(backend = backend.name)
            Detectors.create(appContext, settings).use { detector ->
                val result = detector.detect(frame, settings)
                if (ModelConfig.TASK == "classify") {
                    val (top, probability) = result.classes.first()
                    assertTrue("${backend.name}: top-1 $top, host reference ${expected.getInt(0)}", top == expected.getInt(0))
                    assertTrue("${backend.name}: probability $probability", probability in 0f..1f)
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
