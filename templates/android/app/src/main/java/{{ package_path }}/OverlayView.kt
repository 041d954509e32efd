package {{ package }}

import android.content.Context
import android.graphics.Canvas
import android.graphics.Color
import android.graphics.Paint
import android.graphics.RectF
import android.util.AttributeSet
import android.view.View
import {{ package }}.core.Detection

/**
 * Draws boxes over the PreviewView. Boxes arrive in the pixels of the upright (rotation
 * applied) analysis frame; PreviewView shows that frame scaled to FILL_CENTER, mirrored for the
 * front camera, and this view applies the same mapping.
 */
class OverlayView @JvmOverloads constructor(context: Context, attrs: AttributeSet? = null) : View(context, attrs) {
    private val boxPaint = Paint().apply { style = Paint.Style.STROKE; strokeWidth = 6f; isAntiAlias = true }
    private val textPaint = Paint().apply { color = Color.WHITE; textSize = 40f; isAntiAlias = true }
    private val labelBackground = Paint().apply { style = Paint.Style.FILL }
    private var detections: List<Detection> = emptyList()
    private var frameWidth = 1
    private var frameHeight = 1
    private var mirrored = false
    var labels: List<String> = emptyList()

    fun show(dets: List<Detection>, width: Int, height: Int, frontCamera: Boolean) {
        detections = dets
        frameWidth = width
        frameHeight = height
        mirrored = frontCamera
        postInvalidate()
    }

    /** Frame pixels -> view pixels for PreviewView.ScaleType.FILL_CENTER. */
    fun mapToView(d: Detection): RectF {
        val scale = maxOf(width.toFloat() / frameWidth, height.toFloat() / frameHeight)
        val dx = (width - frameWidth * scale) / 2
        val dy = (height - frameHeight * scale) / 2
        var left = d.x1 * scale + dx
        var right = d.x2 * scale + dx
        if (mirrored) {
            val l = width - right
            right = width - left
            left = l
        }
        return RectF(left, d.y1 * scale + dy, right, d.y2 * scale + dy)
    }

    override fun onDraw(canvas: Canvas) {
        super.onDraw(canvas)
        for (d in detections) {
            val color = PALETTE[d.label % PALETTE.size]
            boxPaint.color = color
            labelBackground.color = color
            val rect = mapToView(d)
            canvas.drawRect(rect, boxPaint)
            val text = "${labels.getOrElse(d.label) { "class ${d.label}" }} ${"%.0f".format(d.score * 100)}%"
            val textWidth = textPaint.measureText(text)
            val top = (rect.top - 48f).coerceAtLeast(0f)
            canvas.drawRect(rect.left, top, rect.left + textWidth + 16f, top + 48f, labelBackground)
            canvas.drawText(text, rect.left + 8f, top + 38f, textPaint)
        }
    }

    private companion object {
        val PALETTE = intArrayOf(
            Color.rgb(0, 230, 118), Color.rgb(41, 121, 255), Color.rgb(255, 145, 0),
            Color.rgb(213, 0, 249), Color.rgb(255, 23, 68), Color.rgb(0, 229, 255),
        )
    }
}
