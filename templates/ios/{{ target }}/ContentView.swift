import SwiftUI
import UIKit

struct ContentView: View {
    @StateObject private var camera = CameraController()
    @State private var showSettings = false

    var body: some View {
        ZStack(alignment: .top) {
            CameraPreview(session: camera.session, detections: camera.detections, mirrored: camera.frontCamera)
                .ignoresSafeArea()
            VStack(alignment: .leading, spacing: 4) {
                Text(ModelInfo.displayName).font(.headline)
                Text(String(format: "%.1f ms  |  %.1f FPS  |  %@", camera.inferenceMs, camera.fps, camera.computeChoice.rawValue))
                    .font(.caption.monospacedDigit())
                if !ModelInfo.isDetector, let top = camera.detections.first {
                    Text(String(format: "%@ %.0f%%", top.label, top.confidence * 100)).font(.title2.bold())
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
        .onReceive(NotificationCenter.default.publisher(for: UIDevice.orientationDidChangeNotification)) { _ in
            camera.orientationChanged(UIDevice.current.orientation)
        }
    }
}
