package {{ package }}

import android.Manifest
import android.content.pm.PackageManager
import android.graphics.Bitmap
import android.graphics.Matrix
import android.os.Bundle
import android.os.SystemClock
import android.view.View
import android.widget.Button
import android.widget.LinearLayout
import android.widget.TextView
import androidx.activity.result.contract.ActivityResultContracts
import androidx.appcompat.app.AppCompatActivity
import androidx.camera.core.CameraSelector
import androidx.camera.core.ImageAnalysis
import androidx.camera.core.ImageProxy
import androidx.camera.core.Preview
import androidx.camera.core.resolutionselector.AspectRatioStrategy
import androidx.camera.core.resolutionselector.ResolutionSelector
import androidx.camera.lifecycle.ProcessCameraProvider
import androidx.camera.view.PreviewView
import androidx.core.content.ContextCompat
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

/**
 * CameraX Preview + ImageAnalysis (RGBA_8888, keep only the latest frame). Each frame is made
 * upright (rotation applied, row padding handled by ImageProxy.toBitmap), run through the
 * chosen backend, and the boxes are drawn by OverlayView.
 */
class MainActivity : AppCompatActivity() {
    private lateinit var previewView: PreviewView
    private lateinit var overlay: OverlayView
    private lateinit var stats: TextView
    private val analysisExecutor: ExecutorService = Executors.newSingleThreadExecutor()
    private val lock = Any()
    private var detector: Detector? = null
    private var settings = RunSettings(backend = ModelConfig.BACKENDS.first().name)
    private var lensFacing = CameraSelector.LENS_FACING_BACK
    private var lastFrameAt = 0L
    private var fps = 0.0
    private var loadNote: String? = null

    private val permissionRequest = registerForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
        if (granted) startCamera() else showRationale(getString(R.string.camera_denied))
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        previewView = findViewById(R.id.preview)
        previewView.scaleType = PreviewView.ScaleType.FILL_CENTER
        overlay = findViewById(R.id.overlay)
        overlay.labels = assets.open("labels.txt").bufferedReader().readLines().filter { it.isNotBlank() }
        stats = findViewById(R.id.stats)
        findViewById<Button>(R.id.open_settings).setOnClickListener {
            SettingsSheet(this, settings) { updated -> applySettings(updated) }.show()
        }
        findViewById<Button>(R.id.switch_camera).setOnClickListener {
            lensFacing = if (lensFacing == CameraSelector.LENS_FACING_BACK) CameraSelector.LENS_FACING_FRONT else CameraSelector.LENS_FACING_BACK
            startCamera()
        }
        findViewById<Button>(R.id.grant).setOnClickListener { permissionRequest.launch(Manifest.permission.CAMERA) }
        applySettings(settings)
        when {
            ContextCompat.checkSelfPermission(this, Manifest.permission.CAMERA) == PackageManager.PERMISSION_GRANTED -> startCamera()
            shouldShowRequestPermissionRationale(Manifest.permission.CAMERA) -> showRationale(getString(R.string.camera_rationale))
            else -> permissionRequest.launch(Manifest.permission.CAMERA)
        }
    }

    private fun showRationale(text: String) {
        findViewById<TextView>(R.id.rationale_text).text = text
        findViewById<LinearLayout>(R.id.rationale).visibility = View.VISIBLE
    }

    /** (Re)load the model off the main thread; the first load can take a moment on some backends. */
    private fun applySettings(updated: RunSettings) {
        settings = updated
        stats.text = "Loading ${updated.backend} model..."
        analysisExecutor.execute {
            synchronized(lock) {
                detector?.close()
                detector = try {
                    Detectors.create(this, updated).also { loadNote = it.fallbackNote }
                } catch (e: Exception) {
                    loadNote = "Cannot load ${updated.backend}: ${e.message}"
                    null
                }
            }
        }
    }

    private fun startCamera() {
        findViewById<LinearLayout>(R.id.rationale).visibility = View.GONE
        val providerFuture = ProcessCameraProvider.getInstance(this)
        providerFuture.addListener({
            val provider = providerFuture.get()
            val ratio = ResolutionSelector.Builder().setAspectRatioStrategy(AspectRatioStrategy.RATIO_4_3_FALLBACK_AUTO_STRATEGY).build()
            val preview = Preview.Builder().setResolutionSelector(ratio).build().also { it.surfaceProvider = previewView.surfaceProvider }
            val analysis = ImageAnalysis.Builder()
                .setResolutionSelector(ratio)
                .setBackpressureStrategy(ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST)
                .setOutputImageFormat(ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888)
                .build()
            analysis.setAnalyzer(analysisExecutor) { image -> analyze(image) }
            val selector = CameraSelector.Builder().requireLensFacing(lensFacing).build()
            provider.unbindAll()
            try {
                provider.bindToLifecycle(this, selector, preview, analysis)
            } catch (e: IllegalArgumentException) {
                stats.text = "No ${if (lensFacing == CameraSelector.LENS_FACING_FRONT) "front" else "back"} camera on this device"
            }
        }, ContextCompat.getMainExecutor(this))
    }

    private fun analyze(image: ImageProxy) {
        image.use {
            val upright = uprightBitmap(it)
            val result = synchronized(lock) { detector?.detect(upright, settings) } ?: return
            val now = SystemClock.elapsedRealtime()
            if (lastFrameAt != 0L) fps = 0.8 * fps + 0.2 * (1000.0 / maxOf(1L, now - lastFrameAt))
            lastFrameAt = now
            val front = lensFacing == CameraSelector.LENS_FACING_FRONT
            overlay.show(result.detections, upright.width, upright.height, front)
            val top = result.classes.joinToString("\n") { (c, p) -> "${overlay.labels.getOrElse(c) { "class $c" }} ${"%.1f".format(p * 100)}%" }
            val accelerator = detector?.activeAccelerator ?: "-"
            runOnUiThread {
                stats.text = buildString {
                    append("${settings.backend} / $accelerator\n")
                    append("inference ${"%.1f".format(result.inferenceMs)} ms, ${"%.1f".format(fps)} FPS\n")
                    if (ModelConfig.TASK == "detect") append("${result.detections.size} objects") else append(top)
                    loadNote?.let { note -> append("\n$note") }
                }
            }
        }
    }

    /** RGBA frame -> upright Bitmap (toBitmap copes with row padding; rotation from the camera). */
    private fun uprightBitmap(image: ImageProxy): Bitmap {
        val bitmap = image.toBitmap()
        val rotation = image.imageInfo.rotationDegrees
        if (rotation == 0) return bitmap
        val matrix = Matrix().apply { postRotate(rotation.toFloat()) }
        return Bitmap.createBitmap(bitmap, 0, 0, bitmap.width, bitmap.height, matrix, true)
    }

    override fun onDestroy() {
        super.onDestroy()
        analysisExecutor.execute { synchronized(lock) { detector?.close(); detector = null } }
        analysisExecutor.shutdown()
    }
}
