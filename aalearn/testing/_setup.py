"""What the checks run on: a pool of digits, a small MLP, fresh instances and guarded calls."""

from __future__ import annotations

import inspect
import random
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from typing import Any, Callable, NoReturn, Optional

import numpy as np
import torch
from torch import nn
from torch.utils.data import TensorDataset

from aalearn.pool import ActivePool

N_ITEMS = 150  # digits in the check pool
LABELED = np.arange(0, N_ITEMS, 5)  # 30 labeled: half with oracle labels, half without
BUDGET = 10
POISONED = [1, 7, 12, 13, 14, 16, 18]  # unlabeled items whose inputs are NaN or inf
_MISSING = object()


def init_params(cls: type) -> list[str]:
    """The names of ``cls.__init__``'s parameters (scikit-learn's convention)."""
    sig = inspect.signature(cls.__init__)  # type: ignore[misc]
    return [
        p.name
        for p in sig.parameters.values()
        if p.name != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
    ]


@lru_cache(maxsize=1)
def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    d = load_digits()
    # 1x8x8 images, so that the samplers that read raw images (VAAL) see images.
    x = torch.tensor(d.data[:N_ITEMS] / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    return x, torch.tensor(d.target[:N_ITEMS], dtype=torch.int64)


class CheckNet(nn.Module):
    """1x8x8 -> 32 -> ReLU -> batch norm -> dropout -> 10: both layers make the mode matter."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.BatchNorm1d(32))
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(self.body(x)))


def _pool(x: torch.Tensor, y: torch.Tensor) -> ActivePool:
    pool = ActivePool(TensorDataset(x, y))
    half = LABELED.size // 2
    pool.label(LABELED[:half])  # the dataset's own targets
    pool.label(LABELED[half:], labels=y[LABELED[half:]].numpy())  # an oracle's labels
    return pool


def _model(x: torch.Tensor, y: torch.Tensor, device: torch.device) -> CheckNet:
    """20 steps of full-batch Adam on the labeled items, seeded, global RNGs left as they were."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = CheckNet()
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        idx = torch.from_numpy(LABELED)
        for _ in range(20):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    model.zero_grad(set_to_none=True)
    model.to(device)
    model.fc.eval()  # a mixed mode: the checks verify that it survives
    return model


def _global_rng_state(device: torch.device) -> list[tuple[str, Any]]:
    np_state: Any = np.random.get_state()  # noqa: NPY002 (the global RNG, on purpose)
    out: list[tuple[str, Any]] = [
        ("torch's", torch.random.get_rng_state()),
        ("NumPy's", (np_state[0], np_state[1].copy(), *np_state[2:])),
        ("Python's", random.getstate()),
    ]
    if device.type == "cuda":
        out.append(("torch's CUDA", torch.cuda.get_rng_state(device)))
    return out


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return bool(np.array_equal(a, b))
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b))
    return bool(a == b)


def _brief(value: Any) -> str:
    """``value`` for a message: an array by its shape and first items."""
    if isinstance(value, np.ndarray):
        head = value.reshape(-1)[:5].tolist()
        more = ", ..." if value.size > 5 else ""
        return f"an array of shape {value.shape} ({str(head)[:-1]}{more}])"
    return repr(value)


@contextmanager
def kept_global_rngs(device: Optional[torch.device] = None) -> Iterator[None]:
    """Restore torch's (CPU and ``device``'s), NumPy's and Python's global RNGs on exit."""
    state: Any = np.random.get_state()  # noqa: NPY002
    py_state = random.getstate()
    cuda = [device] if device is not None and device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        try:
            yield
        finally:
            np.random.set_state(state)  # noqa: NPY002 (the global RNG, on purpose)
            random.setstate(py_state)


@contextmanager
def global_seeds(seed: int) -> Iterator[None]:
    """Seed torch's, NumPy's and Python's global RNGs with ``seed``; restore them on exit."""
    with kept_global_rngs():
        torch.manual_seed(seed)
        np.random.seed(seed)  # noqa: NPY002
        random.seed(seed)
        yield


class Context:
    """One sampler under check: its pool, poisoned pool and model, and guarded calls."""

    def __init__(self, sampler: Any, device: torch.device) -> None:
        self.sampler = sampler
        self.device = device
        x, y = _digits()
        self.pool = _pool(x.clone(), y.clone())
        bad = x.clone()
        bad[POISONED[:3]] = float("nan")
        bad[POISONED[3:]] = float("inf")
        self.poisoned_pool = _pool(bad, y.clone())
        self.zero_pool = ActivePool(TensorDataset(x.clone(), y.clone()))  # nothing labeled
        self.model = _model(x, y, device)
        self.requires_model = bool(getattr(sampler, "requires_model", True))
        self._reference: Optional[np.ndarray] = None
        self.name = type(sampler).__name__  # object's repr names an address, not the sampler
        if type(sampler).__repr__ is not object.__repr__:
            try:
                self.name = repr(sampler)
            except Exception:  # a broken repr is reported by check_params
                pass

    def fail(self, check: str, detail: str) -> NoReturn:
        raise AssertionError(f"{check} failed for {self.name}: {detail}")

    def expect(self, ok: bool, check: str, detail: Callable[[], str]) -> None:
        if not ok:
            self.fail(check, detail())

    def fresh(self) -> Any:
        """A new instance built from the sampler's parameters (the sampler itself without any)."""
        s = self.sampler
        if not callable(getattr(s, "get_params", None)):
            return s
        try:
            return type(s)(**s.get_params(deep=False))
        except Exception as err:
            self.fail("check_params", f"type(s)(**s.get_params(deep=False)) raised {err!r}")

    def reference(self) -> np.ndarray:
        """``select(model, pool, BUDGET)`` of a fresh instance, computed once."""
        if self._reference is None:
            sampler = self.fresh()
            self._reference = self.call(
                "check_select_output",
                f"select(model, pool, {BUDGET})",
                lambda: sampler.select(self.model, self.pool, BUDGET),
            )
        return self._reference

    def call(
        self,
        check: str,
        what: str,
        fn: Callable[[], Any],
        *,
        pool: Optional[ActivePool] = None,
        raises: Optional[type[BaseException]] = None,
        passes: tuple[type[BaseException], ...] = (),
    ) -> Any:
        """``fn()`` with the pool, the model and the global RNGs checked to be left as they were.

        ``raises``: the exception expected (returned); ``passes``: exceptions re-raised
        as they are (after the invariants are checked).
        """
        pool = self.pool if pool is None else pool
        before = self._snapshot(pool)
        try:
            out = fn()
        except Exception as err:
            self._verify(what, before, pool)
            if raises is not None and isinstance(err, raises):
                return err
            if isinstance(err, passes):
                raise
            expected = "" if raises is None else f" instead of {raises.__name__}"
            self.fail(check, f"{what} raised {type(err).__name__}{expected}: {err}")
        self._verify(what, before, pool)
        if raises is not None:
            self.fail(check, f"{what} returned {_brief(out)} instead of raising {raises.__name__}")
        return out

    def _snapshot(self, pool: ActivePool) -> dict[str, Any]:
        m = self.model
        return {
            "pool": {
                k: (v.clone() if torch.is_tensor(v) else v) for k, v in pool.state_dict().items()
            },
            "tensors": {k: v.detach().clone() for k, v in m.state_dict(keep_vars=True).items()},
            "training": [(n or "<model>", mod.training) for n, mod in m.named_modules()],
            "requires_grad": [(n, p.requires_grad) for n, p in m.named_parameters()],
            "grad": [
                (n, None if p.grad is None else p.grad.clone()) for n, p in m.named_parameters()
            ],
            "rng": _global_rng_state(self.device),
        }

    def _verify(self, what: str, before: dict[str, Any], pool: ActivePool) -> None:
        after = self._snapshot(pool)
        for key, value in before["pool"].items():
            if not _same(value, after["pool"].get(key, _MISSING)):
                self.fail(
                    "check_pool_untouched",
                    f"{what} changed the pool's {key!r} (select must leave the pool as it was; "
                    "the caller labels with pool.label)",
                )
        for (name, flag), (_, now) in zip(before["training"], after["training"]):
            if flag != now:
                self.fail(
                    "check_model_untouched",
                    f"{what} left submodule {name!r} with training={now} (was {flag}): restore "
                    "every submodule's training flag (aalearn.inference.preserve_mode)",
                )
        for key in ("tensors", "requires_grad", "grad"):
            pairs = before[key].items() if key == "tensors" else before[key]
            now = dict(after[key].items() if key == "tensors" else after[key])
            for name, value in pairs:
                if not _same(value, now.get(name, _MISSING)):
                    self.fail(
                        "check_model_untouched",
                        f"{what} changed the model's {name!r} ({key}): select trains nothing "
                        "but the sampler's own networks",
                    )
        for (name, value), (_, now) in zip(before["rng"], after["rng"]):
            if not _same(value, now):
                self.fail(
                    "check_global_rng_untouched",
                    f"{what} changed {name} global RNG: draw randomness only from "
                    "`random_state` (the rng argument of _select)",
                )
