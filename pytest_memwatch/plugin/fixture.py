"""The ``memwatch`` fixture: measuring inside a test (the handle is
:class:`pytest_memwatch.fixture.MemwatchHandle`, which works without pytest).
"""

from __future__ import annotations

from collections.abc import Generator
from typing import TYPE_CHECKING

import pytest

from pytest_memwatch.plugin.state import FIXTURE_VERDICTS

if TYPE_CHECKING:
    # Imported where used: the handle is not needed by a session that never asks for it.
    from pytest_memwatch.fixture import MemwatchHandle


@pytest.fixture
def memwatch(request: pytest.FixtureRequest) -> Generator[MemwatchHandle]:
    """Measure memory inside a test: baselines, snapshots, growth, peak and leak checks.

    Example::

        def test_parser(memwatch):
            memwatch.baseline()
            parse(big_document)
            memwatch.assert_max_growth("1 MiB")
            assert memwatch.check_leaks(lambda: parse(small_document), runs=8)
    """
    from pytest_memwatch.fixture import MemwatchHandle

    handle = MemwatchHandle(request.node.nodeid, managed=True)
    handle.start()
    yield handle
    try:
        handle.finish()
    finally:
        if handle.verdicts:
            # Read back by reporting.build_result: a test failed through the
            # fixture failed a memory check, and the reports must say so.
            request.node.stash[FIXTURE_VERDICTS] = [v.to_dict() for v in handle.verdicts]
