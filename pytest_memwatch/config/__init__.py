"""Configuration: what the user asked for, parsed and checked before any test runs.

- :mod:`.settings`: every option, ini key and environment variable, declared
  once in a table, resolved CLI > environment > ini > default; :mod:`.values`
  holds the value types and their parsers.
- :mod:`.markers`: the markers' schemas and parsers.
- :mod:`.cmdline`: test paths rescued from options whose value is optional.
- :mod:`.rules`: resource ignore rules (``KIND:GLOB``).
- :mod:`.tolerances`: comparison tolerances and the noise floors.

It imports only :mod:`pytest_memwatch.base`, never pytest.
"""
