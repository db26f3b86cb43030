"""The documentation covers the public API, its examples exist, and it builds without warnings."""

from __future__ import annotations

import importlib.util
import inspect
import os
import re
import subprocess
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import aalearn
import aalearn.inference

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
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


# Every page of docs/ (``_fragments/`` included, ``_build/`` not), found anew each run, so
# that a page added later is covered without touching this file.
PAGES = sorted(
    path.relative_to(DOCS).as_posix()
    for path in DOCS.rglob("*.md")
    if "_build" not in path.relative_to(DOCS).parts
)
# A fenced block is code for the reader when its info string is a language. `python`
# blocks (and MyST's ```{code-block} python```) run; the others are shown only: shell
# commands are `bash`, program output is `text`. MyST directives (```{toctree}```,
# ```{literalinclude}```, ...) are not code on the page.
RUN = "python"
SHOWN = {"bash", "console", "text", "toml", "ini", "json", "yaml"}
CODE_DIRECTIVES = ("{code-block}", "{code}", "{code-cell}", "{sourcecode}")
# A page whose code takes long says so with this line; its test is then marked slow.
SLOW_PAGE = "<!-- docs-test: slow -->"
# A page whose code needs what only another test sets up (a real Label Studio server, a
# framework's launcher) names that test with this line; it runs the page's blocks as
# written, and this module checks that it really reads the page.
RUN_BY = re.compile(r"<!-- docs-test: run by (?P<test>tests/[\w/]+\.py) -->")
OPENING = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`\n]*)$")


def _fenced_blocks(page: str) -> list[tuple[int, str, str]]:
    """``(first line number, language, code)`` of each fenced block of ``page``, in order.

    The language of a MyST code directive is its argument; other directives give
    their name in braces, and the blocks nested in them (an admonition's code) are
    listed after them.
    """
    return _blocks((DOCS / page).read_text().splitlines(), 1)


def _blocks(lines: list[str], first: int) -> list[tuple[int, str, str]]:
    blocks: list[tuple[int, str, str]] = []
    i = 0
    while i < len(lines):
        match = OPENING.match(lines[i])
        if match is None:
            i += 1
            continue
        indent, fence, info = match["indent"], match["fence"], match["info"].strip()
        words = info.split()
        language = words[0] if words else ""
        directive = language.startswith("{")
        if language in CODE_DIRECTIVES:
            language = words[1] if len(words) > 1 else ""
        closing = re.compile(rf"^[ \t]*{re.escape(fence[0])}{{{len(fence)},}}[ \t]*$")
        j = i + 1
        while j < len(lines) and not closing.match(lines[j]):
            j += 1
        body = [
            line[len(indent) :] if line.startswith(indent) else line for line in lines[i + 1 : j]
        ]
        start = i + 1
        while directive and body and body[0].startswith(":"):  # the directive's options
            body, start = body[1:], start + 1
        blocks.append((first + start, language, "\n".join(body) + "\n"))
        if directive and language.startswith("{"):  # not code: its content may hold blocks
            blocks += _blocks(body, first + start)
        i = j + 1
    return blocks


def _runnable_pages() -> list[Any]:
    params = []
    for page in PAGES:
        if not any(language == RUN for _, language, _ in _fenced_blocks(page)):
            continue
        text = (DOCS / page).read_text()
        marks = [pytest.mark.slow] if SLOW_PAGE in text else []
        other = RUN_BY.search(text)
        if other is not None:
            marks.append(pytest.mark.skip(reason=f"its blocks run in {other['test']}"))
        params.append(pytest.param(page, marks=marks, id=page))
    return params


@pytest.mark.parametrize("page", PAGES)
def test_a_page_run_elsewhere_is_read_by_that_test(page: str) -> None:
    """The test a page names as running its code exists and reads that page."""
    other = RUN_BY.search((DOCS / page).read_text())
    if other is None:
        return
    test = ROOT / other["test"]
    assert test.is_file(), f"docs/{page} names {other['test']}, which does not exist"
    assert page in test.read_text(), f"{other['test']} does not read docs/{page}"


@pytest.mark.parametrize("page", PAGES)
def test_every_code_block_names_its_language(page: str) -> None:
    """A block runs (``python``) or is marked as shown only (``bash``, ``text``, ...)."""
    for line, language, _ in _fenced_blocks(page):
        if language.startswith("{") and language.endswith("}"):
            continue  # a MyST directive such as {toctree}
        assert language == RUN or language in SHOWN, (
            f"docs/{page}, line {line - 1}: a code block tagged {language!r}. Tag code that "
            f"runs `python` (the tests run it) and code that is only shown one of {sorted(SHOWN)}."
        )


def test_the_block_parser_reads_a_page() -> None:
    page = "quickstart.md"
    blocks = _fenced_blocks(page)
    languages = [language for _, language, _ in blocks]
    assert languages.count("python") == 1 and "bash" in languages and "text" in languages
    assert "{literalinclude}" in languages
    text = (DOCS / page).read_text().splitlines()
    line, _, code = next(b for b in blocks if b[1] == "python")
    assert text[line - 2] == "```python" and code.splitlines()[0] == text[line - 1]


@pytest.fixture()
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A page runs in an empty directory and leaves no global state behind."""
    import torch
    import torch.distributed as dist

    monkeypatch.chdir(tmp_path)
    environ, rng = dict(os.environ), torch.random.get_rng_state()
    threads, dtype = torch.get_num_threads(), torch.get_default_dtype()
    try:
        yield tmp_path
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        os.environ.clear()
        os.environ.update(environ)
        torch.random.set_rng_state(rng)
        torch.set_num_threads(threads)
        torch.set_default_dtype(dtype)


@pytest.mark.parametrize("page", _runnable_pages())
def test_page_code_runs(page: str, isolated: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Every python block of the page, as written, in order, in one fresh namespace.

    Each block is compiled on its own with its line numbers in the page, so a failure
    points at the line of the ``.md`` file.
    """
    namespace: dict[str, Any] = {"__name__": "docs_page"}
    path = DOCS / page
    for line, language, code in _fenced_blocks(page):
        if language != RUN:
            continue
        exec(compile("\n" * (line - 1) + code, str(path), "exec"), namespace)
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
