"""Built-in presets and checks, registered as ordinary plugins."""
