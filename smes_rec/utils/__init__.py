"""Small shared utilities (configuration loading)."""
