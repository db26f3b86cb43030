"""Sphinx configuration of the aalearn documentation.

Build (offline, warnings are errors)::

    pip install -e ".[docs]"
    sphinx-build -W -b html docs docs/_build/html

Intersphinx and the network
---------------------------
A build must pass on a machine with no network, and ``sphinx-build -W`` turns an
unreachable inventory into an error. So intersphinx never *requires* a remote
inventory:

* By default (offline) each of the Python, NumPy and PyTorch inventories is used only
  when a local copy exists in ``docs/_intersphinx/<name>-objects.inv`` (fetch it once
  with e.g. ``curl -o docs/_intersphinx/torch-objects.inv
  https://pytorch.org/docs/stable/objects.inv``); links then point at the online
  documentation. Without local copies those references render as plain code, which is
  silent because ``nitpicky`` is off.
* With ``AALEARN_DOCS_ONLINE=1`` the inventories are fetched from the web, falling back
  to the local copy when there is one.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# Document the working tree, whether or not aalearn is installed.
sys.path.insert(0, str(ROOT))

import aalearn  # noqa: E402

# -- Project -------------------------------------------------------------------------
project = "aalearn"
author = "The aalearn developers"
copyright = "2024, The aalearn developers"
version = aalearn.__version__
release = aalearn.__version__

# -- General ---------------------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "sphinx.ext.mathjax",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
# _fragments/ holds pieces that pages pull in with MyST's include directive.
exclude_patterns = ["_build", "_fragments", "_intersphinx", "Thumbs.db", ".DS_Store"]
nitpicky = False

# -- autodoc and napoleon (NumPy docstrings) -------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = True
napoleon_use_rtype = False
# BaseSampler documents the keyword arguments its subclasses share under this heading.
napoleon_custom_sections = [("Common parameters", "params_style")]

# -- MyST ------------------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "deflist", "dollarmath", "amsmath"]
myst_heading_anchors = 3

# -- intersphinx (see the module docstring) --------------------------------------------
_INVENTORIES = {
    "python": "https://docs.python.org/3",
    "numpy": "https://numpy.org/doc/stable",
    "torch": "https://pytorch.org/docs/stable",
}
_ONLINE = os.environ.get("AALEARN_DOCS_ONLINE") == "1"
intersphinx_mapping: dict[str, tuple[str, object]] = {}
for _name, _url in _INVENTORIES.items():
    _local = HERE / "_intersphinx" / f"{_name}-objects.inv"
    if _ONLINE:
        intersphinx_mapping[_name] = (_url, (None, str(_local)) if _local.exists() else None)
    elif _local.exists():
        intersphinx_mapping[_name] = (_url, str(_local))
intersphinx_timeout = 10

# -- HTML ------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"aalearn {release}"
html_static_path = ["_static"] if (HERE / "_static").is_dir() else []
