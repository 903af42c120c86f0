"""The package version, in a module of its own so that modules need not import the package
root (whose ``open_run`` reaches into analysis) to learn it; pyproject.toml says the same."""

__version__ = "0.1.0"
