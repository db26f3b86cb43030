"""Uncertainty sampling: entropy, margin, least confidence and BALD."""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Optional

import numpy as np
import torch
from torch import nn

from aalearn import functional as AF
from aalearn._validation import Device, RandomState, check_int, check_random_state
from aalearn.distributed import current_shard
from aalearn.inference import InferenceOutputs, inference_device, stream
from aalearn.mc_dropout import dropout_modules
from aalearn.pool import ActivePool
from aalearn.samplers.base import BaseSampler

__all__ = ["UncertaintySampler"]


class UncertaintySampler(BaseSampler):
    """Pick the unlabeled items the model is least sure about.

    One streaming inference pass over the unlabeled pool; each batch is scored
    with a kernel of :mod:`aalearn.functional` and merged into a running top-k
    (:class:`aalearn.functional.StreamingTopK`), so memory is ``O(budget)`` plus
    one batch, whatever the pool size. Ties break by the smaller dataset index.

    Parameters
    ----------
    method : {"entropy", "margin", "least_confidence", "bald"}
        The score (higher = more informative): predictive entropy, ``1 - (p1 - p2)``,
        ``1 - max p``, or BALD's mutual information from ``mc_samples`` MC-dropout
        passes (dropout layers on, batch norm in eval mode). BALD needs a model with
        dropout layers.
    mc_samples : int
        Stochastic passes for ``"bald"`` (ignored otherwise).
    batch_size, device, num_workers, random_state, input_fn, autocast
        See :class:`~aalearn.samplers.base.BaseSampler`. ``random_state`` seeds
        the dropout masks of BALD.

    Examples
    --------
    >>> import torch
    >>> from torch import nn
    >>> from torch.utils.data import TensorDataset
    >>> from aalearn import ActivePool, UncertaintySampler
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.2), nn.Linear(16, 3))
    >>> pool = ActivePool(TensorDataset(torch.randn(50, 4), torch.arange(50) % 3))
    >>> sampler = UncertaintySampler("entropy", batch_size=16, device="cpu")
    >>> sampler  # the repr shows the arguments that differ from the defaults
    UncertaintySampler(batch_size=16, device='cpu')
    >>> picked = sampler.select(model, pool, budget=5)
    >>> len(picked), len(set(picked.tolist()))
    (5, 5)
    """

    methods: ClassVar[tuple[str, ...]] = ("entropy", "margin", "least_confidence", "bald")

    def __init__(
        self,
        method: str = "entropy",
        *,
        mc_samples: int = 20,
        batch_size: int = 256,
        device: Device = None,
        num_workers: int = 0,
        random_state: RandomState = None,
        input_fn: Optional[Callable[[Any], torch.Tensor]] = None,
        autocast: bool = False,
    ) -> None:
        super().__init__(
            batch_size=batch_size,
            device=device,
            num_workers=num_workers,
            random_state=random_state,
            input_fn=input_fn,
            autocast=autocast,
        )
        self.method = method
        self.mc_samples = mc_samples

    def _validate_params(self) -> None:
        super()._validate_params()
        if self.method not in self.methods:
            raise ValueError(
                f"Expected argument `method` to be one of {list(self.methods)}, but got "
                f"{self.method!r}."
            )
        check_int(self.mc_samples, "mc_samples", minimum=1)

    def _score_batch(self, out: InferenceOutputs) -> torch.Tensor:
        if self.method == "bald":
            assert out.mc_probs is not None
            return AF.bald(out.mc_probs, validate_args=False)
        assert out.probs is not None
        kernel = {
            "entropy": AF.entropy,
            "margin": AF.margin,
            "least_confidence": AF.least_confidence,
        }
        return kernel[self.method](out.probs, validate_args=False)

    def _stream_scores(
        self,
        model: nn.Module,
        pool: ActivePool,
        indices: np.ndarray,
        consume: Callable[[torch.Tensor, torch.Tensor], None],
        rng: np.random.Generator,
        dev: torch.device,
    ) -> None:
        if pool.dataset is None:
            raise ValueError("This sampler needs the pool's dataset, but the pool has none.")
        bald = self.method == "bald"
        if bald and not dropout_modules(model):
            raise ValueError("method='bald' needs MC dropout, but the model has no dropout layer.")
        cuda_ids = []
        if dev.type == "cuda":
            cuda_ids = [dev.index if dev.index is not None else torch.cuda.current_device()]
        with torch.random.fork_rng(devices=cuda_ids):
            if bald:
                # Dropout masks come from the global torch RNG; seed it inside a fork
                # so the caller's RNG state is left untouched.
                seed = int(rng.integers(0, 2**63 - 1))
                torch.manual_seed(seed)

            def _consume(out: InferenceOutputs) -> None:
                idx = torch.as_tensor(np.array(out.indices, dtype=np.int64), device=dev)
                consume(self._score_batch(out), idx)

            stream(
                model,
                pool.dataset,
                indices,
                _consume,
                probs=not bald,
                mc_samples=self.mc_samples if bald else 0,
                batch_size=self.batch_size,
                device=dev,
                num_workers=self.num_workers,
                input_fn=self.input_fn,
                autocast=self.autocast,
            )

    def score(
        self, model: nn.Module, pool: ActivePool, indices: Optional[np.ndarray] = None
    ) -> np.ndarray:
        """Scores of ``indices`` (default: every unlabeled item), higher = more informative."""
        self._validate_params()
        idx = pool.unlabeled_indices if indices is None else np.asarray(indices, dtype=np.int64)
        parts: list[torch.Tensor] = []
        rng = check_random_state(self.random_state)
        dev = inference_device(model, self.device)
        self._stream_scores(model, pool, idx, lambda s, _i: parts.append(s), rng, dev)
        if not parts:
            return np.empty(0, dtype=np.float32)
        return torch.cat(parts).cpu().numpy()

    def _select(
        self, model: Any, pool: ActivePool, budget: int, rng: np.random.Generator
    ) -> np.ndarray:
        shard = current_shard()  # sharded: score this rank's block, merge the candidates
        unlabeled = pool.unlabeled_indices if shard is None else shard.local(pool.unlabeled_indices)
        dev = inference_device(model, self.device)
        topk = AF.StreamingTopK(budget, device=dev)
        self._stream_scores(model, pool, unlabeled, topk.update, rng, dev)
        scores, idx = topk.compute()
        if shard is not None:
            idx = shard.merge_topk(scores, idx, budget)
        return idx.cpu().numpy()
