package {{ package }}

import android.Manifest
import android.content.Context
import android.content.pm.PackageManager
import android.graphics.PixelFormat
import android.hardware.display.DisplayManager
import android.os.Bundle
import android.os.SystemClock
import android.view.Surface
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
import androidx.core.view.ViewCompat
import androidx.core.view.WindowInsetsCompat
import {{ package }}.core.RgbaFrame
import {{ package }}.core.Rotation
import {{ package }}.core.RunSettings
import java.util.concurrent.ExecutorService
import java.util.concurrent.Executors

/**
 * CameraX Preview + ImageAnalysis (RGBA_8888, keep only the latest frame, rotated upright by
 * CameraX). Threads: the UI thread owns the views and the use cases; one analysis thread owns the
 * detector (creates, runs and closes it, which the GPU delegate requires) and the frame
 * statistics. Values crossing between them are immutable and @Volatile.
 */
class MainActivity : AppCompatActivity() {
    private lateinit var previewView: PreviewView
    private lateinit var overlay: OverlayView
    private lateinit var stats: TextView
    private val analysisExecutor: ExecutorService = Executors.newSingleThreadExecutor()

    // UI thread only
    private var preview: Preview? = null
    private var analysis: ImageAnalysis? = null

    // written on the UI thread, read on the analysis thread
    @Volatile private var settings: RunSettings = Detectors.defaultSettings()
    @Volatile private var frontCamera = false
    @Volatile private var closing = false

    // analysis thread only
    private var detector: Detector? = null
    private var loadedSettings: RunSettings? = null
    private var loadNote: String? = null
    private var lastFrameAt = 0L
    private var fps = 0.0

    private val permissionRequest = registerForActivityResult(ActivityResultContracts.RequestPermission()) { granted ->
        if (granted) startCamera() else showRationale(getString(R.string.camera_denied))
    }

    /**
     * The activity handles rotation itself (configChanges), so nothing recreates the use cases:
     * follow the display, which also reports the 180-degree turns no configuration change signals.
     */
    private val displayListener = object : DisplayManager.DisplayListener {
        override fun onDisplayAdded(displayId: Int) = Unit
        override fun onDisplayRemoved(displayId: Int) = Unit
        override fun onDisplayChanged(displayId: Int) {
            val display = previewView.display ?: return
            if (display.displayId == displayId) updateTargetRotation(display.rotation)
        }
    }

    override fun onCreate(savedInstanceState: Bundle?) {
        super.onCreate(savedInstanceState)
        setContentView(R.layout.activity_main)
        previewView = findViewById(R.id.preview)
        previewView.scaleType = PreviewView.ScaleType.FILL_CENTER
        overlay = findViewById(R.id.overlay)
        overlay.labels = assets.open("labels.txt").bufferedReader().readLines().filter { it.isNotBlank() }
        stats = findViewById(R.id.stats)
        // targetSdk 35+ draws edge to edge: keep text and buttons clear of the system bars and cutouts
        ViewCompat.setOnApplyWindowInsetsListener(findViewById(R.id.controls)) { view, insets ->
            val bars = insets.getInsets(WindowInsetsCompat.Type.systemBars() or WindowInsetsCompat.Type.displayCutout())
            view.setPadding(bars.left, bars.top, bars.right, bars.bottom)
            WindowInsetsCompat.CONSUMED
        }
        findViewById<Button>(R.id.open_settings).setOnClickListener {
            SettingsSheet(this, settings) { updated -> applySettings(updated) }.show()
        }
        findViewById<Button>(R.id.switch_camera).setOnClickListener {
            frontCamera = !frontCamera
            startCamera()
        }
        findViewById<Button>(R.id.grant).setOnClickListener { permissionRequest.launch(Manifest.permission.CAMERA) }
        (getSystemService(Context.DISPLAY_SERVICE) as DisplayManager).registerDisplayListener(displayListener, null)
        applySettings(settings, first = true)
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

    /** New settings from the sheet: thresholds apply to the next frame; the model reloads only when needed. */
    private fun applySettings(updated: RunSettings, first: Boolean = false) {
        if (first || updated.needsReload(settings)) stats.text = getString(R.string.loading, updated.backend)
        settings = updated
        analysisExecutor.execute { ensureDetector(updated) } // a no-op unless backend, accelerator or threads changed
    }

    /** Analysis thread: (re)load when the backend, accelerator or threads differ from the loaded model. */
    private fun ensureDetector(wanted: RunSettings) {
        if (closing || !wanted.needsReload(loadedSettings)) return
        detector?.close()
        detector = null
        loadedSettings = wanted
        detector = try {
            Detectors.create(this, wanted).also { loadNote = it.fallbackNote }
        } catch (e: Exception) {
            loadNote = loadFailure(wanted, e)
            null
        } catch (e: LinkageError) { // UnsatisfiedLinkError, ExceptionInInitializerError from a native library
            loadNote = loadFailure(wanted, e)
            null
        }
        if (detector == null) showStats(loadNote ?: "")
    }

    /** Why a model did not load, plus the bundled backends this build left out (their libraries were missing). */
    private fun loadFailure(wanted: RunSettings, e: Throwable): String =
        (listOf("Cannot load ${wanted.backend}: ${e.message}") + Detectors.missing).joinToString("\n")

    private fun startCamera() {
        findViewById<LinearLayout>(R.id.rationale).visibility = View.GONE
        val providerFuture = ProcessCameraProvider.getInstance(this)
        providerFuture.addListener({
            if (isDestroyed) return@addListener
            val provider = providerFuture.get()
            val rotation = previewView.display?.rotation ?: Surface.ROTATION_0
            val ratio = ResolutionSelector.Builder().setAspectRatioStrategy(AspectRatioStrategy.RATIO_4_3_FALLBACK_AUTO_STRATEGY).build()
            val newPreview = Preview.Builder().setResolutionSelector(ratio).setTargetRotation(rotation).build()
            newPreview.setSurfaceProvider(previewView.surfaceProvider)
            val newAnalysis = ImageAnalysis.Builder()
                .setResolutionSelector(ratio)
                .setTargetRotation(rotation)
                .setBackpressureStrategy(ImageAnalysis.STRATEGY_KEEP_ONLY_LATEST)
                .setOutputImageFormat(ImageAnalysis.OUTPUT_IMAGE_FORMAT_RGBA_8888)
                // CameraX turns frames upright while converting to RGBA: one pass, no copy here
                .setOutputImageRotationEnabled(true)
                .build()
            newAnalysis.setAnalyzer(analysisExecutor) { image -> analyze(image) }
            val lens = if (frontCamera) CameraSelector.LENS_FACING_FRONT else CameraSelector.LENS_FACING_BACK
            val selector = CameraSelector.Builder().requireLensFacing(lens).build()
            provider.unbindAll()
            try {
                provider.bindToLifecycle(this, selector, newPreview, newAnalysis)
                preview = newPreview
                analysis = newAnalysis
            } catch (e: IllegalArgumentException) {
                stats.text = getString(if (frontCamera) R.string.no_front_camera else R.string.no_back_camera)
            }
        }, ContextCompat.getMainExecutor(this))
    }

    private fun updateTargetRotation(displayRotation: Int) {
        val target = Rotation.targetRotationForDisplay(displayRotation)
        preview?.targetRotation = target
        analysis?.targetRotation = target
    }

    /** Analysis thread. */
    private fun analyze(image: ImageProxy) {
        image.use {
            if (closing) return
            val current = settings
            ensureDetector(current)
            val active = detector ?: return
            // RGBA_8888 frames have one plane; anything else (a failed conversion) is skipped
            if (image.format != PixelFormat.RGBA_8888 || image.planes.size != 1) return
            val plane = image.planes[0]
            val frame = RgbaFrame(plane.buffer, image.width, image.height, plane.rowStride, plane.pixelStride, image.imageInfo.rotationDegrees)
            val result = try {
                active.detect(frame, current)
            } catch (e: RuntimeException) {
                showStats("${current.backend}: ${e.message}")
                return
            }
            val now = SystemClock.elapsedRealtime()
            if (lastFrameAt != 0L) fps = 0.8 * fps + 0.2 * (1000.0 / maxOf(1L, now - lastFrameAt))
            lastFrameAt = now
            overlay.show(result.detections, frame.uprightWidth, frame.uprightHeight, frontCamera)
            val names = overlay.labels
            val text = buildString {
                append("${current.backend} / ${active.activeAccelerator}\n")
                append("inference ${"%.1f".format(result.inferenceMs)} ms, ${"%.1f".format(fps)} FPS\n")
                if (ModelConfig.TASK == "detect") {
                    append("${result.detections.size} objects")
                } else {
                    append(result.classes.joinToString("\n") { (c, p) -> "${names.getOrElse(c) { "class $c" }} ${"%.1f".format(p * 100)}%" })
                }
                loadNote?.let { append("\n$it") }
            }
            showStats(text)
        }
    }

    private fun showStats(text: String) = runOnUiThread { stats.text = text }

    override fun onDestroy() {
        (getSystemService(Context.DISPLAY_SERVICE) as DisplayManager).unregisterDisplayListener(displayListener)
        closing = true
        analysisExecutor.execute {
            detector?.close()
            detector = null
        }
        analysisExecutor.shutdown()
        super.onDestroy()
    }
}
