"""One conformance suite over every sampler (the Sampler contract).

Each sampler must return ``budget`` unique unlabeled int64 indices, be
deterministic under a seed, leave the model (parameters and every training flag),
the pool and the global RNGs unchanged, and reject bad budgets with the same
messages.
"""

from __future__ import annotations

import inspect
from typing import Callable

import numpy as np
import pytest
import torch

import aalearn
from aalearn.samplers import AALU_VARIANTS

from .conftest import DEVICES, trained_model

#: One or more configurations per sampler class, built from ``(seed, device)``.
FACTORIES: dict[str, Callable[[int, str], aalearn.Sampler]] = {
    "random": lambda s, d: aalearn.RandomSampler(random_state=s),
    "entropy": lambda s, d: aalearn.UncertaintySampler(
        "entropy", inference={"device": d}, random_state=s
    ),
    "margin": lambda s, d: aalearn.UncertaintySampler(
        "margin", inference={"device": d}, random_state=s
    ),
    "least_confidence": lambda s, d: aalearn.UncertaintySampler(
        "least_confidence", inference={"device": d}, random_state=s
    ),
    "bald": lambda s, d: aalearn.UncertaintySampler(
        "bald", mc_samples=4, inference={"device": d}, random_state=s
    ),
    "coreset": lambda s, d: aalearn.CoreSetSampler(inference={"device": d}, random_state=s),
    "badge": lambda s, d: aalearn.BADGESampler(inference={"device": d}, random_state=s),
    "batchbald": lambda s, d: aalearn.BatchBALDSampler(
        mc_samples=4, num_samples=100, inference={"device": d}, random_state=s
    ),
    "batchbald[max_candidates]": lambda s, d: aalearn.BatchBALDSampler(
        mc_samples=4, num_samples=100, max_candidates=30, inference={"device": d}, random_state=s
    ),
    **{
        f"stochastic[{mode}-{method}]": (
            lambda s, d, m=mode, u=method: aalearn.StochasticBatchSampler(
                aalearn.UncertaintySampler(
                    u, mc_samples=4, inference={"device": d}, random_state=s
                ),
                mode=m,
                random_state=s,
            )
        )
        for mode, method in (("power", "bald"), ("softmax", "margin"), ("softrank", "entropy"))
    },
    **{
        f"aalu[{variant}]": (
            lambda s, d, v=variant: aalearn.AALUSampler(
                variant=v, epochs=2, min_iterations=0, random_state=s, inference={"device": d}
            )
        )
        for variant in AALU_VARIANTS
    },
    "adversarial[features]": lambda s, d: aalearn.AdversarialSampler(
        representation="features", epochs=2, random_state=s, inference={"device": d}
    ),
    "adversarial[raw]": lambda s, d: aalearn.AdversarialSampler(
        representation="raw", epochs=0.2, vae_channels=8, random_state=s, inference={"device": d}
    ),
}
#: Samplers whose picks are a ranking: a smaller budget gives a prefix.
RANKING = {"entropy", "margin", "least_confidence", "bald", "coreset"}


def _exported_sampler_classes() -> list[type]:
    """Every concrete sampler class that :mod:`aalearn.samplers` exports."""
    found = []
    for name in aalearn.samplers.__all__:
        obj = getattr(aalearn.samplers, name)
        if (
            inspect.isclass(obj)
            and obj not in (aalearn.BaseSampler, aalearn.Sampler)
            and callable(getattr(obj, "select", None))
        ):
            found.append(obj)
    return found


def test_every_exported_sampler_has_a_factory():
    classes = _exported_sampler_classes()
    assert aalearn.BADGESampler in classes and aalearn.RandomSampler in classes
    covered = {type(factory(0, "cpu")) for factory in FACTORIES.values()}
    missing = [c.__name__ for c in classes if c not in covered]
    assert not missing, f"samplers exported without a factory in FACTORIES: {missing}"


@pytest.fixture(scope="module", params=DEVICES)
def setup(request, digits):
    pool = aalearn.ActivePool(torch.utils.data.Subset(digits, range(300)))
    first = pool.random_unlabeled(40, random_state=0)
    pool.label(first[:20])
    pool.label(first[20:], labels=digits.tensors[1][first[20:]].numpy())
    model = trained_model(digits, pool.labeled_indices, epochs=20).to(request.param)
    return model, pool, request.param


def _state(model, pool):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [m.training for m in model.modules()],
        pool.state_dict(),
    )


@pytest.mark.parametrize("name", sorted(FACTORIES))
@pytest.mark.slow
def test_contract(setup, name):
    model, pool, device = setup
    model.train()
    model.fc.eval()  # a mixed mode must survive
    params, flags, pool_state = _state(model, pool)
    torch_rng, np_rng = torch.random.get_rng_state(), np.random.get_state()
    sampler = FACTORIES[name](3, device)
    assert isinstance(sampler, aalearn.Sampler)
    assert repr(sampler).startswith(type(sampler).__name__ + "(")

    picked = sampler.select(model, pool, 25)
    assert isinstance(picked, np.ndarray) and picked.dtype == np.int64 and picked.shape == (25,)
    assert np.unique(picked).size == 25
    assert not pool.labeled_mask[picked].any()
    assert ((picked >= 0) & (picked < len(pool))).all()

    again = FACTORIES[name](3, device).select(model, pool, 25)
    np.testing.assert_array_equal(picked, again)
    # a prefix property: best first means a smaller budget returns a prefix
    # (not for samplers whose draws depend on the budget)
    if name in RANKING:
        np.testing.assert_array_equal(
            FACTORIES[name](3, device).select(model, pool, 10), picked[:10]
        )

    new_params, new_flags, new_pool_state = _state(model, pool)
    assert new_flags == flags
    for k in params:
        torch.testing.assert_close(new_params[k], params[k], rtol=0, atol=0)
    for k in pool_state:
        np.testing.assert_array_equal(np.asarray(pool_state[k]), np.asarray(new_pool_state[k]))
    assert torch.equal(torch.random.get_rng_state(), torch_rng)
    assert np.random.get_state()[1].tolist() == np_rng[1].tolist()

    assert sampler.select(model, pool, 0).shape == (0,)
    everything = sampler.select(model, pool, pool.n_unlabeled)
    np.testing.assert_array_equal(np.sort(everything), pool.unlabeled_indices)


@pytest.mark.parametrize("name", sorted(FACTORIES))
@pytest.mark.parametrize(
    ("budget", "exc", "match"),
    [
        (-1, ValueError, r"Expected argument `budget` to be >= 0, but got -1\."),
        (
            261,
            ValueError,
            r"`budget` to be at most the number of unlabeled items \(260\), but got 261",
        ),
        (2.5, TypeError, r"Expected argument `budget` to be an integer, but got float"),
        (True, TypeError, r"Expected argument `budget` to be an integer, but got bool"),
    ],
)
def test_bad_budget_same_message(setup, name, budget, exc, match):
    model, pool, device = setup
    with pytest.raises(exc, match=match):
        FACTORIES[name](0, device).select(model, pool, budget)


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_bad_pool_and_model(setup, name):
    model, pool, device = setup
    sampler = FACTORIES[name](0, device)
    with pytest.raises(TypeError, match="Expected argument `pool` to be an aalearn.ActivePool"):
        sampler.select(model, pool.unlabeled_indices, 3)  # type: ignore[arg-type]
    if getattr(sampler, "requires_model", True):
        with pytest.raises(TypeError, match="Expected argument `model` to be a torch.nn.Module"):
            sampler.select("model", pool, 3)  # type: ignore[arg-type]
