import SwiftUI

struct SettingsView: View {
    @ObservedObject var camera: CameraController
    @Environment(\.dismiss) private var dismiss

    var body: some View {
        NavigationStack {
            Form {
                Section("Compute units") {
                    Picker("Run on", selection: $camera.computeChoice) {
                        ForEach(ComputeChoice.allCases) { Text($0.rawValue).tag($0) }
                    }
                    .pickerStyle(.inline)
                    Text("Changing this reloads the model; the first load on a device compiles it.")
                        .font(.caption).foregroundStyle(.secondary)
                }
                if ModelInfo.isDetector {
                    Section("Thresholds") {
                        Slider(value: $camera.confidence, in: 0.05...0.95) { Text("Confidence") }
                        Text(String(format: "Confidence %.2f", camera.confidence))
                        Slider(value: $camera.iou, in: 0.1...0.9) { Text("IoU") }
                        Text(String(format: "NMS IoU %.2f", camera.iou))
                    }
                }
                Section("Model") {
                    Text("\(ModelInfo.modelName), input \(ModelInfo.inputWidth)x\(ModelInfo.inputHeight), \(ModelInfo.labels.count) labels")
                }
            }
            .navigationTitle("Settings")
            .toolbar { Button("Done") { dismiss() } }
        }
    }
}
