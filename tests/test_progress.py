"""Progress of selector training: a bar on a terminal, plain lines otherwise, or silence."""

from __future__ import annotations

import builtins
import io
import subprocess
import sys

import pytest

from aalearn.samplers._progress import TrainingProgress
from aalearn.samplers._training import _LossMeter

from .test_aalu import FAST, novel_cluster_pool


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _Meter:
    def pop(self) -> dict[str, float]:
        return {"ranking": 0.25}


def _run(progress, stream, schedule=(3, 3, 3, 1)) -> TrainingProgress:
    report = TrainingProgress(progress, "AALUSampler", list(schedule), "120 items", stream=stream)
    report.start()
    for epoch, n in enumerate(schedule, 1):
        report.update(epoch, n, _Meter())
    report.close()
    return report


def test_headline_says_how_many_iterations():
    report = TrainingProgress(None, "AALUSampler", [11] * 99 + [23], "1,437 items, batch 128")
    assert report.headline() == (
        "AALUSampler: training the selector for 1,112 iterations "
        "(100 epochs, 1,437 items, batch 128)"
    )


def test_off_when_stderr_is_not_a_terminal_or_when_false():
    for progress, stream in ((None, io.StringIO()), (False, _Terminal()), (False, io.StringIO())):
        report = _run(progress, stream)
        assert not report.active and stream.getvalue() == ""


def test_plain_lines_without_a_terminal_when_asked():
    stream = io.StringIO()
    _run(True, stream)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "AALUSampler: training the selector for 10 iterations (4 epochs, 120 items)"
    assert len(lines) == 1 + 4  # a line per epoch when there are fewer than 10 epochs
    assert lines[-1].startswith("AALUSampler: epoch 4/4, iteration 10/10; ranking 0.25; ")
    assert lines[-1].endswith("0.0 s left")


def test_plain_lines_are_at_most_ten(monkeypatch):
    stream = io.StringIO()
    _run(True, stream, schedule=[2] * 100)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 + 10
    assert "epoch 10/100, iteration 20/200" in lines[1]


def test_plain_lines_without_tqdm_on_a_terminal(monkeypatch):
    real_import = builtins.__import__

    def no_tqdm(name, *args, **kwargs):
        if name.startswith("tqdm"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    stream = _Terminal()
    report = _run(None, stream)
    assert report.mode == "lines" and "epoch 4/4" in stream.getvalue()


def test_bar_on_a_terminal():
    pytest.importorskip("tqdm")
    stream = _Terminal()
    report = _run(None, stream)
    out = stream.getvalue()
    assert report.mode == "bar"
    assert out.startswith("AALUSampler: training the selector for 10 iterations")
    assert "10/10" in out and "rank=0.25" in out


def test_callback_gets_each_epochs_mean_losses():
    seen: list[tuple[int, dict[str, float]]] = []
    report = _run(lambda e, d: seen.append((e, d)), io.StringIO())
    assert report.mode == "callback"
    assert seen == [(e, {"ranking": 0.25}) for e in (1, 2, 3, 4)]


def test_silent_training_reads_nothing_back():
    meter = _LossMeter(enabled=False)
    meter.add({"x": __import__("torch").ones(())})
    assert meter.pop() == {}


def test_sampler_prints_to_stderr_when_asked(capsys):
    from aalearn.samplers.aalu import AALUSampler

    pool, model, _ = novel_cluster_pool(seed=1, per=30, n_labeled=10)
    kw = {
        "epochs": 2,
        "selector_batch_size": 32,
        "inference": {"device": "cpu"},
        "random_state": 0,
        **FAST,
    }
    AALUSampler(progress=True, **kw).select(model, pool, 3)
    err = capsys.readouterr().err.splitlines()
    assert (
        err[0]
        == "AALUSampler: training the selector for 7 iterations (2 epochs, 120 items, batch 32)"
    )
    assert err[-1].startswith("AALUSampler: epoch 2/2, iteration 7/7; representation ")
    AALUSampler(**kw).select(model, pool, 3)
    assert capsys.readouterr().err == ""  # default, stderr not a terminal: silent


def test_aalearn_works_without_tqdm():
    """tqdm is optional: with it unimportable, aalearn imports and reports in plain lines.

    (torch itself imports tqdm when it is installed, so "not in sys.modules" would not
    tell anything about aalearn.)
    """
    code = (
        "import sys; sys.modules['tqdm'] = None; sys.modules['tqdm.auto'] = None\n"
        "import aalearn\n"
        "from aalearn.samplers._progress import TrainingProgress\n"
        "print(TrainingProgress(True, 'x', [1]).mode)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "lines"
