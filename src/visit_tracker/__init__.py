"""visit-tracker: a self-hosted visit counter whose counts survive restarts and stay exact."""

__version__ = "0.1.0"
