"""The checks of :func:`aalearn.testing.check_sampler`, in the order they run."""

from __future__ import annotations

import re
from typing import Any, Callable

import numpy as np

from aalearn.pool import ActivePool
from aalearn.samplers.base import Sampler
from aalearn.testing._setup import BUDGET, POISONED, Context, global_seeds, init_params

#: Bad budgets: (budget, error, message pattern); ``None`` stands for ``n_unlabeled + 1``.
BAD_BUDGETS: list[tuple[Any, type[Exception], str]] = [
    (-1, ValueError, r"Expected argument `budget` to be >= 0, but got -1\."),
    (
        None,
        ValueError,
        r"`budget` to be at most the number of unlabeled items \({n}\), but got {n1}",
    ),
    (1.5, TypeError, r"Expected argument `budget` to be an integer, but got float"),
    (True, TypeError, r"Expected argument `budget` to be an integer, but got bool"),
]
_NAMED = re.compile(r"of (\d+) item\(s\), dataset indices \[([0-9, ]*)\]")


def _expect_picks(
    ctx: Context, check: str, what: str, picked: Any, budget: int, pool: ActivePool
) -> None:
    ctx.expect(
        isinstance(picked, np.ndarray) and picked.dtype == np.int64 and picked.ndim == 1,
        check,
        lambda: (
            f"{what} returned {type(picked).__name__} {getattr(picked, 'dtype', '')}"
            f"{getattr(picked, 'shape', '')}, not a 1-D int64 NumPy array"
        ),
    )
    ctx.expect(
        picked.shape == (budget,),
        check,
        lambda: f"{what} returned {picked.shape[0]} indices, not {budget}",
    )
    ctx.expect(np.unique(picked).size == budget, check, lambda: f"{what} returned repeated indices")
    ctx.expect(
        bool(((picked >= 0) & (picked < len(pool))).all()),
        check,
        lambda: f"{what} returned indices outside the pool: {picked.tolist()}",
    )
    ctx.expect(
        not pool.labeled_mask[picked].any(),
        check,
        lambda: f"{what} returned labeled indices: {picked[pool.labeled_mask[picked]].tolist()}",
    )


def _selecting(sampler: Any, model: Any, pool: Any, budget: Any) -> Callable[[], Any]:
    """``sampler.select(model, pool, budget)``, deferred (for :meth:`Context.call`)."""
    return lambda: sampler.select(model, pool, budget)


def check_select_output(ctx: Context) -> None:
    check, s, model, pool = "check_select_output", ctx.sampler, ctx.model, ctx.pool
    ctx.expect(
        isinstance(s, Sampler),
        check,
        lambda: "it has no select(model, pool, budget) method (aalearn.Sampler)",
    )
    _expect_picks(ctx, check, f"select(model, pool, {BUDGET})", ctx.reference(), BUDGET, pool)
    none = ctx.call(check, "select(model, pool, 0)", lambda: s.select(model, pool, 0))
    _expect_picks(ctx, check, "select(model, pool, 0)", none, 0, pool)
    n = pool.n_unlabeled
    what = f"select(model, pool, pool.n_unlabeled={n})"
    everything = ctx.call(check, what, lambda: s.select(model, pool, n))
    _expect_picks(ctx, check, what, everything, n, pool)
    if not ctx.requires_model:
        what = f"select(None, pool, {BUDGET}) (requires_model is False)"
        picked = ctx.call(check, what, lambda: s.select(None, pool, BUDGET))
        _expect_picks(ctx, check, what, picked, BUDGET, pool)


def check_bad_budget(ctx: Context) -> None:
    check, s, model, pool = "check_bad_budget", ctx.sampler, ctx.model, ctx.pool
    n = pool.n_unlabeled
    for budget, error, pattern in BAD_BUDGETS:
        if budget is None:
            budget, pattern = n + 1, pattern.format(n=n, n1=n + 1)
        what = f"select(model, pool, {budget!r})"
        err = ctx.call(check, what, _selecting(s, model, pool, budget), raises=error)
        if re.search(pattern, str(err)) is None:
            ctx.fail(
                check,
                f"{what} raised {type(err).__name__}({str(err)!r}), whose message does not "
                f"match {pattern!r} (BaseSampler's wording)",
            )


def check_bad_pool_and_model(ctx: Context) -> None:
    check, s, model, pool = "check_bad_pool_and_model", ctx.sampler, ctx.model, ctx.pool
    cases: list[tuple[str, Callable[[], Any], str]] = [
        (
            "select(model, pool.unlabeled_indices, 3)",
            lambda: s.select(model, pool.unlabeled_indices, 3),
            "Expected argument `pool` to be an aalearn.ActivePool",
        )
    ]
    if ctx.requires_model:
        cases.append(
            (
                "select('model', pool, 3)",
                lambda: s.select("model", pool, 3),
                "Expected argument `model` to be a torch.nn.Module",
            )
        )
    for what, fn, message in cases:
        err = ctx.call(check, what, fn, raises=TypeError)
        if message not in str(err):
            ctx.fail(check, f"{what} raised TypeError({str(err)!r}), not {message!r}")


def check_deterministic(ctx: Context) -> None:
    check, model, pool = "check_deterministic", ctx.model, ctx.pool
    reference = ctx.reference()
    sampler = ctx.fresh()
    for seed, budget, how in [
        (1, np.int64(BUDGET), "a fresh instance (budget as numpy.int64)"),
        (2, BUDGET, "the same instance again"),
    ]:
        with global_seeds(seed):
            what = f"select(model, pool, {BUDGET})"
            picked = ctx.call(check, what, _selecting(sampler, model, pool, budget))
        if not (isinstance(picked, np.ndarray) and np.array_equal(picked, reference)):
            ctx.fail(
                check,
                f"the same random_state gave other picks: {how}, under other global RNG "
                f"states, picked {np.asarray(picked).tolist()}, not {reference.tolist()}",
            )


def check_model_modes(ctx: Context) -> None:
    check, s, model, pool = "check_model_modes", ctx.sampler, ctx.model, ctx.pool
    flags = [m.training for m in model.modules()]
    model.eval()
    try:
        what = f"select(model, pool, {BUDGET}) with the model in eval mode"
        picked = ctx.call(check, what, lambda: s.select(model, pool, BUDGET))
    finally:
        for m, flag in zip(model.modules(), flags):
            m.training = flag
    _expect_picks(ctx, check, what, picked, BUDGET, pool)


def check_ranking(ctx: Context) -> None:
    if not getattr(ctx.sampler, "ranking", False):
        return
    check, model, pool, k = "check_ranking", ctx.model, ctx.pool, BUDGET // 2
    reference = ctx.reference()
    sampler = ctx.fresh()
    picked = ctx.call(check, f"select(model, pool, {k})", lambda: sampler.select(model, pool, k))
    ctx.expect(
        np.array_equal(picked, reference[:k]),
        check,
        lambda: (
            f"select(model, pool, {k}) picked {np.asarray(picked).tolist()}, not the first "
            f"{k} of select(model, pool, {BUDGET}): {reference.tolist()} (the `ranking` flag says "
            "that a smaller budget gives a prefix)"
        ),
    )


def check_score(ctx: Context) -> None:
    # The capability flag of BaseSampler; a duck-typed sampler scores if it has the method.
    if not getattr(ctx.sampler, "has_score", callable(getattr(ctx.sampler, "score", None))):
        return
    check, model, pool = "check_score", ctx.model, ctx.pool
    unl = pool.unlabeled_indices
    scores = np.asarray(
        ctx.call(check, "score(model, pool)", lambda: ctx.fresh().score(model, pool))
    )
    ctx.expect(
        scores.shape == unl.shape and np.issubdtype(scores.dtype, np.floating),
        check,
        lambda: (
            f"score(model, pool) returned {scores.dtype}{scores.shape}, not one float per "
            f"unlabeled item {unl.shape}"
        ),
    )
    ctx.expect(
        bool(np.isfinite(scores).all()), check, lambda: "score(model, pool) returned non-finite"
    )
    # One finite score per item of a subset too (not always equal to the full pass's:
    # MC-dropout masks are drawn per batch, so BALD's depend on the batch's items).
    subset = unl[[5, 1, 0]]
    what = f"score(model, pool, {subset.tolist()})"
    some = np.asarray(ctx.call(check, what, lambda: ctx.fresh().score(model, pool, subset)))
    ctx.expect(
        some.shape == (3,) and bool(np.isfinite(some).all()),
        check,
        lambda: f"{what} returned {some.tolist()}, not 3 finite scores",
    )
    if getattr(ctx.sampler, "ranking", False):
        best = unl[np.lexsort((unl, -scores))[:BUDGET]]
        reference = ctx.reference()
        ctx.expect(
            np.array_equal(reference, best),
            check,
            lambda: (
                f"select(model, pool, {BUDGET}) picked {reference.tolist()}, not the highest "
                f"scores (ties to the smaller index): {best.tolist()}"
            ),
        )


def check_non_finite(ctx: Context) -> None:
    check, model, pool = "check_non_finite", ctx.model, ctx.poisoned_pool
    what = f"select(model, pool, {BUDGET}) on a pool whose items {POISONED} are NaN or inf"
    sampler = ctx.fresh()
    # The policy applies to model outputs and to embeddings computed from the inputs.
    if not (ctx.requires_model or getattr(sampler, "reads_inputs", False)):
        picked = ctx.call(check, what, lambda: sampler.select(model, pool, BUDGET), pool=pool)
        _expect_picks(ctx, check, what, picked, BUDGET, pool)
        return
    err = ctx.call(
        check, what, lambda: sampler.select(model, pool, BUDGET), pool=pool, raises=ValueError
    )
    text = str(err)
    named = _NAMED.search(text)
    ctx.expect(
        "Non-finite values" in text and named is not None,
        check,
        lambda: (
            f"{what} raised ValueError({text!r}), which does not name the items "
            "(the policy of aalearn._finite)"
        ),
    )
    assert named is not None
    shown = [int(v) for v in named.group(2).split(",") if v.strip()]
    if "scores" in text:  # a selector's scores of NaN inputs: any unlabeled items
        ctx.expect(
            bool(shown) and not pool.labeled_mask[shown].any(),
            check,
            lambda: f"{what} raised ValueError({text!r}), which names no unlabeled item",
        )
    else:  # model outputs: exactly the poisoned items
        ctx.expect(
            int(named.group(1)) == len(POISONED) and shown == POISONED[:5],
            check,
            lambda: (
                f"{what} raised ValueError({text!r}), which does not name the "
                f"{len(POISONED)} poisoned items {POISONED[:5]}, ..."
            ),
        )


def check_zero_labels(ctx: Context) -> None:
    """A pool with no labeled item: picks where ``needs_labels`` is False, else the refusal."""
    check, model, pool = "check_zero_labels", ctx.model, ctx.zero_pool
    sampler = ctx.fresh()
    needs = getattr(sampler, "needs_labels", None)
    if needs is None:  # a duck-typed sampler that does not say
        return
    what = f"select(model, pool, {BUDGET}) on a pool with no labeled item"
    if not needs:
        picked = ctx.call(check, what, lambda: sampler.select(model, pool, BUDGET), pool=pool)
        _expect_picks(ctx, check, what, picked, BUDGET, pool)
        if not ctx.requires_model:
            what = what.replace("(model", "(None")
            picked = ctx.call(check, what, lambda: sampler.select(None, pool, BUDGET), pool=pool)
            _expect_picks(ctx, check, what, picked, BUDGET, pool)
        return
    calls = [(what, lambda: sampler.select(model, pool, BUDGET))]
    if getattr(sampler, "has_score", False):
        calls.append(
            (
                "score(model, pool) on a pool with no labeled item",
                lambda: sampler.score(model, pool),
            )
        )
    for what, fn in calls:
        text = str(ctx.call(check, what, fn, pool=pool, raises=ValueError))
        if "no labeled item" not in text or "RandomSampler" not in text:
            ctx.fail(
                check,
                f"{what} raised ValueError({text!r}), which does not say that the pool has "
                "no labeled item and name the samplers that work from zero (needs_labels)",
            )


def check_params(ctx: Context) -> None:
    s = ctx.sampler
    if not (callable(getattr(s, "get_params", None)) and callable(getattr(s, "set_params", None))):
        return
    from sklearn.base import clone

    check, cls = "check_params", type(s)
    names = init_params(cls)
    params = s.get_params(deep=False)
    ctx.expect(
        sorted(params) == sorted(names),
        check,
        lambda: f"get_params(deep=False) gave {sorted(params)}, not __init__'s {sorted(names)}",
    )
    stored = [n for n in names if getattr(s, n, object()) is not params[n]]
    ctx.expect(not stored, check, lambda: f"get_params() does not return attributes {stored}")
    # BaseSampler.__init__ stores `inference` and `random_state` even for a subclass that
    # does not take them.
    extra = sorted(k for k in vars(ctx.fresh()) if k not in {*names, "inference", "random_state"})
    ctx.expect(
        not extra,
        check,
        lambda: (
            f"__init__ sets attributes {extra} besides its parameters (store the arguments "
            "unchanged; validate and derive in select)"
        ),
    )
    r = repr(s)
    ctx.expect(
        r.startswith(f"{cls.__name__}(") and r.endswith(")") and " object at 0x" not in r,
        check,
        lambda: f"the repr {r!r} does not read {cls.__name__}(<arguments>)",
    )
    try:
        twin = clone(s)
    except Exception as err:
        ctx.fail(check, f"sklearn.base.clone raised {err!r}")
    ctx.expect(
        type(twin) is cls and repr(twin) == r,
        check,
        lambda: f"sklearn.base.clone gave {twin!r}",
    )
    picked = ctx.call(check, "clone(s).select", lambda: twin.select(ctx.model, ctx.pool, BUDGET))
    ctx.expect(
        np.array_equal(picked, ctx.reference()) and repr(twin) == r,
        check,
        lambda: f"its clone picked {np.asarray(picked).tolist()} and reads {twin!r} after select",
    )
    ctx.expect(
        twin.set_params(**twin.get_params(deep=False)) is twin and repr(twin) == r,
        check,
        lambda: "set_params(**get_params(deep=False)) does not return self unchanged",
    )
    if "random_state" in names:
        twin.set_params(random_state=12345)
        ctx.expect(
            twin.get_params(deep=False)["random_state"] == 12345,
            check,
            lambda: "set_params(random_state=12345) did not set random_state",
        )
    before = repr(twin)
    try:
        twin.set_params(not_a_parameter=1)
    except ValueError:
        pass
    else:
        ctx.fail(check, "set_params(not_a_parameter=1) did not raise ValueError")
    ctx.expect(repr(twin) == before, check, lambda: "a refused set_params changed the sampler")


#: The checks, in order. Around every call of select and score, Context.call also
#: checks check_pool_untouched, check_model_untouched and check_global_rng_untouched.
CHECKS: list[Callable[[Context], None]] = [
    check_select_output,
    check_bad_budget,
    check_bad_pool_and_model,
    check_deterministic,
    check_model_modes,
    check_ranking,
    check_score,
    check_non_finite,
    check_zero_labels,
    check_params,
]
