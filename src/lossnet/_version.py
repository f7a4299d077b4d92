"""The package version: one place, read by ``pyproject.toml`` (dynamic version) and by every
module that records it, so none of them imports the package face back."""

__version__ = "0.1.0"
