// Host driver for the generated Android app's pure Kotlin (core/ and ModelConfig.kt), compiled
// with kotlinc by tests/apps/test_android_core.py. PKG is replaced by the app's package.
import java.io.File
import java.nio.ByteBuffer
import java.nio.ByteOrder
import java.util.Locale

fun floatsOf(path: String): FloatArray {
    val bytes = File(path).readBytes()
    val floats = FloatArray(bytes.size / 4)
    ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN).asFloatBuffer().get(floats)
    return floats
}

fun fmt(v: Float) = String.format(Locale.ROOT, "%.7f", v)

fun main(args: Array<String>) {
    when (args[0]) {
        // decode OUTPUT.f32 anchors classes v8|v5 channelsFirst score iou: one detection per line
        "decode" -> {
            val head = if (args[4] == "v5") PKG.core.YoloDecoder.Head.YOLOV5 else PKG.core.YoloDecoder.Head.YOLOV8
            val decoder = PKG.core.YoloDecoder(head, args[3].toInt(), args[2].toInt(), args[5] != "0")
            for (d in decoder.decode(floatsOf(args[1]), args[6].toFloat(), args[7].toFloat())) {
                println(String.format(Locale.ROOT, "%.6f %.6f %.6f %.6f %.7f %d", d.x1, d.y1, d.x2, d.y2, d.score, d.label))
            }
            val lb = PKG.core.Letterbox.compute(640, 480, 320, 320, true)
            System.err.println(String.format(Locale.ROOT, "letterbox %.6f %.6f %.1f %.1f", lb.scaleX, lb.scaleY, lb.padX, lb.padY))
        }
        // buffers: what TfliteDetector / NativeDetector allocate for each bundled backend
        "buffers" -> for (info in PKG.ModelConfig.BACKENDS) {
            val output = PKG.core.TensorBuffers.allocate(info.outputShape)
            val input = PKG.core.TensorBuffers.allocate(info.inputShape)
            val scores = FloatArray(PKG.core.TensorBuffers.elementCount(info.outputShape))
            output.asFloatBuffer().get(scores) // reading the whole tensor back must fit exactly
            var decoded = -1
            if (PKG.ModelConfig.TASK == "detect") {
                val head = if (PKG.ModelConfig.HEAD == "yolov5") PKG.core.YoloDecoder.Head.YOLOV5 else PKG.core.YoloDecoder.Head.YOLOV8
                decoded = PKG.core.YoloDecoder(head, PKG.ModelConfig.NUM_CLASSES, info.numAnchors, info.channelsFirst)
                    .decode(scores, 0.25f, 0.45f).size
            }
            println("${info.name} output=${info.outputShape.joinToString(",")} bytes=${output.capacity()} floats=${scores.size} " +
                "outputSize=${info.outputSize} input=${info.inputShape.joinToString(",")} inputBytes=${input.capacity()} " +
                "order=${output.order()} direct=${output.isDirect} anchors=${info.numAnchors} channelsFirst=${info.channelsFirst} decoded=$decoded")
        }
        // probabilities KIND v...: the classifier path
        "probabilities" -> {
            val scores = args.drop(2).map { it.toFloat() }.toFloatArray()
            println(PKG.core.Probabilities.from(scores, args[1]).joinToString(" ") { fmt(it) })
        }
        // sample RGBA WIDTH HEIGHT ROWSTRIDE PIXELSTRIDE ROTATION DSTW DSTH KEEP BGR NCHW CHANNELS OUT.f32
        "sample" -> {
            val raw = File(args[1]).readBytes()
            val pixels = ByteBuffer.allocateDirect(raw.size).put(raw)
            val frame = PKG.core.RgbaFrame(pixels, args[2].toInt(), args[3].toInt(), args[4].toInt(), args[5].toInt(), args[6].toInt())
            val dstW = args[7].toInt()
            val dstH = args[8].toInt()
            val channels = args[12].toInt()
            val lb = PKG.core.Letterbox.compute(frame.uprightWidth, frame.uprightHeight, dstW, dstH, args[9] == "1")
            val tensor = PKG.core.TensorBuffers.allocate(intArrayOf(1, dstH, dstW, channels))
            PKG.core.FrameSampler.fill(frame, lb, dstW, dstH, channels, floatArrayOf(10f, 20f, 30f), floatArrayOf(2f, 4f, 8f),
                args[10] == "1", args[11] == "1", tensor.asFloatBuffer())
            val out = ByteBuffer.allocate(tensor.capacity()).order(ByteOrder.LITTLE_ENDIAN)
            out.asFloatBuffer().put(tensor.asFloatBuffer())
            File(args[13]).writeBytes(out.array())
            println("upright ${frame.uprightWidth}x${frame.uprightHeight}")
        }
        // rotation: display rotation -> CameraX target rotation and degrees; bad values rejected
        "rotation" -> {
            for (r in 0..3) println("$r ${PKG.core.Rotation.targetRotationForDisplay(r)} ${PKG.core.Rotation.degrees(r)}")
            for (bad in listOf(-1, 4, 90)) {
                val rejected = try { PKG.core.Rotation.targetRotationForDisplay(bad); false } catch (e: IllegalArgumentException) { true }
                println("reject $bad $rejected")
            }
        }
        // viewmap x1 y1 x2 y2 frameW frameH viewW viewH mirrored
        "viewmap" -> {
            val d = PKG.core.Detection(args[1].toFloat(), args[2].toFloat(), args[3].toFloat(), args[4].toFloat(), 1f, 0)
            val r = PKG.core.ViewMapping.fillCenter(d, args[5].toInt(), args[6].toInt(), args[7].toInt(), args[8].toInt(), args[9] == "1")
            println(r.joinToString(" ") { fmt(it) })
        }
        // reload: which settings changes reload the model
        "reload" -> {
            val base = PKG.core.RunSettings("tflite", 0, 4, 0.25f, 0.45f)
            println("first ${base.needsReload(null)}")
            println("same ${base.copy().needsReload(base)}")
            println("thresholds ${base.copy(scoreThreshold = 0.5f, iouThreshold = 0.7f).needsReload(base)}")
            println("backend ${base.copy(backend = "ncnn").needsReload(base)}")
            println("accelerator ${base.copy(accelerator = 1).needsReload(base)}")
            println("threads ${base.copy(threads = 2).needsReload(base)}")
        }
        // literal: the Kotlin string escaping filter, compiled (see EscapedLiteral.kt written by the test)
        "literal" -> print(escapedLiteral())
        else -> error("unknown command ${args[0]}")
    }
}
