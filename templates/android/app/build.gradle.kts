import org.jetbrains.kotlin.gradle.dsl.JvmTarget

plugins {
    alias(libs.plugins.android.application)
    alias(libs.plugins.kotlin.android)
}

{%- if has_native %}

// NCNN and MNN are prebuilt libraries (README.md, "Native libraries"). Each one is compiled in
// only when it is unpacked under src/main/cpp/ for the ABIs it ships, so the project also builds
// without them; with -Pedgepack.fetchEngines=true (or that line in gradle.properties) CMake
// downloads the pinned, sha256-checked release packages that are not there. CMake gets
// -DEDGEPACK_WITH_NCNN / -DEDGEPACK_WITH_MNN / -DEDGEPACK_FETCH_ENGINES = ON|OFF.
val nativeAbis = listOf("arm64-v8a", "armeabi-v7a", "x86_64")
val fetchEngines = providers.gradleProperty("edgepack.fetchEngines").orNull?.toBoolean() == true
val cppDir = file("src/main/cpp")
{%- if has_ncnn %}
// as CMakeLists.txt looks for it: the ncnn-<version>-android-vulkan.zip release unzipped as is
val ncnnAbis = if (fetchEngines) nativeAbis else nativeAbis.filter { abi ->
    cppDir.listFiles().orEmpty().any { it.isDirectory && it.name.startsWith("ncnn") && it.resolve("$abi/lib/cmake/ncnn/ncnnConfig.cmake").isFile }
}
{%- else %}
val ncnnAbis = emptyList<String>()
{%- endif %}
{%- if has_mnn %}
val mnnAbis = when {
    cppDir.resolve("mnn/include/MNN/Interpreter.hpp").isFile -> nativeAbis.filter { cppDir.resolve("mnn/libs/$it/libMNN.so").isFile }
    fetchEngines -> listOf("arm64-v8a", "armeabi-v7a")  // MNN's release package has no x86_64 build
    else -> emptyList()
}
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
                        "-DEDGEPACK_FETCH_ENGINES=" + (if (fetchEngines) "ON" else "OFF"),
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
    // MNN's GPU backends (libMNN_CL.so, libMNN_Vulkan.so) are linked by CMakeLists.txt as IMPORTED
    // targets, which the Android Gradle plugin packages itself (no jniLibs folder: it would package them twice)
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
