"""Tests for smes_rec.metrics (a package, so test module names cannot clash with other test folders)."""
