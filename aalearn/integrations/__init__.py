"""Integrations with trainers and annotation tools; import each submodule explicitly."""
