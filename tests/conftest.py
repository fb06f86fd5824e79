"""Shared pytest fixtures."""

import pytest


@pytest.fixture
def reactor():
    """The global reactor that pytest-twisted runs tests on."""
    from twisted.internet import reactor

    return reactor
