"""The grading tool's shared fixture: a grading server on Dataset C, on 127.0.0.1."""

import pytest

from lumbar.label_server import GradingServer


@pytest.fixture
def server(built_dataset, tmp_path, monkeypatch):
    """A running grading server without a password (LUMBAR_LABEL_PASSWORD unset), writing grades.csv."""
    monkeypatch.delenv("LUMBAR_LABEL_PASSWORD", raising=False)
    running = GradingServer(built_dataset, tmp_path / "grades.csv", port=0).start()
    yield running
    running.stop()
