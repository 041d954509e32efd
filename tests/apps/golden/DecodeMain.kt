// Host driver for the generated app's pure Kotlin decoder (same contract as decode_main.cpp).
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder

fun main(args: Array<String>) {
    val anchors = args[1].toInt()
    val classes = args[2].toInt()
    val head = if (args[3] == "v5") PKG.core.YoloDecoder.Head.YOLOV5 else PKG.core.YoloDecoder.Head.YOLOV8
    val channelsFirst = args[4] != "0"
    val bytes = File(args[0]).readBytes()
    val floats = FloatArray(bytes.size / 4)
    ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(floats)
    val decoder = PKG.core.YoloDecoder(head, classes, anchors, channelsFirst)
    for (d in decoder.decode(floats, args[5].toFloat(), args[6].toFloat())) {
        println(String.format(java.util.Locale.ROOT, "%.6f %.6f %.6f %.6f %.7f %d", d.x1, d.y1, d.x2, d.y2, d.score, d.label))
    }
    val lb = PKG.core.Letterbox.compute(640, 480, 320, 320, true)
    System.err.println(String.format(java.util.Locale.ROOT, "letterbox %.6f %.6f %.1f %.1f", lb.scaleX, lb.scaleY, lb.padX, lb.padY))
}
