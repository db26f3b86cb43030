"""No module of aalearn shares its name with something else its package exports.

``import aalearn.functional.badge as m`` must give a module: when a package re-exports
a function under the name of one of its submodules, ``import a.b as m`` returns the
function (the package attribute wins), and the module can no longer be reached by name.
"""

from __future__ import annotations

import importlib
import pkgutil
import types

import pytest

import aalearn


def _submodules() -> list[str]:
    names = [aalearn.__name__]
    names += [m.name for m in pkgutil.walk_packages(aalearn.__path__, prefix="aalearn.")]
    return sorted(names)


@pytest.mark.parametrize("name", _submodules())
def test_import_as_gives_the_module(name: str) -> None:
    module = importlib.import_module(name)
    assert isinstance(module, types.ModuleType)
    if "." not in name:
        return
    parent_name, _, attr = name.rpartition(".")
    parent = importlib.import_module(parent_name)
    # `import parent.attr as m` binds getattr(parent, attr): it must be the module itself.
    assert getattr(parent, attr) is module, (
        f"{parent_name}.{attr} is {getattr(parent, attr)!r}, not the module {name}: "
        "a name the package exports hides the module"
    )


def test_badge_and_batchbald_stay_functions() -> None:
    from aalearn.functional import badge, batchbald

    assert isinstance(badge, types.FunctionType) and badge.__name__ == "badge"
    assert isinstance(batchbald, types.FunctionType) and batchbald.__name__ == "batchbald"
    assert aalearn.functional.badge is badge and aalearn.functional.batchbald is batchbald
