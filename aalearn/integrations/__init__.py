"""Integrations of aalearn with tools around the loop (annotation tools, trainers).

Each integration is a submodule imported on its own (``import aalearn`` imports none
of them), and imports its optional dependency lazily, when it is first used.
"""
