import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "fuzz: a bounded fuzzing run (deselect with -m 'not fuzz')")
