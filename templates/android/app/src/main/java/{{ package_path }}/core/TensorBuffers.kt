package {{ package }}.core

import java.nio.ByteBuffer
import java.nio.ByteOrder

/**
 * Direct, native-order float buffers sized from the tensor shapes in the manifest. LiteRT copies
 * a Buffer of at least the tensor's byte size without checking Java array shapes; an array
 * output such as Array(1) { FloatArray(n) } must match the tensor's rank exactly and throws on
 * the first frame when it does not.
 */
object TensorBuffers {
    const val FLOAT_BYTES = 4

    fun elementCount(shape: IntArray): Int {
        require(shape.isNotEmpty() && shape.all { it > 0 }) { "tensor shape ${shape.contentToString()} has no elements" }
        var count = 1L
        for (d in shape) {
            count *= d
            require(count <= Int.MAX_VALUE / FLOAT_BYTES) { "tensor shape ${shape.contentToString()} is too large" }
        }
        return count.toInt()
    }

    fun byteSize(shape: IntArray): Int = elementCount(shape) * FLOAT_BYTES

    /** A zeroed direct buffer of exactly the tensor's byte size, in the platform's byte order. */
    fun allocate(shape: IntArray): ByteBuffer = ByteBuffer.allocateDirect(byteSize(shape)).order(ByteOrder.nativeOrder())

    /** Fails with both shapes in the message when the model file disagrees with the manifest. */
    fun requireShape(what: String, actual: IntArray, expected: IntArray) {
        require(actual.contentEquals(expected)) {
            "$what shape ${actual.contentToString()} differs from the manifest's ${expected.contentToString()}: rebuild the app"
        }
    }
}
