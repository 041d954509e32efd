import SwiftUI

struct ContentView: View {
    @StateObject private var camera = CameraController()
    @State private var showSettings = false

    var body: some View {
        ZStack(alignment: .top) {
            CameraPreview(session: camera.session, detections: camera.detections, imageSize: camera.imageSize,
                          frontCamera: camera.frontCamera, sessionGeneration: camera.sessionGeneration,
                          onOrientation: { camera.interfaceOrientationChanged($0) })
                .ignoresSafeArea()
            VStack(alignment: .leading, spacing: 4) {
                Text(ModelInfo.displayName).font(.headline)
                Text(String(format: "%.1f ms  |  %.1f FPS  |  %@", camera.inferenceMs, camera.fps, camera.computeChoice.rawValue))
                    .font(.caption.monospacedDigit())
                if !ModelInfo.isDetector {
                    // top-3 classes with their probabilities
                    ForEach(camera.detections) { top in
                        Text(String(format: "%@ %.1f%%", top.label, top.confidence * 100)).font(.title3.bold())
                    }
                }
                Text(camera.status).font(.caption2).foregroundStyle(.secondary)
            }
            .padding(10)
            .background(.ultraThinMaterial, in: RoundedRectangle(cornerRadius: 12))
            .padding()
            .frame(maxWidth: .infinity, alignment: .leading)
        }
        .overlay(alignment: .bottomTrailing) {
            HStack {
                Button { camera.switchCamera() } label: { Image(systemName: "arrow.triangle.2.circlepath.camera") }
                Button { showSettings = true } label: { Image(systemName: "slider.horizontal.3") }
            }
            .font(.title2)
            .padding()
            .background(.ultraThinMaterial, in: Capsule())
            .padding()
        }
        .sheet(isPresented: $showSettings) {
            SettingsView(camera: camera)
        }
        .onAppear { camera.start() }
        .onDisappear { camera.stop() }
    }
}
