"""Fixtures of the sliced plugin's tests: a registry with the plugin loaded and a tiny method builder."""

from gflowzoo.testing import plugin_fixtures

registry, build = plugin_fixtures("sliced")
