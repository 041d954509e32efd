"""Devices: a typed client over the real `adb`, the runner contract, and `edgepack device-test`."""
