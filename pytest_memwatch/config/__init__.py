"""Configuration: settings, markers and the command line, parsed and checked."""
