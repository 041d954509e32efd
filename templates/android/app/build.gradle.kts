import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    alias(libs.plugins.android.application)
    alias(libs.plugins.kotlin.android)
}

{%- if has_native %}

// NCNN and MNN are prebuilt libraries the build cannot download (README.md, "Native libraries").
// Each one is compiled in only when it is in place, for the ABIs it ships, so the project also
// builds without them; CMake gets -DEDGEPACK_WITH_NCNN / -DEDGEPACK_WITH_MNN = ON|OFF.
val nativeAbis = listOf("arm64-v8a", "armeabi-v7a", "x86_64")
{%- if has_ncnn %}
val ncnnAbis = nativeAbis.filter { file("src/main/cpp/ncnn-android-vulkan/$it/lib/cmake/ncnn/ncnnConfig.cmake").isFile }
{%- else %}
val ncnnAbis = emptyList<String>()
{%- endif %}
{%- if has_mnn %}
val mnnAbis = if (file("src/main/cpp/mnn/include/MNN/Interpreter.hpp").isFile) {
    nativeAbis.filter { file("src/main/cpp/mnn/libs/$it/libMNN.so").isFile }
} else emptyList()
{%- else %}
val mnnAbis = emptyList<String>()
{%- endif %}
val buildAbis = when {
    ncnnAbis.isNotEmpty() && mnnAbis.isNotEmpty() -> ncnnAbis.filter { it in mnnAbis }.ifEmpty { ncnnAbis }
    ncnnAbis.isNotEmpty() -> ncnnAbis
    else -> mnnAbis
}
val withNcnn = ncnnAbis.isNotEmpty() && buildAbis.all { it in ncnnAbis }
val withMnn = mnnAbis.isNotEmpty() && buildAbis.all { it in mnnAbis }
val withNative = withNcnn || withMnn
{%- endif %}

android {
    namespace = "{{ package | kotlin_string }}"
    compileSdk = {{ versions.compile_sdk | int }}

    defaultConfig {
        applicationId = "{{ package | kotlin_string }}"
        minSdk = {{ versions.min_sdk | int }}
        targetSdk = {{ versions.target_sdk | int }}
        versionCode = 1
        versionName = "1.0"
        testInstrumentationRunner = "androidx.test.runner.AndroidJUnitRunner"
{%- if has_native %}
        buildConfigField("boolean", "HAS_NCNN", withNcnn.toString())
        buildConfigField("boolean", "HAS_MNN", withMnn.toString())
        if (withNative) {
            ndk { abiFilters += buildAbis }
            externalNativeBuild {
                cmake {
                    arguments += listOf(
                        "-DANDROID_STL=c++_shared",
                        // 16 KB page sizes (required for new apps on Android 15+ devices)
                        "-DANDROID_SUPPORT_FLEXIBLE_PAGE_SIZES=ON",
                        "-DEDGEPACK_WITH_NCNN=" + (if (withNcnn) "ON" else "OFF"),
                        "-DEDGEPACK_WITH_MNN=" + (if (withMnn) "ON" else "OFF"),
                    )
                    cppFlags += listOf("-std=c++17", "-O3")
                }
            }
        }
{%- else %}
        buildConfigField("boolean", "HAS_NCNN", "false")
        buildConfigField("boolean", "HAS_MNN", "false")
{%- endif %}
    }

    buildTypes {
        release {
            isMinifyEnabled = false
            proguardFiles(getDefaultProguardFile("proguard-android-optimize.txt"), "proguard-rules.pro")
        }
    }
    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
    buildFeatures {
        buildConfig = true // HAS_NCNN / HAS_MNN
        viewBinding = false
    }
    // models must stay uncompressed so they can be memory-mapped
    androidResources { noCompress += listOf("tflite", "mnn", "bin", "param") }
    packaging { jniLibs { useLegacyPackaging = false } }
{%- if has_native %}
    if (withNative) {
        ndkVersion = "{{ versions.ndk | kotlin_string }}"
        externalNativeBuild {
            cmake {
                path = file("src/main/cpp/CMakeLists.txt")
                version = "{{ versions.cmake | kotlin_string }}"
            }
        }
    }
    if (withMnn) {
        // MNN's OpenCL and Vulkan backends are separate libraries next to libMNN.so
        // (libMNN_CL.so, libMNN_Vulkan.so), loaded by NativeLibraries at run time: package them too.
        sourceSets.getByName("main").jniLibs.srcDir("src/main/cpp/mnn/libs")
        // libMNN.so (and the C++ runtime, if MNN ships it) also arrive through CMake
        packaging { jniLibs { pickFirsts += listOf("**/libMNN.so", "**/libc++_shared.so") } }
    }
{%- endif %}
}

kotlin {
    compilerOptions { jvmTarget.set(JvmTarget.JVM_17) }
}

dependencies {
    implementation(libs.androidx.core.ktx)
    implementation(libs.androidx.appcompat)
    implementation(libs.material)
    implementation(libs.androidx.constraintlayout)
    implementation(libs.androidx.lifecycle.runtime.ktx)
    implementation(libs.camera.core)
    implementation(libs.camera.camera2)
    implementation(libs.camera.lifecycle)
    implementation(libs.camera.view)
{%- if has_tflite %}
    implementation(libs.litert)
    implementation(libs.litert.gpu)
    implementation(libs.litert.gpu.api)
{%- endif %}
    testImplementation(libs.junit)
    androidTestImplementation(libs.androidx.test.junit)
    androidTestImplementation(libs.androidx.test.runner)
}
