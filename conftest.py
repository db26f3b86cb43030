"""Root pytest configuration: skip the doctests of an integration whose extra is absent.

``aalearn/integrations/lightning.py`` and ``huggingface.py`` import their optional
dependency when imported, so ``--doctest-modules`` could not even collect them.
"""

import importlib.util

_NEEDS = {
    "aalearn/integrations/lightning.py": ("lightning",),
    "aalearn/integrations/huggingface.py": ("transformers", "datasets"),
}

collect_ignore = [
    path
    for path, modules in _NEEDS.items()
    if any(importlib.util.find_spec(m) is None for m in modules)
]
