package {{ package }}

import android.content.Context
import android.view.View
import android.widget.AdapterView
import android.widget.ArrayAdapter
import android.widget.LinearLayout
import android.widget.SeekBar
import android.widget.Spinner
import android.widget.TextView
import {{ package }}.core.RunSettings
import com.google.android.material.bottomsheet.BottomSheetDialog

/**
 * Backend, accelerator, threads, score and IoU thresholds; handed back when the sheet closes. The
 * activity reloads the model only when the backend, accelerator or thread count changed.
 */
class SettingsSheet(
    context: Context,
    private val current: RunSettings,
    private val onApply: (RunSettings) -> Unit,
) : BottomSheetDialog(context) {
    init {
        val padding = (16 * context.resources.displayMetrics.density).toInt()
        val column = LinearLayout(context).apply { orientation = LinearLayout.VERTICAL; setPadding(padding, padding, padding, padding) }
        val backends = Detectors.available.ifEmpty { ModelConfig.BACKENDS }
        val backendSpinner = Spinner(context).apply {
            adapter = ArrayAdapter(context, android.R.layout.simple_spinner_dropdown_item, backends.map { "${it.name} (${it.precision})" })
            setSelection(backends.indexOfFirst { it.name == current.backend }.coerceAtLeast(0))
        }
        val acceleratorSpinner = Spinner(context)
        fun refreshAccelerators(backendIndex: Int, selected: Int) {
            val names = backends[backendIndex].accelerators
            acceleratorSpinner.adapter = ArrayAdapter(context, android.R.layout.simple_spinner_dropdown_item, names)
            acceleratorSpinner.setSelection(selected.coerceIn(0, names.size - 1))
        }
        refreshAccelerators(backendSpinner.selectedItemPosition, current.accelerator)
        backendSpinner.onItemSelectedListener = object : AdapterView.OnItemSelectedListener {
            override fun onItemSelected(parent: AdapterView<*>?, view: View?, position: Int, id: Long) =
                refreshAccelerators(position, acceleratorSpinner.selectedItemPosition)
            override fun onNothingSelected(parent: AdapterView<*>?) = Unit
        }
        column.addView(label(context, context.getString(R.string.backend)))
        column.addView(backendSpinner)
        column.addView(label(context, context.getString(R.string.accelerator)))
        column.addView(acceleratorSpinner)
        val threads = slider(context, column, context.getString(R.string.threads), 1, 8, current.threads) { it.toString() }
        val score = slider(context, column, context.getString(R.string.score_threshold), 5, 95, Math.round(current.scoreThreshold * 100)) { "%.2f".format(it / 100f) }
        val iou = slider(context, column, context.getString(R.string.iou_threshold), 10, 90, Math.round(current.iouThreshold * 100)) { "%.2f".format(it / 100f) }
        setContentView(column)
        setOnDismissListener {
            onApply(
                current.copy(
                    backend = backends[backendSpinner.selectedItemPosition].name,
                    accelerator = acceleratorSpinner.selectedItemPosition.coerceAtLeast(0),
                    threads = threads.progress + 1,
                    scoreThreshold = (score.progress + 5) / 100f,
                    iouThreshold = (iou.progress + 10) / 100f,
                )
            )
        }
    }

    private fun label(context: Context, text: String) = TextView(context).apply { this.text = text }

    /** A labelled SeekBar from min to max (SeekBar itself starts at 0 before API 26). */
    private fun slider(context: Context, column: LinearLayout, title: String, min: Int, max: Int, value: Int, format: (Int) -> String): SeekBar {
        val caption = TextView(context).apply { text = "$title: ${format(value.coerceIn(min, max))}" }
        val bar = SeekBar(context).apply {
            this.max = max - min
            progress = (value - min).coerceIn(0, max - min)
            setOnSeekBarChangeListener(object : SeekBar.OnSeekBarChangeListener {
                override fun onProgressChanged(seekBar: SeekBar?, p: Int, fromUser: Boolean) { caption.text = "$title: ${format(p + min)}" }
                override fun onStartTrackingTouch(seekBar: SeekBar?) = Unit
                override fun onStopTrackingTouch(seekBar: SeekBar?) = Unit
            })
        }
        column.addView(caption)
        column.addView(bar)
        return bar
    }
}
