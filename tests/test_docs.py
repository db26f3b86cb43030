"""The documentation covers the public API, its examples exist, and it builds without warnings."""

from __future__ import annotations

import importlib.util
import inspect
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import aalearn
import aalearn.inference

DOCS = Path(__file__).resolve().parent.parent / "docs"
API = (DOCS / "api.rst").read_text()
PUBLIC = [name for name in aalearn.__all__ if name != "__version__"]
# A NumPy-style "Examples" section (napoleon also reads "Example").
EXAMPLES_SECTION = re.compile(r"^Examples?\n-{3,}\n", re.MULTILINE)


def documented(name: str) -> bool:
    """``name`` is the target of an autodoc directive or listed in a ``:members:`` option."""
    directive = rf"^\.\. auto\w+:: (aalearn\.)?{re.escape(name)}(\(.*\))?\s*$"
    members = rf"^\s+:members:.*\b{re.escape(name)}\b"
    return bool(re.search(directive, API, re.MULTILINE) or re.search(members, API, re.MULTILINE))


def automodule_with_all_members(module: str) -> bool:
    """``.. automodule:: module`` with a bare ``:members:`` (every name in its ``__all__``)."""
    pattern = rf"^\.\. automodule:: {re.escape(module)}\s*\n((?:[ \t]+:.*\n)*)"
    match = re.search(pattern, API, re.MULTILINE)
    return bool(match and re.search(r"^\s+:members:\s*$", match.group(1), re.MULTILINE))


@pytest.mark.parametrize("name", PUBLIC)
def test_public_name_in_api_reference(name: str) -> None:
    obj = getattr(aalearn, name)
    if isinstance(obj, types.ModuleType):
        assert automodule_with_all_members(obj.__name__), f"api.rst lacks {obj.__name__}"
    else:
        assert documented(name), f"aalearn.{name} is not in docs/api.rst"


@pytest.mark.parametrize("name", sorted(set(aalearn.inference.__all__) - set(aalearn.__all__)))
def test_inference_helpers_in_api_reference(name: str) -> None:
    assert documented(name), f"aalearn.inference.{name} is not in docs/api.rst"


def _public_objects() -> list[tuple[str, object]]:
    out: list[tuple[str, object]] = []
    for name in PUBLIC:
        obj = getattr(aalearn, name)
        if isinstance(obj, types.ModuleType):  # a subpackage: check its members instead
            out += [(f"{name}.{member}", getattr(obj, member)) for member in obj.__all__]
        else:
            out.append((name, obj))
    return out


@pytest.mark.parametrize(("name", "obj"), _public_objects(), ids=lambda v: str(v)[:40])
def test_public_name_has_docstring_with_examples(name: str, obj: object) -> None:
    doc = inspect.getdoc(obj) or ""
    first = doc.strip().splitlines()[0] if doc.strip() else ""
    assert first, f"aalearn.{name} has no docstring"
    if not (inspect.isclass(obj) or inspect.isroutine(obj)):
        return  # constants and aliases: a description is enough
    assert EXAMPLES_SECTION.search(doc) and ">>>" in doc, (
        f"aalearn.{name}'s docstring has no 'Examples' section with a doctest"
    )


def _python_blocks(page: str) -> str:
    text = (DOCS / page).read_text()
    return "\n\n".join(re.findall(r"^```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL))


@pytest.mark.parametrize(
    "page", ["custom-sampler.md", "reproducing-aalu.md", "bring-your-own-model.md"]
)
def test_page_code_runs(page: str, capsys: pytest.CaptureFixture[str]) -> None:
    code = _python_blocks(page)
    assert code, f"no python code block in {page}"
    exec(compile(code, str(DOCS / page), "exec"), {"__name__": "docs_page"})
    capsys.readouterr()


@pytest.mark.slow
def test_sphinx_build_has_no_warnings(tmp_path: Path) -> None:
    for module in ("sphinx", "furo", "myst_parser"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (pip install -e '.[docs]')")
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
         "-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert (tmp_path / "html" / "api.html").is_file()
