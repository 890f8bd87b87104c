"""Shared pytest configuration."""


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: builds or installs things (a wheel, a venv); still runs in CI, "
                   "skip locally with -m 'not slow'")
