"""Integrations of aalearn with tools around the loop (annotation tools, trainers).

Each integration is a submodule imported on its own: ``import aalearn`` imports none of
them. ``labelstudio`` needs nothing beyond the standard library; ``lightning`` and
``huggingface`` import their framework when they are imported.
"""
