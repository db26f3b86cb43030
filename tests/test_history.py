"""aalearn.History: records, columns, checks, saved and loaded with the pool, the plot."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

import aalearn
from aalearn import ActivePool, History, RandomSampler, UncertaintySampler
from aalearn.history import Cycle, ScoreSummary

ROOT = Path(__file__).resolve().parent.parent
# Floats whose text is easy to get wrong: a sum's rounding, the smallest subnormal, the
# largest double, a third.
AWKWARD = [0.1 + 0.2, 5e-324, 1.7976931348623157e308, 1 / 3, -0.0]


def make_pool(n: int = 40, seed: int = 0) -> ActivePool:
    g = torch.Generator().manual_seed(seed)
    pool = ActivePool(TensorDataset(torch.randn(n, 4, generator=g), torch.arange(n) % 3))
    pool.label(pool.random_unlabeled(6, random_state=seed))
    return pool


def make_model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)).eval()


def filled_history() -> tuple[ActivePool, History]:
    """A pool after three cycles and their history: every kind of value recorded."""
    pool, history = make_pool(), History()
    for i, value in enumerate(AWKWARD[:3]):
        picked = pool.random_unlabeled(3, random_state=i)
        scores = [value, 2.0, math.nan] if i == 1 else [1.0, value, 3.0]
        history.record(
            pool, method=f"m{i % 2}", picked=picked, seconds=AWKWARD[3] * i, scores=scores,
            metrics={"accuracy": value, "loss": AWKWARD[4]} if i else {"accuracy": 0.5},
        )  # fmt: skip
        pool.label(picked)
    history.record(pool, method="final", metrics={"f1": 0.25})
    return pool, history


# ------------------------------------------------------------------ recording
def test_record_reads_the_pool_and_summarises_the_scores_by_hand():
    pool, history = make_pool(), History()
    history.record(
        pool,
        method=UncertaintySampler("margin"),
        picked=np.array([7, 9, 11, 12]),
        seconds=0.25,
        scores=torch.tensor([1.0, 2.0, float("nan"), 4.0]),
        metrics={"accuracy": np.float32(0.5), "loss": torch.tensor(2.0)},
    )
    (cycle,) = history.cycles
    assert cycle == Cycle(
        round=1,
        n_labeled=6,
        n_picked=4,
        method="UncertaintySampler(method='margin')",
        seconds=0.25,
        scores=ScoreSummary(count=3, nonfinite=1, min=1.0, mean=7 / 3, max=4.0),
        metrics={"accuracy": 0.5, "loss": 2.0},
    )
    assert type(cycle.metrics["accuracy"]) is float
    with pytest.raises(TypeError):
        cycle.metrics["accuracy"] = 1.0  # type: ignore[index]  # a record is read-only
    # no scores, nothing picked, not timed
    history.record(pool, method="eval")
    assert history[1].scores is None and history[1].n_picked == 0 and history[1].seconds is None
    # only non-finite scores: counted, no statistics
    history.record(pool, method="x", picked=[1, 2], scores=[math.inf, math.nan])
    assert history[2].scores == ScoreSummary(0, 2, None, None, None)


def test_mean_of_equal_scores_stays_within_min_and_max():
    # 0.1 three times: the float mean is 0.10000000000000002 > max before the clip
    summary = ScoreSummary.of([0.1, 0.1, 0.1])
    assert summary.min == summary.mean == summary.max == 0.1
    huge = ScoreSummary.of([1e308, 1e308])  # the sum overflows
    assert huge.mean == 1e308


def test_select_records_what_the_sampler_did():
    pool, model = make_pool(), make_model()
    sampler = UncertaintySampler("margin", inference={"device": "cpu"})
    expected = sampler.select(model, pool, 5)
    scores = sampler.score(model, pool, expected)  # an independent call of the sampler
    history = History()
    picked = history.select(sampler, model, pool, 5, metrics={"accuracy": 0.75})
    np.testing.assert_array_equal(picked, expected)
    (cycle,) = history.cycles
    assert (cycle.round, cycle.n_labeled, cycle.n_picked) == (pool.round, 6, 5)
    assert cycle.method == repr(sampler) and cycle.metrics == {"accuracy": 0.75}
    assert cycle.seconds is not None and 0 < cycle.seconds < 60
    assert cycle.scores == ScoreSummary(
        5, 0, float(scores.min()), float(np.float64(scores).mean()), float(scores.max())
    )
    assert pool.n_labeled == 6  # select labels nothing
    # a sampler without scores: no summary
    picked = history.select(RandomSampler(random_state=0), None, pool, 4)
    assert history[1].scores is None and history[1].n_picked == 4 and picked.shape == (4,)


class Spy:
    """A sampler that counts its calls."""

    has_score = False

    def __init__(self) -> None:
        self.calls = 0

    def select(self, model, pool, budget):
        self.calls += 1
        return pool.unlabeled_indices[:budget]


BAD_RECORDS = [
    ({"metrics": {"accuracy": math.nan}}, ValueError, r"`metrics\['accuracy'\]`.*finite"),
    ({"metrics": {"accuracy": math.inf}}, ValueError, r"`metrics\['accuracy'\]`.*finite"),
    ({"metrics": {"accuracy": True}}, TypeError, r"`metrics\['accuracy'\]`.*real number"),
    ({"metrics": {"accuracy": "0.9"}}, TypeError, r"`metrics\['accuracy'\]`.*real number"),
    ({"metrics": {3: 0.9}}, TypeError, r"`metrics`.*str keys.*3"),
    ({"metrics": {"": 0.9}}, TypeError, r"`metrics`.*non-empty str keys"),
    ({"metrics": [("accuracy", 0.9)]}, TypeError, r"`metrics`.*mapping.*list"),
    ({"metrics": {"seconds": 1.0}}, ValueError, r"`metrics`.*column name 'seconds'"),
    ({"seconds": -1.0}, ValueError, r"`seconds`.*>= 0"),
    ({"seconds": math.nan}, ValueError, r"`seconds`.*finite"),
    ({"picked": [1, 2], "scores": [1.0]}, ValueError, r"`scores`.*one score per picked item"),
    ({"scores": [1.0]}, ValueError, r"`scores`.*\(0\)"),
    ({"picked": [1, 2], "scores": ["a", "b"]}, TypeError, r"`scores`.*real numbers"),
    ({"picked": [[1, 2]]}, ValueError, r"`picked`.*1-D"),
    ({"picked": [1.0, 2.0]}, TypeError, r"`picked`.*integer"),
]


@pytest.mark.parametrize(("kwargs", "error", "match"), BAD_RECORDS)
def test_bad_records_are_refused_before_anything_changes(kwargs, error, match):
    pool, history = filled_history()
    before = history.state_dict()
    with pytest.raises(error, match=match):
        history.record(pool, **{"method": "m", **kwargs})
    assert history.state_dict() == before


def test_select_checks_the_metrics_before_selecting():
    pool, history, spy = make_pool(), History(), Spy()
    with pytest.raises(ValueError, match=r"`metrics\['acc'\]`"):
        history.select(spy, None, pool, 3, metrics={"acc": math.nan})
    assert spy.calls == 0 and len(history) == 0
    with pytest.raises(TypeError, match="`pool`"):
        history.record(object(), method="m")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="`sampler`"):
        history.select(object(), None, pool, 3)
    history.select(spy, None, pool, 3)
    assert spy.calls == 1 and history[0].method.startswith("<") and history[0].n_picked == 3


def test_columns_hold_the_records_with_nan_where_missing():
    _, history = filled_history()
    cols = history.columns()
    assert list(cols) == [*aalearn.history.COLUMNS, "accuracy", "loss", "f1"]
    assert cols["n_labeled"].tolist() == [6, 9, 12, 15]
    assert cols["round"].tolist() == [1, 2, 3, 4]
    assert cols["n_picked"].tolist() == [3, 3, 3, 0]
    assert cols["method"].tolist() == ["m0", "m1", "m0", "final"]
    assert cols["score_count"].tolist() == [3, 2, 3, 0]
    assert cols["score_nonfinite"].tolist() == [0, 1, 0, 0]
    np.testing.assert_array_equal(cols["score_min"], [AWKWARD[0], AWKWARD[1], 1.0, np.nan])
    np.testing.assert_array_equal(cols["score_max"], [3.0, 2.0, AWKWARD[2], np.nan])
    np.testing.assert_array_equal(cols["accuracy"], [0.5, *AWKWARD[1:3], np.nan])
    np.testing.assert_array_equal(cols["f1"], [np.nan] * 3 + [0.25])
    np.testing.assert_array_equal(cols["seconds"], [0.0, AWKWARD[3], 2 * AWKWARD[3], np.nan])
    assert cols["n_labeled"].dtype == np.int64 and cols["accuracy"].dtype == np.float64
    assert repr(history) == (
        "History(4 cycles, methods=['m0', 'm1', 'final'], metrics=['accuracy', 'loss', 'f1'])"
    )
    empty = History().columns()
    assert list(empty) == list(aalearn.history.COLUMNS) and empty["round"].shape == (0,)


# --------------------------------------------------------------- state, files
def test_state_dict_round_trips_through_json_and_torch_save():
    _, history = filled_history()
    via_json = History()
    via_json.load_state_dict(json.loads(json.dumps(history.state_dict())))
    assert via_json == history and via_json.cycles == history.cycles
    buf = io.BytesIO()
    torch.save({"history": history.state_dict()}, buf)
    buf.seek(0)
    via_torch = History()
    via_torch.load_state_dict(torch.load(buf, weights_only=True)["history"])
    assert via_torch == history


def test_history_round_trips_with_the_pool_exactly(tmp_path):
    pool, history = filled_history()
    pool.save(tmp_path / "run.npz", history=history)
    restored_pool, restored = make_pool(), History()
    restored_pool.load(tmp_path / "run.npz", history=restored)
    assert restored == history
    assert restored[2].metrics["accuracy"] == AWKWARD[2]  # floats exact, bit for bit
    assert math.copysign(1, restored[1].metrics["loss"]) == -1  # -0.0 stays -0.0
    assert restored[1].scores.min == 5e-324
    for key, value in pool.state_dict().items():
        assert np.array_equal(np.asarray(value), np.asarray(restored_pool.state_dict()[key]))
    # a history member is plain uint8 JSON text in the .npz
    with np.load(tmp_path / "run.npz", allow_pickle=False) as npz:
        assert json.loads(npz["history"].tobytes()) == history.state_dict()
    # without history=, the pool loads and the history is not needed
    plain = make_pool()
    plain.load(tmp_path / "run.npz")
    assert plain.n_labeled == pool.n_labeled


def test_a_pool_file_without_a_history_still_loads(tmp_path):
    pool, history = filled_history()
    pool.save(tmp_path / "old.npz")  # as every earlier version wrote it
    with zipfile.ZipFile(tmp_path / "old.npz") as zf:
        assert "history.npy" not in zf.namelist()
    target = make_pool()
    target.load(tmp_path / "old.npz", history=history)
    assert target.n_labeled == pool.n_labeled and len(history) == 0  # the file's: none
    other = make_pool()
    other.load(tmp_path / "old.npz")
    assert other.round == pool.round


def test_a_failed_save_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "run.npz"
    pool, history = filled_history()
    pool.save(path, history=history)
    old_bytes = path.read_bytes()
    history.record(pool, method="later", metrics={"accuracy": 0.99})

    def fail(fh, **arrays):
        fh.write(b"PK partial")  # a half-written archive, then the process fails
        raise OSError("disk full")

    monkeypatch.setattr(aalearn._persistence.np, "savez", fail)
    with pytest.raises(OSError, match="disk full"):
        pool.save(path, history=history)
    monkeypatch.undo()
    assert path.read_bytes() == old_bytes
    assert [p.name for p in tmp_path.iterdir()] == ["run.npz"]  # no temporary left
    restored = History()
    make_pool().load(path, history=restored)
    assert len(restored) == 4 and restored[-1].method == "final"
    # a history too large for a pool file is refused before anything is written
    monkeypatch.setattr(aalearn._history_state, "HISTORY_MAX_BYTES", 100)
    with pytest.raises(ValueError, match=r"history takes \d+ bytes.*\(100\)"):
        pool.save(path, history=history)
    assert path.read_bytes() == old_bytes
    with pytest.raises(TypeError, match="`history`.*aalearn.History.*dict"):
        pool.save(tmp_path / "new.npz", history=history.state_dict())  # type: ignore[arg-type]
    assert not (tmp_path / "new.npz").exists()


def _with_history_member(tmp_path: Path, name: str, member: bytes) -> Path:
    """A valid pool archive whose ``history.npy`` is ``member`` (a whole .npy file)."""
    pool, _ = filled_history()
    pool.save(tmp_path / "base.npz")
    path = tmp_path / name
    with zipfile.ZipFile(tmp_path / "base.npz") as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, src.read(info))
        dst.writestr("history.npy", member)
    return path


def _npy(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    return buf.getvalue()


def _text(text: str) -> bytes:
    return _npy(np.frombuffer(text.encode(), dtype=np.uint8))


def _state_text(**changes) -> str:
    _, history = filled_history()
    state = history.state_dict()
    for key, value in changes.items():
        state["cycles"][0][key] = value
    return json.dumps(state)


class Boom:
    """Pickling this would run code on load."""

    def __reduce__(self):
        return (os.system, ("touch pwned",))


BAD_MEMBERS = [
    ("pickle.npz", _npy(np.array([Boom()], dtype=object)), r"history.npy.*shape.*dtype object"),
    ("pickled-bytes.npz", _npy(np.frombuffer(b"\x80\x04K\x01.", np.uint8)), "not JSON"),
    ("int64.npz", _npy(np.arange(3)), r"history.npy.*dtype int64.*uint8"),
    ("garbage.npz", _text("{not json"), "not JSON"),
    ("latin1.npz", _npy(np.frombuffer(b'{"\xff": 1}', np.uint8)), "not JSON"),
    ("nan.npz", _text(_state_text().replace('"accuracy": 0.5', '"accuracy": NaN')), "NaN"),
    ("nan2.npz", _text(_state_text(seconds=None).replace("null", "NaN", 1)), "NaN"),
    ("inf.npz", _text(_state_text(seconds=1).replace('"seconds": 1', '"seconds": 1e999')), "fin"),
    ("deep.npz", _text("[" * 100_000), "not JSON"),
    ("dup.npz", _text('{"version": 1, "version": 1, "cycles": []}'), "repeats a key"),
    ("list.npz", _text("[]"), r"`state`.*dict.*list"),
    ("version.npz", _text('{"version": 2, "cycles": []}'), "version 2"),
    ("extra.npz", _text('{"version": 1, "cycles": [], "x": 0}'), r"keys \['version', 'cycles'\]"),
    ("round.npz", _text(_state_text(round=-1)), r"\['round'\].*>= 0"),
    ("float-round.npz", _text(_state_text(round=1.5)), r"\['round'\].*integer"),
    ("bool-round.npz", _text(_state_text(round=True)), r"\['round'\].*integer"),
    ("big-round.npz", _text(_state_text(round=2**63)), r"\['round'\].*<="),
    ("method.npz", _text(_state_text(method=3)), r"\['method'\].*str"),
    ("seconds.npz", _text(_state_text(seconds=-2)), r"\['seconds'\].*>= 0"),
    ("metric.npz", _text(_state_text(metrics={"a": "x"})), r"\['metrics'\]\['a'\]"),
    ("key.npz", _text(_state_text(metrics={"round": 1})), "column name 'round'"),
    ("missing.npz", _text(_state_text().replace('"method"', '"methd"', 1)), "keys"),
    (
        "count.npz",
        _text(_state_text(scores={"count": 9, "nonfinite": 0, "min": 0, "mean": 0, "max": 0})),
        r"\['count'\].*<= 3",
    ),
    (
        "order.npz",
        _text(_state_text(scores={"count": 3, "nonfinite": 0, "min": 2, "mean": 1, "max": 3})),
        "min <= mean <= max",
    ),
    (
        "none.npz",
        _text(_state_text(scores={"count": 3, "nonfinite": 0, "min": None, "mean": 1, "max": 3})),
        "exactly when count > 0",
    ),
]


@pytest.mark.parametrize(("name", "member", "match"), BAD_MEMBERS, ids=[b[0] for b in BAD_MEMBERS])
def test_a_bad_history_names_the_file_and_changes_nothing(
    tmp_path, monkeypatch, name, member, match
):
    path = _with_history_member(tmp_path, name, member)
    pool, (_, history) = make_pool(seed=1), filled_history()  # the file's pool differs
    before_pool, before = pool.state_dict(), history.state_dict()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=rf"{name}.*{match}"):
        pool.load(path, history=history)
    assert history.state_dict() == before
    assert all(np.array_equal(before_pool[k], v) for k, v in pool.state_dict().items())
    assert not (tmp_path / "pwned").exists()


def test_a_history_member_is_bounded_and_must_be_a_regular_member(tmp_path):
    # declared larger than a pool file's history may be: refused before it is read
    header = np.lib.format
    buf = io.BytesIO()
    header.write_array_header_1_0(
        buf, {"descr": "|u1", "fortran_order": False, "shape": (1 << 30,)}
    )
    path = _with_history_member(tmp_path, "huge.npz", buf.getvalue())
    with pytest.raises(ValueError, match=r"huge.npz.*history.npy.*declares shape"):
        make_pool().load(path, history=History())
    with pytest.raises(TypeError, match="`history`"):
        make_pool().load(path, history=[])  # type: ignore[arg-type]


# ---------------------------------------------------------------------- plot
def test_plot_draws_the_records():
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, history = filled_history()
    ax = history.plot("accuracy", color="C3")
    (line,) = ax.lines
    cols = history.columns()
    keep = ~np.isnan(cols["accuracy"])
    np.testing.assert_array_equal(line.get_xdata(), cols["n_labeled"][keep])
    np.testing.assert_array_equal(line.get_ydata(), cols["accuracy"][keep])
    assert line.get_label() == "m0, m1" and line.get_color() == "C3"
    assert ax.get_xlabel() == "labeled items" and ax.get_ylabel() == "accuracy"
    assert ax.get_title() == "accuracy by labeled items"
    # a second history on the same Axes: a second line, the Axes' title untouched
    other = History()
    other.record(make_pool(), method="random", metrics={"accuracy": 0.1})
    assert other.plot("accuracy", ax=ax, label="baseline") is ax
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["m0, m1", "baseline"]
    assert ax.lines[1].get_ydata().tolist() == [0.1]
    with pytest.raises(ValueError, match=r"`metric`.*\['accuracy', 'loss', 'f1'\].*'acc'"):
        history.plot("acc")
    with pytest.raises(TypeError, match="`metric`"):
        history.plot(3)  # type: ignore[arg-type]
    plt.close("all")


def test_import_aalearn_does_not_import_matplotlib():
    code = (
        "import sys, aalearn\n"
        "h = aalearn.History()\n"
        "h.record(aalearn.ActivePool(None, n_items=3), method='m', metrics={'a': 1.0})\n"
        "h.columns()\n"
        "assert 'matplotlib' not in sys.modules, 'matplotlib imported'\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, env=env)


@pytest.mark.slow
def test_the_demo_command_writes_the_docs_image(tmp_path):
    pytest.importorskip("matplotlib")
    pytest.importorskip("sklearn")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    out = tmp_path / "history.png"
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.history_demo", "--quick", "--out", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "round trip: ok" in proc.stdout


def test_a_file_listing_many_members_is_refused_before_its_directory_is_parsed(
    tmp_path, monkeypatch
):
    """A pool file may now be as large as its history allows (16 MiB of JSON): a zip
    directory of that size would cost a ZipInfo object per member; it is refused from the
    end record, before zipfile parses it."""
    import tracemalloc

    path = tmp_path / "many.npz"
    with zipfile.ZipFile(path, "w") as zf:
        for i in range(30_000):
            zf.writestr(f"m{i}.npy", b"")
    assert os.path.getsize(path) < 4 << 20  # within the size cap: this check is what stops it
    parsed = []
    original = zipfile.ZipFile.__init__

    def spy(self, *args, **kwargs):
        parsed.append(args)
        original(self, *args, **kwargs)

    monkeypatch.setattr(zipfile.ZipFile, "__init__", spy)
    pool = make_pool()
    tracemalloc.start()
    try:
        with pytest.raises(ValueError, match=r"many.npz.*lists 30000 members.*at most 7"):
            pool.load(path, history=History())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert parsed == [] and peak < 1 << 20, peak
    # a pool file with a history lists 7 members and loads
    saved, history = filled_history()
    saved.save(tmp_path / "ok.npz", history=history)
    monkeypatch.undo()
    with zipfile.ZipFile(tmp_path / "ok.npz") as zf:
        assert len(zf.infolist()) == 7
    make_pool().load(tmp_path / "ok.npz", history=History())
