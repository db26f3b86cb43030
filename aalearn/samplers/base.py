"""The :class:`Sampler` protocol and the :class:`BaseSampler` that implements its checks."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any, Callable, ClassVar, Optional, Protocol, Union, runtime_checkable

import numpy as np
import torch
from torch import nn

from aalearn import functional as AF
from aalearn._pool_state import check_unlabeled_indices
from aalearn._validation import (
    Constraint,
    RandomState,
    Rule,
    check_int,
    check_random_state,
    resolve_device,
)
from aalearn.distributed import current_shard
from aalearn.inference import (
    InferenceConfig,
    InferenceOutputs,
    PassRequest,
    inference_device,
    preserve_mode,
)
from aalearn.inference.passes import collect_pass, stream_pass
from aalearn.pool import ActivePool

from ._params import ParamsMixin
from ._zero import check_has_labels

__all__ = ["BaseSampler", "Sampler"]


@runtime_checkable
class Sampler(Protocol):
    """What aalearn calls a sampler: a strategy that picks the next items to label.

    Not to be confused with :class:`torch.utils.data.Sampler`, which yields indices
    for a ``DataLoader``. An aalearn sampler is a *configuration object* with one
    method:

    ``select(model, pool, budget) -> numpy.ndarray``
        Return exactly ``budget`` **dataset** indices (``int64``, 1-D), unique, all
        currently unlabeled in ``pool``, **best first**. ``0 <= budget <=
        pool.n_unlabeled``; anything else raises ``ValueError`` (a non-int raises
        ``TypeError``). ``select`` does not label anything (call
        ``pool.label(picked)``), leaves ``pool`` unchanged, restores every
        submodule's ``training`` flag of ``model``, trains nothing but its own
        selector networks, and draws randomness only from its ``random_state``,
        never from a global RNG: the same seed on the same model and pool gives the
        same indices.

    Any object with such a ``select`` method satisfies the protocol
    (``isinstance(obj, aalearn.Sampler)`` is ``True``); subclassing
    :class:`BaseSampler` gives the checks for free.

    Examples
    --------
    >>> import numpy as np
    >>> import aalearn
    >>> class FirstUnlabeled:
    ...     def select(self, model, pool, budget):
    ...         return pool.unlabeled_indices[:budget].copy()
    >>> isinstance(FirstUnlabeled(), aalearn.Sampler)
    True
    """

    def select(self, model: Any, pool: ActivePool, budget: int) -> np.ndarray: ...


class BaseSampler(ParamsMixin):
    """Base class: validates ``select``'s and ``score``'s arguments, then calls a hook.

    Subclasses take their own keyword arguments plus ``inference`` and
    ``random_state``, store them unchanged in ``__init__`` (so the ``repr`` shows
    the configuration and :func:`sklearn.base.clone` works, as in scikit-learn),
    declare a constraint for each in ``_parameter_constraints`` (checked at the start
    of every ``select`` and ``score``, before any work; rules that tie several
    parameters together go in ``_check_params``), and implement
    ``_select(model, pool, budget, rng)``; samplers that give every item a score
    also implement ``_score(model, pool, indices, rng)``, and :meth:`score` is public.
    The base class checks the budget, pool, model and indices, preserves the model's
    training flags, resolves ``random_state`` into a fresh
    :class:`numpy.random.Generator` for each call, and checks the result against the
    :class:`Sampler` contract. Samplers get model outputs from :meth:`_collect` (one
    pass, all rows) or :meth:`_select_topk` (streaming top-k, memory ``O(budget)``),
    both aware of :class:`aalearn.distributed.ShardedSampler`.

    Capability flags (class attributes, read by code and by
    :func:`aalearn.testing.check_sampler` instead of lists of names):
    ``requires_model`` (the sampler reads a model), ``needs_labels`` (it refuses a pool
    with no label) and :attr:`has_score` (it scores items one by one: from ``_score``).

    Parameters
    ----------
    inference : aalearn.InferenceConfig, mapping or None
        How the inference pass reads batches, calls the model and reads its outputs
        (batch size, device, workers, ``input_fn``, ``target_fn``, ``output_fn``,
        feature layer, autocast): see :class:`~aalearn.InferenceConfig`. A dict of its
        fields is accepted (``inference={"batch_size": 64, "device": "cpu"}``) and
        validated at ``select``. Samplers that do not use a field ignore it (e.g.
        ``target_fn`` outside the loss-reading samplers).
    random_state : int, numpy.random.Generator or None
        Seed of every random choice the sampler makes.

    Examples
    --------
    A sampler that picks the unlabeled items with the largest feature norm:

    >>> import numpy as np, torch
    >>> from torch import nn
    >>> from torch.utils.data import TensorDataset
    >>> from aalearn import ActivePool, BaseSampler
    >>> class LargestNorm(BaseSampler):
    ...     def _select(self, model, pool, budget, rng):
    ...         out = self._collect(model, pool, pool.unlabeled_indices, features=True)
    ...         order = torch.argsort(out.features.norm(dim=1), descending=True, stable=True)
    ...         return out.indices[order[:budget].cpu().numpy()]
    >>> model = nn.Sequential(nn.Linear(2, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> pool = ActivePool(TensorDataset(torch.randn(20, 2), torch.zeros(20, dtype=torch.long)))
    >>> pool.label([0])  # a model-based sampler refuses a pool with no label (needs_labels)
    >>> sampler = LargestNorm(inference={"device": "cpu"})
    >>> sampler
    LargestNorm(inference={'device': 'cpu'})
    >>> sampler.select(model, pool, budget=3).shape
    (3,)
    >>> sampler.set_params(inference__batch_size=8).inference_
    InferenceConfig(batch_size=8, device='cpu')
    >>> sampler.has_score  # no _score hook: it picks a batch, it does not score items
    False
    """

    # Class flags: what a sampler can do, read by aalearn.testing.check_sampler and the
    # test suite (never a hand-kept list of names). They are read on the instance, so a
    # class whose capability depends on its configuration may make one a property.

    #: The sampler needs a model (``False`` for :class:`RandomSampler`: ``select(None, ...)``
    #: works, and no model output is read, so the non-finite policy does not apply).
    requires_model: ClassVar[bool] = True
    #: ``select``/``score`` refuse a pool with no labeled item (``ValueError``, ``_zero.py``).
    needs_labels: ClassVar[bool] = True
    #: ``select`` is a ranking: with the same seed, a smaller budget picks a prefix of a
    #: larger one's picks (``False`` when the batch depends on the budget, as k-center does).
    ranking: ClassVar[bool] = False
    #: Cheap constructor arguments for :func:`aalearn.testing.check_sampler`, one mapping
    #: per configuration to check (``inference`` and ``random_state`` are added).
    _test_params: ClassVar[tuple[Mapping[str, Any], ...]] = ({},)

    _parameter_constraints: ClassVar[dict[str, Constraint]] = {
        "inference": Rule(lambda value, name: InferenceConfig.coerce(value)),
        "random_state": Rule(check_random_state),
    }

    def __init__(
        self,
        *,
        inference: Union[InferenceConfig, Mapping[str, Any], None] = None,
        random_state: RandomState = None,
    ) -> None:
        self.inference = inference
        self.random_state = random_state

    @property
    def inference_(self) -> InferenceConfig:
        """``inference`` resolved and validated as an :class:`~aalearn.InferenceConfig`."""
        return InferenceConfig.coerce(getattr(self, "inference", None))

    @property
    def device_(self) -> torch.device:
        """The inference device, resolved without a model.

        ``None`` gives CUDA when available, else CPU; at ``select`` time ``None``
        follows the model instead (:func:`aalearn.inference.inference_device`).
        """
        return resolve_device(self.inference_.device)

    @property
    def has_score(self) -> bool:
        """Whether :meth:`score` gives one score per item (the class has a ``_score`` hook)."""
        return type(self)._score is not BaseSampler._score

    # ------------------------------------------------------------------ select
    @staticmethod
    def _check_pool(pool: Any) -> None:
        if not isinstance(pool, ActivePool):
            raise TypeError(
                f"Expected argument `pool` to be an aalearn.ActivePool, but got "
                f"{type(pool).__name__}."
            )

    def _check_model(self, model: Any) -> None:
        if self.requires_model and not isinstance(model, nn.Module):
            raise TypeError(
                f"Expected argument `model` to be a torch.nn.Module, but got "
                f"{type(model).__name__}."
            )

    def select(self, model: Optional[nn.Module], pool: ActivePool, budget: int) -> np.ndarray:
        """Pick ``budget`` unlabeled dataset indices, best first (see :class:`Sampler`)."""
        self._check_pool(pool)
        budget = check_int(budget, "budget", minimum=0)
        if budget > pool.n_unlabeled:
            raise ValueError(
                f"Expected argument `budget` to be at most the number of unlabeled items "
                f"({pool.n_unlabeled}), but got {budget}."
            )
        self._check_model(model)
        check_has_labels(self, pool)
        self._validate_params()
        if budget == 0:
            return np.empty(0, dtype=np.int64)
        rng = check_random_state(self.random_state)
        with preserve_mode(model):
            picked = self._select(model, pool, budget, rng)
        return self._check_output(picked, pool, budget)

    def _select(
        self, model: Any, pool: ActivePool, budget: int, rng: np.random.Generator
    ) -> np.ndarray:
        raise NotImplementedError

    @staticmethod
    def _check_output(picked: Any, pool: ActivePool, budget: int) -> np.ndarray:
        if isinstance(picked, torch.Tensor):
            picked = picked.detach().cpu().numpy()
        out = np.asarray(picked, dtype=np.int64).reshape(-1)
        if out.shape[0] != budget:
            raise RuntimeError(f"Sampler returned {out.shape[0]} indices instead of {budget}.")
        if np.unique(out).size != budget:
            raise RuntimeError("Sampler returned repeated indices.")
        if pool.labeled_mask[out].any():
            raise RuntimeError("Sampler returned an index that is already labeled.")
        return out

    # ------------------------------------------------------------------- score
    def score(
        self, model: Optional[nn.Module], pool: ActivePool, indices: Any = None
    ) -> np.ndarray:
        """One score per item of ``indices`` (default: the unlabeled items, ascending).

        Higher means "pick first": the order ``select`` ranks (for the samplers whose
        batch is the top-k of their scores). The same checks as :meth:`select`, in the
        same words; ``indices`` must be unlabeled dataset indices (integers, 1-D).
        Samplers that pick a batch without scoring items one by one
        (:attr:`has_score` is ``False``) raise ``TypeError``.
        """
        if not self.has_score:
            raise TypeError(
                f"{type(self).__name__} picks a batch and does not score items one by one "
                "(it has no score method); use select."
            )
        self._check_pool(pool)
        self._check_model(model)
        check_has_labels(self, pool)
        self._validate_params()
        idx = check_unlabeled_indices(indices, pool)
        rng = check_random_state(self.random_state)
        with preserve_mode(model):
            scores = self._score(model, pool, idx, rng)
        return np.asarray(scores)

    def _score(
        self, model: Any, pool: ActivePool, indices: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """The scores of ``indices`` (validated unlabeled dataset indices), one float each."""
        raise NotImplementedError

    # ------------------------------------------------------------ inference
    @staticmethod
    def _pass_request(fields: dict[str, Any]) -> tuple[PassRequest, Optional[np.ndarray]]:
        """The :class:`~aalearn.inference.PassRequest` of ``fields`` and their ``labels``."""
        request = dict(fields)
        labels = request.pop("labels", None)
        return PassRequest(**request), labels

    @contextlib.contextmanager
    def _mc_seed(
        self, model: nn.Module, cfg: InferenceConfig, rng: Optional[np.random.Generator], k: int
    ) -> Iterator[None]:
        """Seed the dropout masks of ``k > 0`` MC passes from ``rng``, leaving torch's RNG as is."""
        if not k:
            yield
            return
        dev = inference_device(model, cfg.device)
        cuda_ids = []
        if dev.type == "cuda":
            cuda_ids = [dev.index if dev.index is not None else torch.cuda.current_device()]
        gen = check_random_state(self.random_state) if rng is None else rng
        with torch.random.fork_rng(devices=cuda_ids):
            # Dropout masks come from the global torch RNG; seeded inside a fork so the
            # caller's RNG state is left untouched.
            torch.manual_seed(int(gen.integers(0, 2**63 - 1)))
            yield

    @staticmethod
    def _dataset(pool: ActivePool) -> Any:
        if pool.dataset is None:
            raise ValueError("This sampler needs the pool's dataset, but the pool has none.")
        return pool.dataset

    def _collect(
        self,
        model: nn.Module,
        pool: ActivePool,
        indices: np.ndarray,
        *,
        rng: Optional[np.random.Generator] = None,
        **request_fields: Any,
    ) -> InferenceOutputs:
        """One inference pass over ``indices`` with this sampler's configuration.

        ``request_fields`` are the fields of :class:`~aalearn.inference.PassRequest`
        (``probs``, ``features``, ``losses``, ``inputs``, ``mc_samples``) and ``labels``,
        as in :func:`aalearn.collect`; the configuration is :attr:`inference_`, resolved
        once. MC-dropout masks are seeded from ``rng``. Inside
        :class:`aalearn.distributed.ShardedSampler`, each rank runs the pass over its
        block of ``indices`` and gets every row back (all-gathered).
        """
        dataset = self._dataset(pool)
        request, labels = self._pass_request(request_fields)
        cfg = self.inference_
        shard = current_shard()
        with self._mc_seed(model, cfg, rng, request.mc_samples):
            if shard is None:
                return collect_pass(model, dataset, indices, request, cfg, labels)
            return shard.collect(model, dataset, indices, request, cfg, labels=labels)

    def _stream(
        self,
        model: nn.Module,
        pool: ActivePool,
        indices: np.ndarray,
        consume: Callable[[InferenceOutputs], None],
        *,
        rng: Optional[np.random.Generator] = None,
        **request_fields: Any,
    ) -> None:
        """:func:`aalearn.stream` over ``indices`` (this process only) with this configuration."""
        request, labels = self._pass_request(request_fields)
        cfg = self.inference_
        with self._mc_seed(model, cfg, rng, request.mc_samples):
            stream_pass(model, self._dataset(pool), indices, consume, request, cfg, labels)

    def _score_stream(
        self,
        model: nn.Module,
        pool: ActivePool,
        indices: np.ndarray,
        score: Callable[[InferenceOutputs], torch.Tensor],
        *,
        rng: Optional[np.random.Generator] = None,
        **request_fields: Any,
    ) -> np.ndarray:
        """``score(batch outputs)`` of every item of ``indices``, in order, as a NumPy array."""
        parts: list[torch.Tensor] = []
        self._stream(
            model, pool, indices, lambda out: parts.append(score(out)), rng=rng, **request_fields
        )
        if not parts:
            return np.empty(0, dtype=np.float32)
        return torch.cat(parts).cpu().numpy()

    def _select_topk(
        self,
        model: nn.Module,
        pool: ActivePool,
        budget: int,
        score: Callable[[InferenceOutputs], torch.Tensor],
        *,
        rng: Optional[np.random.Generator] = None,
        **request_fields: Any,
    ) -> np.ndarray:
        """The ``budget`` unlabeled items with the highest ``score``, best first, streamed.

        Each batch's scores are merged into a running top-k
        (:class:`aalearn.functional.StreamingTopK`), so memory is ``O(budget)`` plus
        one batch. Inside :class:`aalearn.distributed.ShardedSampler` each rank scores
        its block of the unlabeled items and the ranks' candidates are merged
        (:meth:`aalearn.distributed.Shard.merge_topk`): the same picks as one process.
        """
        request, labels = self._pass_request(request_fields)
        cfg = self.inference_
        shard = current_shard()
        unlabeled = pool.unlabeled_indices if shard is None else shard.local(pool.unlabeled_indices)
        dev = inference_device(model, cfg.device)
        topk = AF.StreamingTopK(budget, device=dev)

        def _consume(out: InferenceOutputs) -> None:
            idx = torch.from_numpy(np.array(out.indices, dtype=np.int64)).to(dev)
            topk.update(score(out), idx)

        with self._mc_seed(model, cfg, rng, request.mc_samples):
            stream_pass(model, self._dataset(pool), unlabeled, _consume, request, cfg, labels)
        scores, idx = topk.compute()
        if shard is not None:
            idx = shard.merge_topk(scores, idx, budget)
        return idx.cpu().numpy()
