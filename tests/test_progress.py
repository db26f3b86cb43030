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


class _Clock:
    """A fake clock: each epoch of ``_run`` takes ``step`` seconds."""

    def __init__(self, step: float = 1.0) -> None:
        self.now = 100.0
        self.step = step

    def __call__(self) -> float:
        return self.now


def _run(progress, stream, schedule=(3, 3, 3, 1), clock=None, **kw) -> TrainingProgress:
    clock = clock or _Clock(0.0)
    report = TrainingProgress(
        progress, "AALUSampler", list(schedule), "120 items", stream=stream, clock=clock, **kw
    )
    report.start()
    for epoch, n in enumerate(schedule, 1):
        clock.now += clock.step
        report.update(epoch, n, _Meter())
    report.close()
    return report


def test_headline_says_how_many_iterations():
    report = TrainingProgress(None, "AALUSampler", [11] * 99 + [23], "1,437 items, batch 128")
    assert report.headline() == (
        "AALUSampler: training the selector for 1,112 iterations "
        "(100 epochs, 1,437 items, batch 128)"
    )


def test_off_when_false():
    for stream in (_Terminal(), io.StringIO()):
        report = _run(False, stream, clock=_Clock(10.0))
        assert not report.active and stream.getvalue() == ""


def test_default_without_a_terminal_is_silent_when_short():
    """``None``, stderr not a terminal: nothing for a training of 3 s (1 s per epoch)."""
    stream = io.StringIO()
    report = _run(None, stream, schedule=(3, 3, 1), clock=_Clock(1.0))
    assert report.mode == "lines" and report.active  # losses are read, in case it runs long
    assert stream.getvalue() == ""


def test_default_without_a_terminal_speaks_once_it_runs_long():
    """``None``, stderr not a terminal, 1 s per epoch: the headline and a line once past 3 s,
    then the 10 % marks, then the final line with the time."""
    stream = io.StringIO()
    _run(None, stream, schedule=[2] * 40, clock=_Clock(1.0))
    lines = stream.getvalue().splitlines()
    assert lines[0] == "AALUSampler: training the selector for 80 iterations (40 epochs, 120 items)"
    assert lines[1] == (
        "AALUSampler: epoch 4/40, iteration 8/80; ranking 0.25; 4.0 s elapsed, 36.0 s left"
    )
    assert [line.split(",")[0] for line in lines[2:-1]] == [
        f"AALUSampler: epoch {e}/40" for e in range(8, 41, 4)
    ]
    assert lines[-1] == "AALUSampler: trained the selector, 80 iterations in 40.0 s"


def test_the_quiet_time_is_a_parameter():
    stream = io.StringIO()
    _run(None, stream, schedule=(3, 3, 3, 1), clock=_Clock(1.0), quiet_seconds=2.5)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("AALUSampler: training the selector for 10 iterations")
    assert [line.split(";")[0] for line in lines[1:-1]] == [
        "AALUSampler: epoch 3/4, iteration 9/10",
        "AALUSampler: epoch 4/4, iteration 10/10",
    ]
    assert lines[-1] == "AALUSampler: trained the selector, 10 iterations in 4.0 s"


def test_plain_lines_without_a_terminal_when_asked():
    stream = io.StringIO()
    _run(True, stream, clock=_Clock(0.5))
    lines = stream.getvalue().splitlines()
    assert lines[0] == "AALUSampler: training the selector for 10 iterations (4 epochs, 120 items)"
    assert len(lines) == 1 + 4 + 1  # a line per epoch when there are fewer than 10 epochs
    assert lines[-2] == (
        "AALUSampler: epoch 4/4, iteration 10/10; ranking 0.25; 2.0 s elapsed, 0.0 s left"
    )
    assert lines[-1] == "AALUSampler: trained the selector, 10 iterations in 2.0 s"


def test_plain_lines_are_at_most_ten():
    stream = io.StringIO()
    _run(True, stream, schedule=[2] * 100)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 + 10 + 1
    assert "epoch 10/100, iteration 20/200" in lines[1]


def test_plain_lines_without_tqdm_on_a_terminal(monkeypatch):
    real_import = builtins.__import__

    def no_tqdm(name, *args, **kwargs):
        if name.startswith("tqdm"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tqdm)
    stream = _Terminal()
    report = _run(None, stream, clock=_Clock(1.0))  # 4 s in all: past the quiet time
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
    assert err[-1].startswith("AALUSampler: trained the selector, 7 iterations in ")
    assert err[-2].startswith("AALUSampler: epoch 2/2, iteration 7/7; representation ")
    AALUSampler(**kw).select(model, pool, 3)
    assert capsys.readouterr().err == ""  # default, no terminal, under 3 s: silent
    AALUSampler(progress=False, **kw).select(model, pool, 3)
    assert capsys.readouterr().err == ""


def test_sampler_default_speaks_without_a_terminal_when_long(capsys, monkeypatch):
    """The default ``progress=None`` with stderr captured (not a terminal): plain lines once
    the training has run longer than the quiet time (0 here, so that the test is fast)."""
    from aalearn.samplers import _progress
    from aalearn.samplers.aalu import AALUSampler

    pool, model, _ = novel_cluster_pool(seed=1, per=30, n_labeled=10)
    kw = {"epochs": 2, "selector_batch_size": 32, "inference": {"device": "cpu"}, **FAST}
    monkeypatch.setattr(_progress, "QUIET_SECONDS", 0.0)
    picked = AALUSampler(random_state=0, **kw).select(model, pool, 3)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (
        "AALUSampler: training the selector for 7 iterations (2 epochs, 120 items, batch 32)"
    )
    assert err[1].startswith("AALUSampler: epoch 1/2, iteration 3/7; representation ")
    assert err[2].startswith("AALUSampler: epoch 2/2, iteration 7/7; representation ")
    assert err[3].startswith("AALUSampler: trained the selector, 7 iterations in ")
    assert len(err) == 4
    # Reporting reads the losses back but changes nothing in the training.
    silent = AALUSampler(random_state=0, progress=False, **kw).select(model, pool, 3)
    assert picked.tolist() == silent.tolist()
    assert capsys.readouterr().err == ""


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
