"""Shared pytest configuration."""

pytest_plugins = ["pgserver"]  # postgres_dsn, postgres_url: a real local PostgreSQL server


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "slow: builds or installs things (a wheel, a venv); still runs in CI, "
                   "skip locally with -m 'not slow'")
