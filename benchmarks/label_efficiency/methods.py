"""The methods: every sampler the library offers, built from its own lists.

A method is a name and optional keyword arguments, ``name[key=value;...]``. The names
come from the library: ``random``, each of ``UncertaintySampler.methods``, ``coreset``,
``vaal`` (``AdversarialSampler(representation="raw")``), each row of ``AALU_VARIANTS``
with the library's defaults, and ``aalu-paper`` (``AALUSampler.paper()``). A new
scoring rule or AALU variant is in the benchmark as soon as the library lists it.

The batch-aware methods: ``badge`` (:class:`aalearn.BADGESampler`), ``batchbald``
(:class:`aalearn.BatchBALDSampler`, pre-filtered to the items of highest BALD, the
paper's practice, with a smaller joint than the library's default: see
``BATCHBALD_CANDIDATES``), and the stochastic batches of
:class:`aalearn.StochasticBatchSampler`: ``power-bald`` and ``power-entropy``
(``mode="power"``, Kirsch et al.'s PowerBALD and PowerEntropy) and ``stochastic-aalu``
(``AALUSampler()`` with the library's defaults, ``mode="softrank"``: AALU's scores are
sigmoid outputs crowded near 1, so their powers are almost uniform, while soft-rank
sampling depends on the order only).
"""

from __future__ import annotations

import ast
import inspect
import re
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

import aalearn
from aalearn.samplers import AALU_VARIANTS
from aalearn.samplers.aalu import PAPER_SETTINGS
from benchmarks.label_efficiency.protocol import PAPER_BATCH, Settings, logits_of

#: The baselines and the AALU family of a default run (the paper's methods and BALD).
BASELINES = ("random", "entropy", "margin", "bald", "coreset", "vaal")
#: ``aalu-paper``: :meth:`aalearn.AALUSampler.paper`, the paper's exact configuration.
PAPER_AALU = "aalu-paper"
AALU_FAMILY = ("aalu", PAPER_AALU, *(v for v in AALU_VARIANTS if v != "aalu"))
#: The batch-aware samplers (the batch-acquisition work).
BATCH_AWARE = ("badge", "batchbald", "power-bald", "power-entropy", "stochastic-aalu")
METHODS = BASELINES + AALU_FAMILY + BATCH_AWARE
#: The uncertainty scores that are >= 0, which ``mode="power"`` needs (margin's are <= 0).
POWER_SCORES = ("entropy", "least_confidence", "bald")
#: ``batchbald`` on a CPU budget: the greedy runs over the ``BATCHBALD_CANDIDATES`` x
#: budget items of highest BALD only (the paper's pre-filter), with a joint of
#: ``BATCHBALD_CONFIGS`` label configurations (the library's default: 10,000). One
#: greedy step costs O(candidates x configurations x mc_samples x classes).
BATCHBALD_CANDIDATES = 3
BATCHBALD_CONFIGS = 1000
#: The settings each method reads besides the protocol's (a change re-runs its units).
METHOD_KEYS = {
    "vaal": ("vaal_iterations", "vaal_channels"),
    **{m: ("mc_samples",) for m in ("bald", "batchbald", "power-bald")},
    **{m: ("selector_iterations", "aalu_hidden") for m in (*AALU_FAMILY, "stochastic-aalu")},
}
PICK_RULES = ("top", "bottom", "per_class")
#: The AALU family's other rows (its ablations, ``aalu-paper``, ``stochastic-aalu``) ran
#: with the library's defaults of before 2026-12-05: widths (256, 128) and a floor of
#: 1,800 iterations (``aalu-paper``: the widths only; it has no floor). They keep those
#: settings here, so that ``--resume`` reproduces their rows; ``aalu`` itself runs the
#: library's defaults (``docs/aalu-findings.md``, *Faster by default*).
PREVIOUS_AALU_DEFAULTS: dict[str, Any] = {"hidden": (256, 128), "min_iterations": 1800}
#: Costliest first, so that two workers finish together.
COST_ORDER = (
    "vaal",
    "aalu",
    "stochastic-aalu",
    PAPER_AALU,
    "advVAE+lossLearn",
    "advVAE+prediction",
    "advVAE",
    "batchbald",
    "bald",
    "power-bald",
)

#: The keyword arguments of a sampler (without the spec's overrides) and its class.
Builder = Callable[[str, Settings, int, int], tuple[type, dict[str, Any]]]

_INFERENCE = {"device": "cpu", "batch_size": 500}


def _inference(cls: type) -> dict[str, Any]:
    """The benchmark's inference settings, as ``cls``'s constructor takes them."""
    if "inference" in inspect.signature(cls).parameters:
        return {"inference": dict(_INFERENCE)}
    return dict(_INFERENCE)


def selector_epochs(iterations: int, n_pool: int) -> float:
    """The samplers' ``epochs`` (passes over the whole pool, batch 128) for ``iterations``."""
    return iterations * PAPER_BATCH / n_pool


def _random(name: str, s: Settings, n_pool: int, seed: int) -> tuple[type, dict[str, Any]]:
    return aalearn.RandomSampler, {"random_state": seed}


def _uncertainty(name: str, s: Settings, n_pool: int, seed: int) -> tuple[type, dict[str, Any]]:
    cls = aalearn.UncertaintySampler
    kwargs = {"method": name, **_inference(cls), "random_state": seed}
    if name == "bald":
        kwargs["mc_samples"] = s.mc_samples
    return cls, kwargs


def _coreset(name: str, s: Settings, n_pool: int, seed: int) -> tuple[type, dict[str, Any]]:
    return aalearn.CoreSetSampler, _inference(aalearn.CoreSetSampler)  # deterministic


def _vaal(name: str, s: Settings, n_pool: int, seed: int) -> tuple[type, dict[str, Any]]:
    cls = aalearn.AdversarialSampler
    return cls, {
        **_inference(cls),
        "random_state": seed,
        "representation": "raw",
        "epochs": selector_epochs(s.vaal_iterations, n_pool),
        "vae_channels": s.vaal_channels,
    }


def _aalu(name: str, s: Settings, n_pool: int, seed: int) -> tuple[type, dict[str, Any]]:
    """``aalu``: the library's defaults; ``aalu-paper``: the paper's settings; the
    ablations: :data:`PREVIOUS_AALU_DEFAULTS`; the spec's overrides on top."""
    return _aalu_sampler(name, s, n_pool, seed, previous=name != "aalu")


def _aalu_sampler(
    name: str, s: Settings, n_pool: int, seed: int, previous: bool
) -> tuple[type, dict[str, Any]]:
    """``AALUSampler`` for ``name``; ``previous``: with :data:`PREVIOUS_AALU_DEFAULTS`
    (``aalu-paper``: its widths only), under the settings' ``--selector-iterations``
    and ``--aalu-hidden``."""
    cls = aalearn.AALUSampler
    kwargs: dict[str, Any] = {**_inference(cls), "random_state": seed}
    if name == PAPER_AALU:
        kwargs.update(variant="aalu", **PAPER_SETTINGS, hidden=PREVIOUS_AALU_DEFAULTS["hidden"])
    else:
        kwargs["variant"] = name
        if previous:
            kwargs.update(PREVIOUS_AALU_DEFAULTS)
    if s.selector_iterations is not None:  # exactly that many iterations
        kwargs.update(epochs=selector_epochs(s.selector_iterations, n_pool), min_iterations=0)
    if s.aalu_hidden is not None:
        kwargs["hidden"] = s.aalu_hidden
    return cls, kwargs


def _badge(name: str, s: Settings, n_pool: int, seed: int) -> tuple[type, dict[str, Any]]:
    cls = aalearn.BADGESampler
    return cls, {**_inference(cls), "random_state": seed}


def _batchbald(name: str, s: Settings, n_pool: int, seed: int) -> tuple[type, dict[str, Any]]:
    cls = aalearn.BatchBALDSampler
    return cls, {
        **_inference(cls),
        "random_state": seed,
        "mc_samples": s.mc_samples,
        "num_samples": BATCHBALD_CONFIGS,
        "max_candidates": BATCHBALD_CANDIDATES * round(s.step_fraction * n_pool),
    }


def _stochastic(name: str, s: Settings, n_pool: int, seed: int) -> tuple[type, dict[str, Any]]:
    """``power-<uncertainty>`` or ``stochastic-aalu``: the inner sampler seeded like the draw."""
    if name == "stochastic-aalu":
        inner_cls, inner_kwargs = _aalu_sampler("aalu", s, n_pool, seed, previous=True)
        mode = "softrank"
    else:
        inner_cls, inner_kwargs = _uncertainty(name.removeprefix("power-"), s, n_pool, seed)
        mode = "power"
    inner = inner_cls(**inner_kwargs)
    return aalearn.StochasticBatchSampler, {"sampler": inner, "mode": mode, "random_state": seed}


def builders() -> dict[str, Builder]:
    """Every method the library offers, by name."""
    out: dict[str, Builder] = {"random": _random}
    out.update({m: _uncertainty for m in aalearn.UncertaintySampler.methods})
    out["coreset"] = _coreset
    out["vaal"] = _vaal
    out.update({v: _aalu for v in AALU_VARIANTS})
    out[PAPER_AALU] = _aalu
    out["badge"] = _badge
    out["batchbald"] = _batchbald
    out.update({f"power-{m}": _stochastic for m in POWER_SCORES})
    out["stochastic-aalu"] = _stochastic
    return out


KNOWN = tuple(builders())

_SPEC = re.compile(r"^([A-Za-z0-9_+\-]+)(?:\[(.*)\])?$")


def _value(key: str, value: str, spec: str) -> Any:
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError) as exc:
        if not value.isidentifier():  # a bare word is a string: pick=bottom
            raise ValueError(f"Cannot read the value of {key!r} in {spec!r}: {exc}") from exc
        return value


def parse_spec(spec: str) -> tuple[str, dict[str, Any]]:
    """``"aalu[latent_dim=8;standardize=False]"`` -> ``("aalu", {"latent_dim": 8, ...})``."""
    match = _SPEC.match(spec.strip())
    if match is None or match.group(1) not in KNOWN:
        raise ValueError(f"Unknown method {spec!r}; expected one of {list(KNOWN)}.")
    overrides: dict[str, Any] = {}
    for item in filter(None, (match.group(2) or "").split(";")):
        key, sep, value = item.partition("=")
        if not sep or not key.strip().isidentifier():
            raise ValueError(f"Expected key=value in method {spec!r}, but got {item!r}.")
        overrides[key.strip()] = _value(key.strip(), value.strip(), spec)
    return match.group(1), overrides


def base_name(spec: str) -> str:
    """``"aalu[latent_dim=8]"`` -> ``"aalu"``."""
    return spec.split("[", 1)[0].strip()


def split_methods(text: str) -> list[str]:
    """Split on the commas outside brackets and parentheses."""
    out, depth, current = [], 0, ""
    for char in text:
        if char in "[(":
            depth += 1
        elif char in "])":
            depth -= 1
        if char == "," and depth == 0:
            out.append(current.strip())
            current = ""
        else:
            current += char
    out.append(current.strip())
    return [m for m in out if m]


def pick_rule(spec: str) -> str:
    """The benchmark-side ``pick`` key of a method spec (never passed to the sampler).

    ``"top"`` (default): the sampler's own ``budget`` best items. Two diagnostics rank
    the whole unlabeled pool with the sampler (``select`` with ``budget=n_unlabeled``)
    and then pick differently: ``"bottom"`` takes the ``budget`` items ranked last (is
    the direction of the scores right?); ``"per_class"`` walks the ranking round-robin
    over the task model's predicted classes, the best of each predicted class first (do
    the picks fail because they pile up in a few classes?).
    """
    rule = parse_spec(spec)[1].get("pick", "top")
    if rule not in PICK_RULES:
        raise ValueError(f"Expected pick to be one of {list(PICK_RULES)}, but got {rule!r}.")
    return str(rule)


def apply_pick_rule(
    rule: str, ranking: np.ndarray, budget: int, model: nn.Module, x: torch.Tensor
) -> np.ndarray:
    """``budget`` items of the full ``ranking`` (best first) by ``rule`` (see :func:`pick_rule`)."""
    if rule == "bottom":
        return ranking[::-1][:budget].copy()
    pred = logits_of(model, x[torch.from_numpy(ranking.copy())]).argmax(1).numpy()
    within = np.empty_like(pred)
    for c in np.unique(pred):
        pos = np.flatnonzero(pred == c)
        within[pos] = np.arange(pos.size)
    order = np.lexsort((np.arange(ranking.size), within))  # by within-class rank, then rank
    return ranking[order[:budget]]


def make_sampler(spec: str, settings: Settings, n_pool: int, seed: int) -> aalearn.Sampler:
    """The sampler ``spec`` names, on the CPU, with the benchmark's settings."""
    name, overrides = parse_spec(spec)
    overrides.pop("pick", None)
    cls, kwargs = builders()[name](name, settings, n_pool, seed)
    sampler: aalearn.Sampler = cls(**{**kwargs, **overrides})
    return sampler
