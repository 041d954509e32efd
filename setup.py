"""Build configuration that pyproject.toml cannot express: the app templates live at the top of the
repository (`templates/`) and ship inside the wheel as `edgepack/templates/` (package data of a
package mapped onto that folder), so a wheel user can generate apps and build the device runner."""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["edgepack", "edgepack.*"]), "edgepack.templates"],
    package_dir={"edgepack.templates": "templates"},
    package_data={"edgepack": ["builtin/weights/*.pt"], "edgepack.templates": ["**/*", "**/.*"]},
)
