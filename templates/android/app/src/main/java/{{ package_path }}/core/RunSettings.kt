package {{ package }}.core

/** What the user can change at run time from the settings sheet; immutable, shared between threads. */
data class RunSettings(
    val backend: String,
    val accelerator: Int = 0,
    val threads: Int = 4,
    val scoreThreshold: Float,
    val iouThreshold: Float,
) {
    /** Only these need a new interpreter or engine; thresholds apply to the next frame. */
    fun needsReload(loaded: RunSettings?): Boolean =
        loaded == null || backend != loaded.backend || accelerator != loaded.accelerator || threads != loaded.threads
}
