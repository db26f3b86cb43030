"""AdversarialSampler: VAAL on raw images and advVAE on features."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import Subset, TensorDataset

from aalearn import ActivePool
from aalearn.samplers import vaal
from aalearn.samplers.aalu import AALUSampler
from aalearn.samplers.adversarial import AdversarialSampler

from .test_aalu import DEVICES, NETS, lift_finite_policy, novel_cluster_pool

RAW = {"representation": "raw", "vae_channels": 4, "epochs": 1}


@pytest.fixture(scope="module")
def digits_pool(digits):
    pool = ActivePool(Subset(digits, range(240)))
    pool.label(np.arange(0, 240, 4))
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    return pool, model


# ---------------------------------------------------------------- features


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.slow
def test_features_picks_the_novel_cluster(device):
    pool, model, y = novel_cluster_pool(seed=0)
    sampler = AdversarialSampler(epochs=60, inference={"device": device}, random_state=0, **NETS)
    picked = sampler.select(model.to(device), pool, 30)
    assert (y[picked] == 3).mean() > 0.7


def test_features_is_aalus_advvae_machinery():
    pool, model, _ = novel_cluster_pool(seed=2, per=30, n_labeled=10)
    common = {"epochs": 3, "inference": {"device": "cpu"}, "random_state": 4, **NETS}
    ours = AdversarialSampler(
        vae_steps=1, discriminator_steps=1, min_iterations=0, batch="topk", **common
    )
    theirs = AALUSampler(variant="advVAE", min_iterations=0, batch="topk", **common)
    np.testing.assert_array_equal(ours.select(model, pool, 12), theirs.select(model, pool, 12))


# --------------------------------------------------------------------- raw


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.slow
def test_raw_contract(digits_pool, device):
    pool, model = digits_pool
    model = copy.deepcopy(model).to(device)
    model.train()
    state = pool.state_dict()
    params = {k: v.clone() for k, v in model.state_dict().items()}
    picked = AdversarialSampler(inference={"device": device}, random_state=1, **RAW).select(
        model, pool, 15
    )
    assert picked.dtype == np.int64 and picked.shape == (15,)
    assert np.unique(picked).size == 15 and not pool.labeled_mask[picked].any()
    again = AdversarialSampler(inference={"device": device}, random_state=1, **RAW).select(
        model, pool, 15
    )
    np.testing.assert_array_equal(picked, again)
    assert model.training and all(m.training for m in model.modules())
    for k in params:
        assert torch.equal(params[k], model.state_dict()[k])
    for k in state:
        np.testing.assert_array_equal(np.asarray(state[k]), np.asarray(pool.state_dict()[k]))


@pytest.mark.slow
def test_raw_picks_digits_unlike_the_labeled_ones(digits):
    """VAAL on real 8x8 digits: labeled images show only digits 0-4; it should favour 5-9.

    300 labeled images of digits 0-4; the unlabeled part is 60 % digits 5-9, so a
    random pick of 100 holds 60 +- 5 of them. A small ConvVAE (16 base channels, 3
    epochs, learning rate 2e-3) is enough for VAAL to tell the new digits apart.
    """
    y = digits.tensors[1].numpy()
    rng = np.random.default_rng(0)
    pool = ActivePool(digits)
    pool.label(rng.choice(np.flatnonzero(y < 5), 300, replace=False))
    assert (y[pool.unlabeled_indices] >= 5).mean() == pytest.approx(0.60, abs=0.01)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    sampler = AdversarialSampler(
        representation="raw",
        vae_channels=16,
        epochs=3,
        lr=2e-3,
        inference={"device": "cpu"},
        random_state=0,
    )
    picked = sampler.select(model, pool, 100)
    assert (y[picked] >= 5).mean() > 0.72  # random: 0.60 +- 0.05


def test_raw_takes_the_lowest_discriminator_output(digits_pool, monkeypatch):
    pool, model = digits_pool
    seen = {}
    score = vaal._VAALSelector.score

    def spy(self, x, chunk):
        seen["scores"] = out = score(self, x, chunk)
        return out

    monkeypatch.setattr(vaal._VAALSelector, "score", spy)
    picked = AdversarialSampler(inference={"device": "cpu"}, random_state=0, **RAW).select(
        model, pool, 10
    )
    order = np.argsort(seen["scores"].numpy(), kind="stable")[:10]
    np.testing.assert_array_equal(picked, pool.unlabeled_indices[order])


@pytest.mark.slow
def test_raw_follows_vaal_schedule(digits_pool, monkeypatch):
    pool, model = digits_pool
    calls = {"vae": 0, "disc": 0}
    vae_obj, disc_obj = (
        vaal._VAALSelector.vae_objective,
        vaal._VAALSelector.discriminator_objective,
    )

    def count_vae(self, x_l, x_u):
        calls["vae"] += 1
        assert x_l.shape[0] == 32 and x_u.shape[0] == 32
        return vae_obj(self, x_l, x_u)

    def count_disc(self, x_l, x_u):
        calls["disc"] += 1
        return disc_obj(self, x_l, x_u)

    monkeypatch.setattr(vaal._VAALSelector, "vae_objective", count_vae)
    monkeypatch.setattr(vaal._VAALSelector, "discriminator_objective", count_disc)
    AdversarialSampler(
        representation="raw",
        vae_channels=4,
        epochs=2,
        selector_batch_size=32,
        inference={"device": "cpu"},
    ).select(model, pool, 5)
    iterations = 240 * 2 // 32  # VAAL: n_items * epochs // batch
    assert calls == {"vae": 2 * iterations, "disc": iterations}


@pytest.mark.slow
def test_raw_objectives_train_one_network_each():
    cfg = AdversarialSampler(**RAW).resolve()._vaal_config()
    sel = vaal._VAALSelector(cfg, 1, (8, 8), torch.device("cpu"), np.random.default_rng(0))
    x_l, x_u = torch.rand(4, 1, 8, 8), torch.rand(5, 1, 8, 8)
    loss, parts = sel.vae_objective(x_l, x_u)
    loss.backward()
    assert set(parts) == {"representation", "vae_adversarial"}
    assert all(p.grad is not None for p in sel.vae.parameters())
    assert all(p.grad is None for p in sel.discriminator.parameters())
    sel.vae.zero_grad(set_to_none=True)
    loss, _ = sel.discriminator_objective(x_l, x_u)
    loss.backward()
    assert all(p.grad is not None for p in sel.discriminator.parameters())
    assert all(p.grad is None for p in sel.vae.parameters())


@pytest.mark.slow
def test_raw_on_mnist_sized_and_channel_less_images():
    x = torch.rand(60, 28, 28)  # (N, H, W): a channel axis is added
    pool = ActivePool(TensorDataset(x, torch.arange(60) % 3))
    pool.label(np.arange(20))
    model = nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 3))
    seen = []
    picked = AdversarialSampler(
        inference={"device": "cpu"}, random_state=0, progress=lambda e, d: seen.append(d), **RAW
    ).select(model, pool, 6)
    assert picked.shape == (6,)
    assert set(seen[0]) == {"representation", "vae_adversarial", "discriminator"}


def test_raw_needs_images():
    pool = ActivePool(TensorDataset(torch.randn(30, 5), torch.arange(30) % 2))
    pool.label(np.arange(10))
    model = nn.Sequential(nn.Linear(5, 2))
    with pytest.raises(ValueError, match="needs image inputs"):
        AdversarialSampler(inference={"device": "cpu"}, **RAW).select(model, pool, 3)
    empty = ActivePool(TensorDataset(torch.rand(30, 1, 8, 8), torch.arange(30) % 2))
    with pytest.raises(ValueError, match="The pool has no labeled item"):
        AdversarialSampler(inference={"device": "cpu"}, **RAW).select(model, empty, 3)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"representation": "pixels"}, ValueError, r"`representation` to be one of \['features'"),
        ({"representation": None}, TypeError, "Expected argument `representation` to be a str"),
        ({"beta": -1}, ValueError, "Expected argument `beta` to be >= 0"),
        ({"adversary_param": "x"}, TypeError, "`adversary_param` to be a real number"),
        ({"lr": -1.0}, ValueError, "Expected argument `lr` to be > 0"),
        ({"epochs": 0.0}, ValueError, "Expected argument `epochs` to be > 0"),
        ({"selector_batch_size": 0}, ValueError, "`selector_batch_size` to be >= 1"),
        ({"vae_steps": 0}, ValueError, "Expected argument `vae_steps` to be >= 1"),
        ({"discriminator_steps": 1.5}, TypeError, "`discriminator_steps` to be an integer"),
        ({"vae_channels": 0}, ValueError, "Expected argument `vae_channels` to be >= 1"),
        ({"hidden": "512"}, TypeError, "Expected argument `hidden` to be a sequence"),
        ({"latent_dim": 0}, ValueError, "Expected argument `latent_dim` to be >= 1"),
        ({"standardize": 1}, TypeError, "Expected argument `standardize` to be a bool"),
        ({"progress": "log"}, TypeError, "Expected argument `progress` to be a bool, a callable"),
    ],
)
def test_bad_arguments(digits_pool, kwargs, exc, match):
    pool, model = digits_pool
    with pytest.raises(exc, match=match):
        AdversarialSampler(inference={"device": "cpu"}, **kwargs).select(model, pool, 3)


# ------------------------------------------------------------------- score


@pytest.mark.parametrize("representation", ["features", "raw"])
@pytest.mark.slow
def test_score_is_what_select_ranks(digits_pool, representation):
    pool, model = digits_pool
    # The features form forms its batch by k-center (AALU's default); top-k is what ranks.
    features = {"epochs": 1, "min_iterations": 0, "batch": "topk", **NETS}
    kw = RAW if representation == "raw" else features
    make = lambda: AdversarialSampler(inference={"device": "cpu"}, random_state=2, **kw)  # noqa: E731
    scores = make().score(model, pool)
    unl = pool.unlabeled_indices
    assert scores.shape == unl.shape
    order = np.lexsort((unl, -scores))
    np.testing.assert_array_equal(make().select(model, pool, 10), unl[order[:10]])
    np.testing.assert_array_equal(make().score(model, pool, unl[[5, 1]]), scores[[5, 1]])


@pytest.mark.slow
def test_vaal_refuses_nan_and_never_ranks_it_first(digits_pool, monkeypatch):
    """VAAL picks the lowest D(mu): a NaN logit is refused, naming the items; behind the
    refusal it is the least informative, ranked last."""
    pool, model = digits_pool
    n = pool.n_unlabeled
    logits = torch.arange(n, dtype=torch.float32)  # lowest first: positions 0, 1, 2, ...
    logits[[0, 1]] = float("nan")
    monkeypatch.setattr(vaal._VAALSelector, "score", lambda self, x, chunk: logits.clone())
    unl = pool.unlabeled_indices

    def make():
        return AdversarialSampler(inference={"device": "cpu"}, random_state=0, **RAW)

    with pytest.raises(ValueError, match="Non-finite values") as err:
        make().select(model, pool, 3)
    named = f"selector scores of 2 item(s), dataset indices {unl[[0, 1]].tolist()}"
    assert named in str(err.value)
    lift_finite_policy(monkeypatch)
    np.testing.assert_array_equal(make().select(model, pool, 3), unl[[2, 3, 4]])


# ------------------------------------------------------------ one set of defaults


def test_features_form_is_aalu_advvae_with_aalus_defaults():
    resolved = AdversarialSampler(representation="features").resolve()
    assert isinstance(resolved, AALUSampler)
    advvae = AALUSampler(variant="advVAE")
    assert resolved.get_params(deep=False) == advvae.get_params(deep=False)
    assert resolved._validate_params()["min_iterations"] == 1000  # the floor is kept
    assert resolved._validate_params()["batch"] == "kcenter"
    # VAAL's names map onto AALU's: beta is the KL weight, adversary_param the adversarial one.
    mapped = AdversarialSampler(beta=0.5, adversary_param=2.0, discriminator_steps=3).resolve()
    assert (mapped.kl_weight, mapped.beta, mapped.assistant_steps) == (0.5, 2.0, 3)


def test_features_form_picks_what_aalu_advvae_picks_with_the_floor():
    pool, model, _ = novel_cluster_pool(seed=3, per=20, n_labeled=10)
    common = {"inference": {"device": "cpu"}, "random_state": 5, **NETS}
    ours = AdversarialSampler(epochs=1, **common).select(model, pool, 8)
    theirs = AALUSampler(variant="advVAE", epochs=1, **common).select(model, pool, 8)
    np.testing.assert_array_equal(ours, theirs)


def test_raw_form_is_vaal_with_vaals_defaults():
    from aalearn.samplers.vaal import VAALSampler

    resolved = AdversarialSampler(representation="raw").resolve()
    assert isinstance(resolved, VAALSampler)
    assert resolved.get_params(deep=False) == VAALSampler().get_params(deep=False)
    p = resolved._validate_params()
    assert (p["vae_steps"], p["discriminator_steps"], p["min_iterations"]) == (2, 1, 0)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [({"representation": "raw", "batch": "topk"}, "batch"), ({"vae_channels": 8}, "vae_channels")],
)
def test_a_parameter_of_the_other_form_is_refused(digits_pool, kwargs, name):
    pool, model = digits_pool
    with pytest.raises(ValueError, match=f"`{name}` to be left at its default with representation"):
        AdversarialSampler(inference={"device": "cpu"}, **kwargs).select(model, pool, 3)
