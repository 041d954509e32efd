@rem Gradle wrapper launcher written by edgepack {{ edgepack_version }} (see gradlew): creates
@rem gradle\wrapper\gradle-wrapper.jar with an installed gradle on first use, then starts the
@rem Gradle version named in gradle\wrapper\gradle-wrapper.properties.
@echo off
setlocal
set "APP_HOME=%~dp0"
set "JAR=%APP_HOME%gradle\wrapper\gradle-wrapper.jar"
if exist "%JAR%" goto run
where gradle >nul 2>nul
if errorlevel 1 (
    echo gradlew: gradle\wrapper\gradle-wrapper.jar is missing: open this folder in Android Studio once, or install Gradle and run gradlew again 1>&2
    exit /b 1
)
set "SCRATCH=%TEMP%\edgepack-wrapper-%RANDOM%%RANDOM%"
mkdir "%SCRATCH%"
type nul > "%SCRATCH%\settings.gradle"
pushd "%SCRATCH%"
call gradle --quiet wrapper
popd
if not exist "%SCRATCH%\gradle\wrapper\gradle-wrapper.jar" goto failed
copy /y "%SCRATCH%\gradle\wrapper\gradle-wrapper.jar" "%JAR%" >nul
rmdir /s /q "%SCRATCH%"
echo gradlew: created gradle\wrapper\gradle-wrapper.jar 1>&2
:run
set "JAVACMD=java.exe"
if defined JAVA_HOME set "JAVACMD=%JAVA_HOME%\bin\java.exe"
"%JAVACMD%" -Xmx64m -Xms64m -Dorg.gradle.appname=gradlew -classpath "%JAR%" org.gradle.wrapper.GradleWrapperMain %*
exit /b %ERRORLEVEL%
:failed
rmdir /s /q "%SCRATCH%"
echo gradlew: 'gradle wrapper' failed: open this folder in Android Studio instead 1>&2
exit /b 1
