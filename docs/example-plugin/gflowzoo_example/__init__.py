"""gflowzoo-example: an example gflowzoo plugin (see docs/plugin-authoring.md)."""

__version__ = "0.1.0"
