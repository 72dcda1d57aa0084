"""The pytest plugin (entry point ``pytest11: memwatch``): hooks translate pytest
objects to plain data and back; the engine (:mod:`pytest_memwatch.engine`)
measures and decides.

This module only gathers the module-level hooks and fixtures of the modules
below, where pytest finds them on the plugin. The modules, in the order a
session meets them:

- ``state``: the session's state (``config.stash``), each measured test's
  (``item.stash``), and the stash keys;
- ``options``: command-line options and ini keys, and ``pytest_configure``;
- ``collection``: which tests are measured and which per-test hooks the
  session needs (registered only then: with nothing measured, memwatch adds
  no call to any test's run);
- ``protocol``: how a measured test runs, with ``runs`` (one run and its
  readings), ``held_reports`` (subtest reports across repetitions) and
  ``attribution`` (explaining a failed verdict), ``progress`` (the lines shown
  meanwhile);
- ``reporting``: the result on the test's reports, the verdict text, status,
  JUnit properties and pytest-html section;
- ``fixture`` and ``soak``: the ``memwatch`` and ``soak`` fixtures, and the
  soak call hook;
- ``ledger``: the session ledger's hooks; ``summary``: the results files and
  the terminal summary at session end; ``xdist``: pytest-xdist support
  (registered only when xdist is loaded);
- ``_pytest_private``: the only module touching pytest's and xdist's private
  API, each use with the versions it was checked on.
"""

from __future__ import annotations

from pytest_memwatch.plugin.collection import pytest_collection_modifyitems
from pytest_memwatch.plugin.fixture import memwatch
from pytest_memwatch.plugin.ledger import pytest_collection_finish, pytest_sessionfinish
from pytest_memwatch.plugin.options import (
    pytest_addoption,
    pytest_configure,
    pytest_load_initial_conftests,
)
from pytest_memwatch.plugin.soak import soak_fixture

__all__ = [
    "memwatch",
    "pytest_addoption",
    "pytest_collection_finish",
    "pytest_collection_modifyitems",
    "pytest_configure",
    "pytest_load_initial_conftests",
    "pytest_sessionfinish",
    "soak_fixture",
]
