"""Conformance checks: :func:`check_sampler` runs the whole sampler contract on one sampler.

Modelled on scikit-learn's and imbalanced-learn's ``check_estimator``: the checks
build a small pool of real data (scikit-learn's digits, as ``1x8x8`` images) and a
small MLP with batch norm and dropout, run ``select`` (and ``score`` where there is
one) on them, and raise :class:`AssertionError` naming the check and the sampler at
the first breach of the :class:`~aalearn.Sampler` contract. Every shipped sampler
passes them (the test suite finds them with :func:`all_samplers`), and so should a
sampler of your own: see ``docs/custom-sampler.md``.

Not imported by ``import aalearn``; needs scikit-learn (a dependency), never pytest.
"""

from __future__ import annotations

import importlib
import inspect
import numbers
import pkgutil
import sys
from collections.abc import Mapping
from typing import Any, Union

import torch

import aalearn.samplers
from aalearn.samplers.base import BaseSampler
from aalearn.testing._checks import CHECKS
from aalearn.testing._setup import Context, init_params, kept_global_rngs

__all__ = ["all_samplers", "check_sampler"]


def all_samplers() -> list[tuple[str, type]]:
    """Every sampler class aalearn ships, as sorted ``(name, class)`` pairs.

    Imports every module of :mod:`aalearn.samplers`, then walks the subclasses of
    :class:`~aalearn.BaseSampler`, keeping the public classes that a module of
    aalearn defines (as imbalanced-learn's ``all_estimators`` does): a new sampler
    is found without being listed anywhere.

    Examples
    --------
    >>> from aalearn.testing import all_samplers
    >>> names = [name for name, _ in all_samplers()]
    >>> "RandomSampler" in names and "BaseSampler" not in names
    True
    """
    for info in pkgutil.iter_modules(aalearn.samplers.__path__, "aalearn.samplers."):
        importlib.import_module(info.name)
    found: dict[str, type] = {}
    todo = list(BaseSampler.__subclasses__())
    while todo:
        cls = todo.pop()
        todo.extend(cls.__subclasses__())
        module = sys.modules.get(cls.__module__)
        if (
            cls.__module__.startswith("aalearn.")
            and not cls.__module__.startswith(__name__)
            and not cls.__name__.startswith("_")
            and not inspect.isabstract(cls)
            and getattr(module, cls.__name__, None) is cls  # not a class made in a doctest
        ):
            found[cls.__name__] = cls
    return sorted(found.items())


def _instances(sampler: Any, device: torch.device) -> list[Any]:
    """The instances to check: one per ``_test_params`` entry of a class, or a seeded clone."""
    if inspect.isclass(sampler):
        names = init_params(sampler)
        out = []
        entries: tuple[Mapping[str, Any], ...] = getattr(sampler, "_test_params", ({},))
        for entry in entries:
            kwargs = dict(entry)
            if "inference" in names and "inference" not in kwargs:
                kwargs["inference"] = {"device": str(device)}
            if "random_state" in names and "random_state" not in kwargs:
                kwargs["random_state"] = 0
            try:
                out.append(sampler(**kwargs))
            except Exception as err:
                raise AssertionError(
                    f"check_sampler failed for {sampler.__name__}: {sampler.__name__}(**{kwargs}) "
                    f"raised {err!r}; declare cheap constructor arguments in its `_test_params`"
                ) from err
        return out
    if callable(getattr(sampler, "get_params", None)):
        params = sampler.get_params(deep=False)
        seed = params.get("random_state", 0)
        if "random_state" in params and not isinstance(seed, numbers.Integral):
            return [type(sampler)(**{**params, "random_state": 0})]
    return [sampler]


def check_sampler(sampler: Any, *, device: Union[str, torch.device] = "cpu") -> None:
    """Check that a sampler (an instance or a class) keeps the :class:`~aalearn.Sampler` contract.

    The checks, in order; each fails with an :class:`AssertionError` that names it
    and the sampler:

    - ``check_select_output``: exactly ``budget`` unique unlabeled dataset indices,
      a 1-D ``int64`` array; ``budget=0`` and ``budget=pool.n_unlabeled`` work (and
      ``model=None`` where ``requires_model`` is ``False``);
    - ``check_bad_budget``: ``-1``, ``n_unlabeled + 1``, ``1.5`` and ``True`` raise
      the ``ValueError`` / ``TypeError`` of :class:`~aalearn.BaseSampler`, word for word;
    - ``check_bad_pool_and_model``: a pool that is not an
      :class:`~aalearn.ActivePool` and (if ``requires_model``) a model that is not
      an ``nn.Module`` raise ``TypeError`` naming the argument;
    - ``check_deterministic``: the same ``random_state`` gives the same picks, on a
      fresh instance and on the same one again, whatever the global RNGs hold, with
      a NumPy integer as the budget;
    - ``check_model_modes``: ``select`` works on a model entirely in eval mode;
    - ``check_ranking`` (where the ``ranking`` flag is set): a smaller budget picks
      a prefix of a larger one's picks;
    - ``check_score`` (where there is a ``score`` method): one finite float per
      unlabeled item, the same for a subset of them, and for a ranking sampler the
      picks are the highest scores, ties to the smaller index;
    - ``check_non_finite``: where ``requires_model`` (or ``reads_inputs``: an embedding
      computed from the inputs), a model whose outputs are NaN or inf for some items
      (their inputs are) makes ``select`` raise ``ValueError`` naming them
      (``aalearn._finite``'s policy); otherwise ``select`` works;
    - ``check_zero_labels``: on a pool with no labeled item, a sampler whose
      ``needs_labels`` is ``False`` picks ``budget`` valid items (also with
      ``model=None`` where it needs no model); the others raise ``ValueError`` saying
      that the pool has no labeled item and naming the samplers that work from zero;
    - ``check_params`` (where there is ``get_params``): the constructor arguments
      are stored as given and nothing else is set in ``__init__``,
      :func:`sklearn.base.clone` gives the same picks, ``set_params`` round-trips
      and refuses unknown names, and the ``repr`` reads ``ClassName(...)``.

    Around *every* call, three invariants are checked too:
    ``check_pool_untouched`` (labeled mask, rounds, labels),
    ``check_model_untouched`` (parameters, buffers, gradients, ``requires_grad``
    and every submodule's ``training`` flag: the model is in a mixed mode, training
    with its classifier in eval mode) and ``check_global_rng_untouched`` (torch's,
    NumPy's and Python's global RNGs).

    Parameters
    ----------
    sampler : object or type
        An instance, checked as configured (a ``random_state`` that is ``None`` or a
        ``Generator`` is replaced by ``0`` on a copy; the instance passed is never
        changed), or a class, checked once per entry of its ``_test_params`` (cheap
        constructor arguments), with ``inference={"device": device}`` and
        ``random_state=0`` added where the class takes them.
    device : str or torch.device
        Where the check's model lives. The checks run with one CPU thread (their
        tensors are tiny); torch's thread count is restored afterwards.

    Raises
    ------
    AssertionError
        At the first check that fails, naming the check and the sampler.

    Examples
    --------
    >>> import aalearn
    >>> from aalearn.testing import check_sampler
    >>> check_sampler(aalearn.RandomSampler)  # silent: it keeps the contract
    >>> class LastUnlabeled(aalearn.BaseSampler):
    ...     requires_model = False
    ...     def _select(self, model, pool, budget, rng):
    ...         return pool.unlabeled_indices[-budget:]  # worst first: not a ranking
    >>> check_sampler(LastUnlabeled)
    >>> LastUnlabeled.ranking = True  # a wrong flag is caught
    >>> check_sampler(LastUnlabeled)
    Traceback (most recent call last):
    ...
    AssertionError: check_ranking failed for LastUnlabeled(...): select(model, pool, 5) picked ...
    """
    dev = torch.device(device)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads only cost (restored below)
    try:
        with kept_global_rngs(dev):  # restored even where a sampler under check changed them
            for instance in _instances(sampler, dev):
                ctx = Context(instance, dev)
                for check in CHECKS:
                    check(ctx)
    finally:
        torch.set_num_threads(threads)
