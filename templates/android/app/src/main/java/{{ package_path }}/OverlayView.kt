package {{ package }}

import android.content.Context
import android.graphics.Canvas
import android.graphics.Color
import android.graphics.Paint
import android.util.AttributeSet
import android.view.View
import {{ package }}.core.Detection
import {{ package }}.core.ViewMapping

/**
 * Draws boxes over the PreviewView. Boxes arrive from the analysis thread in the pixels of the
 * upright analysis frame; PreviewView shows that frame scaled to FILL_CENTER and mirrored for the
 * front camera, and core/ViewMapping applies the same mapping (the mirroring happens only there).
 */
class OverlayView @JvmOverloads constructor(context: Context, attrs: AttributeSet? = null) : View(context, attrs) {
    /** One frame's boxes; replaced as a whole, so the UI thread never sees half an update. */
    private class Snapshot(val detections: List<Detection>, val frameWidth: Int, val frameHeight: Int, val mirrored: Boolean)

    private val boxPaint = Paint().apply { style = Paint.Style.STROKE; strokeWidth = 6f; isAntiAlias = true }
    private val textPaint = Paint().apply { color = Color.WHITE; textSize = 40f; isAntiAlias = true }
    private val labelBackground = Paint().apply { style = Paint.Style.FILL }
    @Volatile private var snapshot = Snapshot(emptyList(), 1, 1, false)
    @Volatile var labels: List<String> = emptyList()

    /** Called from the analysis thread. */
    fun show(dets: List<Detection>, frameWidth: Int, frameHeight: Int, frontCamera: Boolean) {
        snapshot = Snapshot(dets.toList(), frameWidth, frameHeight, frontCamera)
        postInvalidate()
    }

    override fun onDraw(canvas: Canvas) {
        super.onDraw(canvas)
        val s = snapshot
        val names = labels
        for (d in s.detections) {
            val color = PALETTE[d.label % PALETTE.size]
            boxPaint.color = color
            labelBackground.color = color
            val r = ViewMapping.fillCenter(d, s.frameWidth, s.frameHeight, width, height, s.mirrored)
            canvas.drawRect(r[0], r[1], r[2], r[3], boxPaint)
            val text = "${names.getOrElse(d.label) { "class ${d.label}" }} ${"%.0f".format(d.score * 100)}%"
            val textWidth = textPaint.measureText(text)
            val top = (r[1] - 48f).coerceAtLeast(0f)
            canvas.drawRect(r[0], top, r[0] + textWidth + 16f, top + 48f, labelBackground)
            canvas.drawText(text, r[0] + 8f, top + 38f, textPaint)
        }
    }

    private companion object {
        val PALETTE = intArrayOf(
            Color.rgb(0, 230, 118), Color.rgb(41, 121, 255), Color.rgb(255, 145, 0),
            Color.rgb(213, 0, 249), Color.rgb(255, 23, 68), Color.rgb(0, 229, 255),
        )
    }
}
