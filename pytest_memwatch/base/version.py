"""The plugin's version, written into every results document and samples file."""

__version__ = "0.1.0"
