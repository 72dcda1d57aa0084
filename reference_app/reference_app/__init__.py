"""Reference application: the system under test for pytest-memwatch."""

__version__ = "0.1.0"
