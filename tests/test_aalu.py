"""AALUSampler: the paper's Algorithm 1, its Table 1 variants, and the sampler contract."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn
from torch.utils.data import TensorDataset

from aalearn import ActivePool
from aalearn.inference import collect
from aalearn.samplers._selector import (
    _FeatureData,
    _FeatureSelector,
    _FeatureSelectorConfig,
)
from aalearn.samplers._training import _epoch_schedule, _IndexStream, _TrainingConfig
from aalearn.samplers.aalu import (
    AALU_VARIANTS,
    DEFAULT_MIN_ITERATIONS,
    PAPER_SETTINGS,
    AALUSampler,
)

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")),
]
# Small networks and a larger learning rate than the paper's 5e-4, so that a few
# hundred steps suffice on the tiny synthetic pools; no floor on the iterations.
NETS = {"hidden": (64, 32), "lr": 2e-3}
FAST = {**NETS, "min_iterations": 0}
#: The paper's plain top-k, for the tests of what the scores rank.
TOPK = {**FAST, "batch": "topk"}


def novel_cluster_pool(seed: int = 0, dim: int = 16, per: int = 80, n_labeled: int = 20):
    """Four Gaussian clusters; the labeled items cover clusters 0-2, cluster 3 is novel.

    The task model is ``Identity -> Linear``: its feature vector is the input. It is
    trained on the labeled items, as AALU assumes.
    """
    g = torch.Generator().manual_seed(seed)
    centers = torch.randn(4, dim, generator=g) * 4
    x = torch.cat([centers[k] + torch.randn(per, dim, generator=g) for k in range(4)])
    y = torch.arange(4).repeat_interleave(per)
    pool = ActivePool(TensorDataset(x, y))
    labeled = np.concatenate([np.arange(k * per, k * per + n_labeled) for k in range(3)])
    pool.label(labeled)
    model = nn.Sequential(nn.Identity(), nn.Linear(dim, 4))
    with torch.no_grad():
        model[1].weight.copy_(0.1 * torch.randn(4, dim, generator=g))
        model[1].bias.zero_()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(50):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[labeled]), y[labeled]).backward()
        opt.step()
    return pool, model, y.numpy()


def loss_pool(seed: int = 0):
    """Labels are a function of the input, so the task loss is one too (A can learn it)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(400, 8, generator=g)
    y = (x[:, 0] > 0).long()
    model = nn.Sequential(nn.Identity(), nn.Linear(8, 2))
    with torch.no_grad():
        model[1].weight.zero_()
        model[1].bias.zero_()
        model[1].weight[1, :2] = torch.tensor([2.0, 1.5])
    pool = ActivePool(TensorDataset(x, y))
    pool.label(np.arange(200))
    return pool, model


@pytest.fixture(scope="module")
def small():
    return novel_cluster_pool(seed=1, per=30, n_labeled=10)


# ------------------------------------------------------------------- variants


def test_variant_table_matches_the_paper():
    assert list(AALU_VARIANTS) == [
        "advVAE",
        "advVAE+prediction",
        "lossLearn",
        "advVAE+lossLearn",
        "aalu",
    ]
    assert AALUSampler().switches == {
        "use_adversarial": True,
        "use_predictions": True,
        "use_ranking": True,
    }
    assert AALUSampler(variant="advVAE").switches == {
        "use_adversarial": True,
        "use_predictions": False,
        "use_ranking": False,
    }
    assert AALUSampler(variant="ADVVAE+LOSSLEARN").switches == AALU_VARIANTS["advVAE+lossLearn"]
    # switches override the preset one by one
    assert (
        AALUSampler(variant="advVAE", use_ranking=True).switches
        == AALU_VARIANTS["advVAE+lossLearn"]
    )
    assert (
        AALUSampler(variant="aalu", use_predictions=False).switches
        == AALU_VARIANTS["advVAE+lossLearn"]
    )


@pytest.mark.parametrize("variant", list(AALU_VARIANTS))
def test_every_table1_variant_selects_by_name(small, variant):
    pool, model, _ = small
    picked = AALUSampler(
        variant=variant, epochs=2, inference={"device": "cpu"}, random_state=0, **FAST
    ).select(model, pool, 7)
    assert picked.dtype == np.int64 and picked.shape == (7,)
    assert np.unique(picked).size == 7 and not pool.labeled_mask[picked].any()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("variant", ["advVAE", "aalu"])
@pytest.mark.slow
def test_picks_the_novel_cluster(variant, device):
    pool, model, y = novel_cluster_pool(seed=0)
    sampler = AALUSampler(
        variant=variant, epochs=80, inference={"device": device}, random_state=0, **TOPK
    )
    picked = sampler.select(model.to(device), pool, 30)
    assert (y[picked] == 3).mean() > 0.7


@pytest.mark.parametrize("device", DEVICES)
def test_loss_learning_alone_ranks_by_task_loss(device):
    pool, model = loss_pool(seed=0)
    model = model.to(device)
    sampler = AALUSampler(
        variant="lossLearn", epochs=30, inference={"device": device}, random_state=0, **TOPK
    )
    # Every unlabeled item (never seen by A), best first.
    order = sampler.select(model, pool, pool.n_unlabeled)
    losses = collect(model, pool.dataset, order, probs=False, losses=True, device=device).losses
    rho = spearmanr(-np.arange(order.size), losses.cpu().numpy())[0]
    assert rho > 0.5


# ------------------------------------------------------------------- contract


def _snapshot(model, pool):
    return (
        {k: v.clone() for k, v in model.state_dict().items()},
        [m.training for m in model.modules()],
        pool.state_dict(),
    )


@pytest.mark.parametrize("device", DEVICES)
def test_contract(small, device):
    pool, model, _ = small
    model = copy.deepcopy(model).to(device)
    model.train()
    model[1].eval()
    params, flags, state = _snapshot(model, pool)
    rng_state = torch.random.get_rng_state()

    def make(seed, **kw):
        return AALUSampler(
            epochs=3, inference={"device": device}, random_state=seed, **{**FAST, **kw}
        )

    picked = make(5).select(model, pool, 20)
    assert picked.dtype == np.int64 and picked.shape == (20,)
    assert np.unique(picked).size == 20 and not pool.labeled_mask[picked].any()
    np.testing.assert_array_equal(make(5).select(model, pool, 20), picked)
    assert not np.array_equal(make(6).select(model, pool, 20), picked)
    # Training does not depend on the budget: the top-k and round-robin batches of a
    # smaller budget are a prefix (the default k-center batch is not: its candidates
    # are the 4 * budget best).
    for batch in ("topk", "per_class"):
        ranked = make(5, batch=batch).select(model, pool, 20)
        np.testing.assert_array_equal(make(5, batch=batch).select(model, pool, 5), ranked[:5])

    new_params, new_flags, new_state = _snapshot(model, pool)
    assert new_flags == flags
    for k in params:
        assert torch.equal(new_params[k], params[k])
    for k in state:
        np.testing.assert_array_equal(np.asarray(new_state[k]), np.asarray(state[k]))
    assert torch.equal(torch.random.get_rng_state(), rng_state)


def test_generator_random_state_advances(small):
    pool, model, _ = small
    sampler = AALUSampler(
        epochs=1, inference={"device": "cpu"}, random_state=np.random.default_rng(0), **FAST
    )
    first, second = sampler.select(model, pool, 10), sampler.select(model, pool, 10)
    assert not np.array_equal(first, second)


def test_progress_reports_each_epoch(small):
    pool, model, _ = small
    seen: list[tuple[int, dict[str, float]]] = []
    AALUSampler(
        epochs=2.5,  # 120 items / 32 per batch: iterations 3, 4 and 2 (9 = 120 * 2.5 // 32)
        selector_batch_size=32,
        inference={"device": "cpu"},
        random_state=0,
        progress=lambda e, d: seen.append((e, d)),
        **FAST,
    ).select(model, pool, 3)
    assert [e for e, _ in seen] == [1, 2, 3]
    keys = {"representation", "vae_adversarial", "assistant_adversarial", "ranking"}
    assert all(set(d) == keys for _, d in seen)
    assert all(isinstance(v, float) and math.isfinite(v) for _, d in seen for v in d.values())

    seen.clear()
    AALUSampler(
        variant="lossLearn",
        epochs=1,
        min_iterations=0,
        inference={"device": "cpu"},
        random_state=0,
        progress=lambda e, d: seen.append((e, d)),
    ).select(model, pool, 3)
    assert [set(d) for _, d in seen] == [{"ranking"}]


def test_options(small):
    pool, model, _ = small
    for kwargs in (
        {"standardize": False},
        {"inference": {"device": "cpu", "feature_layer": "1"}},
        {"latent_dim": 4},
    ):
        picked = AALUSampler(
            epochs=1, **{"inference": {"device": "cpu"}, "random_state": 0, **FAST, **kwargs}
        ).select(model, pool, 4)
        assert picked.shape == (4,)
    with pytest.raises(ValueError, match="Expected argument `feature_layer` to name a module"):
        AALUSampler(epochs=1, inference={"feature_layer": "nope", "device": "cpu"}, **FAST).select(
            model, pool, 4
        )


# -------------------------------------------------------------------- machinery


def test_epoch_schedule_follows_vaal():
    counts = _epoch_schedule(50_000, 100, 128)
    assert len(counts) == 100 and sum(counts) == 50_000 * 100 // 128
    assert set(counts) <= {390, 391}
    assert _epoch_schedule(1000, 2.5, 100) == [10, 10, 5]
    assert sum(_epoch_schedule(10, 1, 128)) == 1  # at least one iteration


def test_index_stream_covers_each_pass_without_repeats():
    stream = _IndexStream(10, 4, torch.Generator().manual_seed(0), torch.device("cpu"))
    first_pass = torch.cat([stream.next(), stream.next()])
    assert first_pass.unique().numel() == 8  # drop_last: 2 of 10 wait for the next pass
    assert _IndexStream(3, 128, torch.Generator(), torch.device("cpu")).next().numel() == 3


def _selector(**switches) -> tuple[_FeatureSelector, _FeatureData]:
    cfg = _FeatureSelectorConfig(
        **switches,
        adversarial_weight=1.0,
        kl_weight=1.0,
        xi=0.1,
        ranking_weight=10.0,
        latent_dim=4,
        hidden=(16,),
        standardize=True,
        training=_TrainingConfig(lr=1e-3, batch_size=8, epochs=1),
    )
    sel = _FeatureSelector(cfg, 6, 3, torch.device("cpu"), np.random.default_rng(0))
    g = torch.Generator().manual_seed(0)
    data = _FeatureData(
        torch.randn(8, 6, generator=g),
        torch.randn(8, 6, generator=g),
        torch.rand(8, 3, generator=g).softmax(1),
        torch.rand(8, 3, generator=g).softmax(1),
        torch.rand(8, generator=g),
    )
    return sel, data


def test_vae_step_trains_only_the_vae_and_a_step_only_a():
    sel, data = _selector(use_adversarial=True, use_predictions=True, use_ranking=True)
    assert sel.vae is not None
    batch = data.batch(torch.arange(8), torch.arange(8))
    loss, parts = sel.vae_objective(batch)
    loss.backward()
    assert set(parts) == {"representation", "vae_adversarial"}
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in sel.vae.parameters())
    assert all(p.grad is None for p in sel.assistant.parameters())
    assert all(p.requires_grad for p in sel.assistant.parameters())  # restored

    sel.vae.zero_grad(set_to_none=True)
    loss, parts = sel.assistant_objective(batch)
    loss.backward()
    assert set(parts) == {"assistant_adversarial", "ranking"}
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in sel.assistant.parameters())
    assert all(p.grad is None for p in sel.vae.parameters())


def test_loss_learning_has_no_vae_and_reads_features():
    sel, data = _selector(use_adversarial=False, use_predictions=False, use_ranking=True)
    assert sel.vae is None and sel.assistant.in_features == 6
    loss, parts = sel.assistant_objective(data.batch(torch.arange(8), None))
    assert set(parts) == {"ranking"} and loss.ndim == 0
    sel, _ = _selector(use_adversarial=True, use_predictions=True, use_ranking=False)
    assert sel.assistant.in_features == 4 + 3  # m = [z, p]


# ------------------------------------------------------------------------ errors


def test_needs_labeled_items():
    x, y = torch.randn(20, 4), torch.arange(20) % 2
    pool = ActivePool(TensorDataset(x, y))
    model = nn.Sequential(nn.Identity(), nn.Linear(4, 2))
    with pytest.raises(ValueError, match="The pool has no labeled item"):
        AALUSampler(variant="advVAE", inference={"device": "cpu"}).select(model, pool, 2)
    pool.label([0])
    with pytest.raises(ValueError, match="needs at least 2 labeled item"):
        AALUSampler(inference={"device": "cpu"}).select(model, pool, 2)


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"variant": "vaal"}, ValueError, r"Expected argument `variant` to be one of \["),
        ({"variant": 3}, TypeError, "Expected argument `variant` to be a str"),
        ({"use_ranking": 1}, TypeError, "Expected argument `use_ranking` to be a bool or None"),
        (
            {"variant": "advVAE", "use_adversarial": False},
            ValueError,
            "`use_adversarial` or `use_ranking`",
        ),
        ({"beta": -1.0}, ValueError, r"Expected argument `beta` to be >= 0"),
        ({"beta": "1"}, TypeError, "Expected argument `beta` to be a real number"),
        ({"xi": -0.1}, ValueError, "Expected argument `xi` to be >= 0"),
        ({"ranking_weight": float("nan")}, ValueError, "`ranking_weight` to be finite"),
        ({"lr": 0.0}, ValueError, r"Expected argument `lr` to be > 0"),
        ({"selector_batch_size": 1}, ValueError, "`selector_batch_size` to be >= 2"),
        ({"epochs": 0}, ValueError, r"Expected argument `epochs` to be > 0"),
        ({"latent_dim": 2.0}, TypeError, "Expected argument `latent_dim` to be an integer"),
        ({"hidden": 64}, TypeError, "Expected argument `hidden` to be a sequence"),
        ({"hidden": ()}, ValueError, "Expected argument `hidden` to hold at least one"),
        ({"hidden": (8, 0)}, ValueError, "Expected argument `hidden` to be >= 1"),
        ({"standardize": "yes"}, TypeError, "Expected argument `standardize` to be a bool"),
        (
            {"inference": {"device": "cpu", "feature_layer": 3}},
            TypeError,
            "Expected argument `feature_layer` to be a str or None",
        ),
        ({"progress": 1}, TypeError, "Expected argument `progress` to be a bool, a callable"),
        ({"min_iterations": -1}, ValueError, "Expected argument `min_iterations` to be >= 0"),
        ({"batch": "random"}, ValueError, r"Expected argument `batch` to be one of \['topk'"),
        ({"batch": 1}, TypeError, "Expected argument `batch` to be a str"),
        ({"ties": "minus"}, ValueError, r"Expected argument `ties` to be one of \['zero'"),
        (
            {"inference": {"device": "cpu", "batch_size": 0}},
            ValueError,
            "Expected argument `batch_size` to be >= 1",
        ),
    ],
)
def test_bad_arguments(small, kwargs, exc, match):
    pool, model, _ = small
    sampler = AALUSampler(**{"inference": {"device": "cpu"}, **kwargs})
    with pytest.raises(exc, match=match):
        sampler.select(model, pool, 3)


def test_repr_shows_configuration():
    assert repr(AALUSampler(variant="lossLearn", epochs=5)) == (
        "AALUSampler(variant='lossLearn', epochs=5)"
    )


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA")
def test_cuda_graph_training_matches_eager(monkeypatch):
    import warnings

    from aalearn.samplers import _selector as selector_module

    pool, model, y = novel_cluster_pool(seed=0)
    model = model.to("cuda")

    def run():
        seen: list[dict[str, float]] = []
        sampler = AALUSampler(
            epochs=80, device="cuda", random_state=0, progress=lambda e, d: seen.append(d), **TOPK
        )
        return sampler.select(model, pool, 30), seen

    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # a failed capture warns
        graphed, graphed_losses = run()
    monkeypatch.setattr(selector_module, "_CUDA_GRAPHS", False)
    eager, eager_losses = run()
    assert len(set(graphed) & set(eager)) >= 27
    assert (y[graphed] == 3).mean() > 0.7
    for a, b in zip(graphed_losses, eager_losses):
        assert a.keys() == b.keys()
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-3, abs=1e-4)


# ------------------------------------------------- schedule, batch, score, ties


def test_schedule_floor_only_acts_on_small_pools():
    # digits: 100 epochs of 1,437 items are 1,122 iterations, above the default floor
    assert sum(_epoch_schedule(1437, 100, 128)) == 1437 * 100 // 128 == 1122
    assert _epoch_schedule(1437, 100, 128, DEFAULT_MIN_ITERATIONS) == _epoch_schedule(
        1437, 100, 128
    )
    # a pool of 500: 100 epochs are 390 iterations; the floor raises them to 1,000
    counts = _epoch_schedule(500, 100, 128, min_iterations=DEFAULT_MIN_ITERATIONS)
    assert DEFAULT_MIN_ITERATIONS == 1000
    assert sum(counts) == 1000 and len(counts) == 256 and set(counts[:-1]) <= {3, 4}
    # a higher floor raises digits' schedule: 1,800 iterations in 161 epochs
    counts = _epoch_schedule(1437, 100, 128, min_iterations=1800)
    assert sum(counts) == 1800 and len(counts) == 161 and set(counts[:-1]) <= {11, 12}
    # CIFAR-10's 39,062 iterations are above the floor: unchanged
    assert _epoch_schedule(50_000, 100, 128, 1000) == _epoch_schedule(50_000, 100, 128)


def test_paper_configuration_is_one_name_away():
    paper = AALUSampler.paper()
    params = paper.get_params()
    assert {k: params[k] for k in PAPER_SETTINGS} == PAPER_SETTINGS
    assert (params["epochs"], params["min_iterations"], params["batch"]) == (100, 0, "topk")
    assert AALUSampler.paper("lossLearn", epochs=5).switches == AALU_VARIANTS["lossLearn"]
    assert AALUSampler.paper(epochs=5).epochs == 5
    default = AALUSampler()
    assert (default.min_iterations, default.batch, default.ties) == (1000, "kcenter", "zero")


def test_score_is_what_select_ranks(small):
    pool, model, _ = small

    def make(**kw):
        return AALUSampler(epochs=2, inference={"device": "cpu"}, random_state=3, **TOPK, **kw)

    flags = [m.training for m in model.modules()]
    scores = make().score(model, pool)
    unl = pool.unlabeled_indices
    assert scores.shape == unl.shape and scores.dtype == np.float32
    assert [m.training for m in model.modules()] == flags
    order = np.lexsort((unl, -scores))  # best first, ties by the smaller index
    np.testing.assert_array_equal(make().select(model, pool, 15), unl[order[:15]])
    # aligned with the indices asked for, in their order
    some = unl[[7, 2, 30]]
    np.testing.assert_array_equal(make().score(model, pool, some), scores[[7, 2, 30]])
    with pytest.raises(ValueError, match="Expected argument `indices` to hold unlabeled"):
        make().score(model, pool, pool.labeled_indices[:2])


def test_per_class_batch_is_a_round_robin_over_predicted_classes(small, monkeypatch):
    from aalearn.samplers import _selector

    pool, model, _ = small
    unl = pool.unlabeled_indices
    n = unl.size
    # Scores that fall with the position: the ranking is the unlabeled order itself.
    monkeypatch.setattr(
        _selector._FeatureSelector,
        "score",
        lambda self, f, p: -torch.arange(n, dtype=torch.float32),
    )
    picked = AALUSampler(
        epochs=1, batch="per_class", inference={"device": "cpu"}, random_state=0, **FAST
    ).select(model, pool, 9)
    pred = collect(model, pool.dataset, unl, device="cpu").probs.argmax(1).numpy()
    # by hand: round r takes the r-th best item of every predicted class, in rank order
    rounds = [[i for i in range(n) if (pred[:i] == pred[i]).sum() == r] for r in range(n)]
    expected = unl[[i for r in rounds for i in r][:9]]
    np.testing.assert_array_equal(picked, expected)
    assert len(set(pred[np.searchsorted(unl, picked[:3])])) == 3  # the first round: 3 classes
    # the paper's top-k is the plain ranking
    topk = AALUSampler(epochs=1, inference={"device": "cpu"}, random_state=0, **TOPK).select(
        model, pool, 9
    )
    np.testing.assert_array_equal(topk, unl[:9])


def test_kcenter_batch_spreads_the_top_candidates(small, monkeypatch):
    from aalearn.samplers import _selector

    pool, model, y = small
    unl = pool.unlabeled_indices
    cls = y[unl]
    # The 20 best (4 * budget): 15 items of the labeled cluster 0 first, then 5 of the
    # novel cluster 3; every other item scores lower.
    scores = torch.full((unl.size,), -1.0)
    first0, first3 = np.flatnonzero(cls == 0)[:15], np.flatnonzero(cls == 3)[:5]
    scores[first0] = torch.arange(100.0, 85.0, -1.0)
    scores[first3] = torch.arange(50.0, 45.0, -1.0)
    monkeypatch.setattr(_selector._FeatureSelector, "score", lambda self, f, p: scores.clone())
    kw = {"epochs": 1, "inference": {"device": "cpu"}, "random_state": 0, **FAST}
    picked = AALUSampler(batch="kcenter", **kw).select(model, pool, 5)
    assert np.unique(picked).size == 5
    assert set(picked) <= set(unl[np.concatenate([first0, first3])])
    assert 3 in set(y[picked])  # k-center reaches the cluster no labeled item covers
    topk = AALUSampler(batch="topk", **kw).select(model, pool, 5)
    assert set(y[topk]) == {0}
    # 3 x budget candidates are 15 items of cluster 0: the novel cluster is out of reach
    narrow = AALUSampler(batch="kcenter", kcenter_candidates=3, **kw).select(model, pool, 5)
    assert set(narrow) <= set(unl[first0]) and np.unique(narrow).size == 5
    # one candidate per pick: the top-k set, in k-center's order
    one = AALUSampler(batch="kcenter", kcenter_candidates=1, **kw).select(model, pool, 5)
    assert set(one) == set(topk)


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [(0.5, ValueError, r"`kcenter_candidates` to be >= 1"), ("4", TypeError, "real number")],
)
def test_kcenter_candidates_is_validated_before_anything_runs(small, value, error, message):
    pool, model, _ = small
    before = pool.labeled_indices.copy()
    with pytest.raises(error, match=message):
        AALUSampler(kcenter_candidates=value, epochs=1, **FAST).select(model, pool, 3)
    np.testing.assert_array_equal(pool.labeled_indices, before)


def lift_finite_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    """Turn :func:`aalearn._finite.check_finite` into a no-op wherever aalearn imported it.

    So that a test can reach the ranking that the non-finite policy guards.
    """
    import sys

    from aalearn import _finite

    original = _finite.check_finite
    for name, module in list(sys.modules.items()):
        if name.startswith("aalearn") and getattr(module, "check_finite", None) is original:
            monkeypatch.setattr(module, "check_finite", lambda *args, **kwargs: None)


def test_nan_scores_are_refused_and_never_ranked_first(small, monkeypatch):
    """NaN scores are refused, naming the items; behind the refusal, the order puts NaN last.

    One order for every sampler: NaN last (torch.sort put it first).
    """
    from aalearn.samplers import _selector

    pool, model, _ = small
    n = pool.n_unlabeled
    scores = torch.arange(n, dtype=torch.float32)
    scores[[n - 1, 0]] = float("nan")  # the best position and the worst
    monkeypatch.setattr(_selector._FeatureSelector, "score", lambda self, f, p: scores.clone())
    unl = pool.unlabeled_indices
    before = pool.state_dict()

    def make():
        return AALUSampler(epochs=1, inference={"device": "cpu"}, random_state=0, **TOPK)

    with pytest.raises(ValueError, match="Non-finite values") as err:
        make().select(model, pool, 3)
    named = f"selector scores of 2 item(s), dataset indices {[int(unl[0]), int(unl[n - 1])]}"
    assert named in str(err.value)
    for key, value in before.items():
        np.testing.assert_array_equal(np.asarray(pool.state_dict()[key]), np.asarray(value))
    lift_finite_policy(monkeypatch)
    np.testing.assert_array_equal(make().select(model, pool, 3), unl[[n - 2, n - 3, n - 4]])
    # every item: the two NaN last, the smaller dataset index first among them
    everything = make().select(model, pool, n)
    np.testing.assert_array_equal(everything[-2:], unl[[0, n - 1]])


@pytest.mark.parametrize("ties", ["zero", "not_greater"])
def test_ties_option_reaches_the_ranking_loss(small, ties, monkeypatch):
    from aalearn.samplers import _selector

    seen: list[str] = []
    real = _selector.ranking_loss

    def spy(scores, losses, margin, *, ties):
        seen.append(ties)
        return real(scores, losses, margin, ties=ties)

    monkeypatch.setattr(_selector, "ranking_loss", spy)
    pool, model, _ = small
    AALUSampler(
        variant="lossLearn", epochs=1, ties=ties, inference={"device": "cpu"}, **FAST
    ).select(model, pool, 3)
    assert seen and set(seen) == {ties}
