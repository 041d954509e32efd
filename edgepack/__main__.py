from edgepack.cli import entry_point

entry_point()
