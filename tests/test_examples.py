"""The example scripts run, in their fast modes, as a user would run them (a subprocess each).

``cifar10_aalu.py`` needs torchvision and CIFAR-10, which CI lacks: it is checked up to
its one-line error messages, and run end to end against a stand-in torchvision that
serves random images and a tiny network.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SCRIPTS = [
    "quickstart.py",
    "custom_training_loop.py",
    "compare_samplers.py",
    "cifar10_aalu.py",
    "distributed_selection.py",
    "text_classification.py",
]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def run(args: list[str], cwd: Path, site: Path | None = None, timeout: float = 120):
    """``python *args`` in ``cwd``; ``site`` goes first on ``PYTHONPATH`` (a stand-in package)."""
    # One thread: these models are tiny, and CI machines are often shared.
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    # This tree's aalearn, whichever copy is installed.
    paths = [str(site) if site is not None else None, str(EXAMPLES.parent), env.get("PYTHONPATH")]
    env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
    return subprocess.run(
        [sys.executable, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def load(script: str) -> types.ModuleType:
    """Import an example as a module, without running it."""
    spec = importlib.util.spec_from_file_location(f"example_{script[:-3]}", EXAMPLES / script)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("script", SCRIPTS)
def test_help(script: str, capsys: pytest.CaptureFixture[str]) -> None:
    # In-process (no interpreter start-up): --help must work without torchvision or data.
    with pytest.raises(SystemExit) as exc:
        load(script).main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage:") and "--fast" in out


def test_quickstart_fast(tmp_path: Path) -> None:
    out = ok(run([str(EXAMPLES / "quickstart.py"), "--fast"], tmp_path))
    lines = out.splitlines()
    header = next(line for line in lines if line.split()[:1] == ["labeled"])
    assert header.split() == ["labeled", "random", "entropy"]
    rows = [line.split() for line in lines[lines.index(header) + 1 :] if line.strip()]
    assert len(rows) == 3  # the initial set and 2 cycles
    assert [int(r[0]) for r in rows] == sorted(int(r[0]) for r in rows)
    assert all(0.0 <= float(v) <= 1.0 for r in rows for v in r[1:])


@pytest.mark.slow
def test_custom_training_loop_fast(tmp_path: Path) -> None:
    out = ok(
        run([str(EXAMPLES / "custom_training_loop.py"), "--fast", "--work-dir", "."], tmp_path)
    )
    assert "features from layer 'neck': (4, 128)" in out
    assert "features from layer 'classifier': (4, 64)" in out
    assert "CoreSetSampler(inference={'feature_layer': 'neck'" in out
    assert out.split("cycle")[1].split()[:2] == ["labeled", "accuracy"]
    assert "loaded back: 200 labeled in 3 rounds, 200 labels asked of the oracle" in out
    assert (tmp_path / "pool.npz").is_file()


@pytest.mark.slow
def test_text_classification_fast(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    pytest.importorskip("datasets")
    out = ok(run([str(EXAMPLES / "text_classification.py"), "--fast"], tmp_path, timeout=300))
    assert "standard-library docstrings" in out
    lines = out.splitlines()
    header = next(line for line in lines if line.split()[:1] == ["labeled"])
    assert header.split() == ["labeled", "random", "entropy"]
    rows = [line.split() for line in lines[lines.index(header) + 1 :] if line.strip()]
    assert [int(r[0]) for r in rows] == [30, 60, 90]
    assert all(0.0 <= float(v) <= 1.0 for r in rows for v in r[1:])


@pytest.mark.slow
def test_compare_samplers_fast_writes_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    png = tmp_path / "curves.png"
    script = str(EXAMPLES / "compare_samplers.py")
    args = [script, "--fast", "--out", str(png), "--samplers", "random,aalu"]
    out = ok(run(args, tmp_path))
    assert png.read_bytes()[:8] == PNG_MAGIC
    assert f"learning curves saved to {png}" in out
    header = next(line for line in out.splitlines() if line.split()[:1] == ["labeled"])
    assert header.split() == ["labeled", "random", "aalu"]


def test_compare_samplers_rejects_unknown_name(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        load("compare_samplers.py").main(["--samplers", "random,nope"])
    assert exc.value.code == 2
    assert "unknown sampler(s) ['nope']" in capsys.readouterr().err


# ----------------------------------------------------------------- cifar10_aalu.py

CIFAR = str(EXAMPLES / "cifar10_aalu.py")
# Runs the script with torchvision made unimportable, whether or not it is installed.
NO_TORCHVISION = (
    "import runpy, sys; sys.modules['torchvision'] = None; "
    "sys.argv = sys.argv[1:]; runpy.run_path(sys.argv[0], run_name='__main__')"
)


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    assert proc.returncode == 1, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("cifar10_aalu.py:")]
    assert len(errors) == 1, proc.stderr
    for fragment in fragments:
        assert fragment in errors[0]


def test_cifar10_missing_data(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # In-process: the data is checked before torchvision is imported.
    with pytest.raises(SystemExit) as exc:
        load("cifar10_aalu.py").main(["--data-dir", str(tmp_path / "nowhere")])
    assert exc.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("cifar10_aalu.py: error: CIFAR-10 not found")
    assert "cifar-10-batches-py" in err and "download=True" in err


@pytest.mark.slow
def test_cifar10_missing_torchvision(tmp_path: Path) -> None:
    (tmp_path / "cifar-10-batches-py").mkdir()
    proc = run(["-c", NO_TORCHVISION, CIFAR, "--data-dir", str(tmp_path)], tmp_path)
    assert_one_line_error(proc, "torchvision is needed", "ModuleNotFoundError", ".[vision]")


@pytest.mark.slow
def test_cifar10_broken_torchvision(tmp_path: Path) -> None:
    # A torchvision built for another torch fails at import with a RuntimeError.
    fake = tmp_path / "site" / "torchvision"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise RuntimeError('operator torchvision::nms does not exist')\n"
    )
    (tmp_path / "cifar-10-batches-py").mkdir()
    proc = run([CIFAR, "--data-dir", str(tmp_path)], tmp_path, site=tmp_path / "site")
    assert_one_line_error(proc, "RuntimeError: operator torchvision::nms does not exist")


FAKE_TORCHVISION = {
    "__init__.py": "from . import datasets, models, transforms\n",
    "transforms.py": """
        class _Identity:
            def __init__(self, *args, **kwargs):
                pass

            def __call__(self, x):
                return x

        Compose = RandomHorizontalFlip = ToTensor = Normalize = _Identity
    """,
    "datasets.py": """
        import os
        import torch

        class CIFAR10(torch.utils.data.Dataset):
            # Random 3x8x8 "images" whose class shifts the mean, so that a model learns.
            def __init__(self, root, train=True, transform=None, download=False):
                if not os.path.isdir(os.path.join(root, "cifar-10-batches-py")):
                    raise RuntimeError("Dataset not found or corrupted.")
                g = torch.Generator().manual_seed(0 if train else 1)
                n = 2500 if train else 1200
                self.targets = torch.randint(0, 10, (n,), generator=g)
                shift = self.targets.view(-1, 1, 1, 1) / 3
                self.data = torch.randn(n, 3, 8, 8, generator=g) + shift

            def __len__(self):
                return len(self.targets)

            def __getitem__(self, i):
                return self.data[i], self.targets[i]
    """,
    "models.py": """
        from torch import nn

        class _Net(nn.Module):
            def __init__(self, num_classes):
                super().__init__()
                self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)
                self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
                self.pool = nn.AdaptiveAvgPool2d(1)
                self.fc = nn.Linear(64, num_classes)

            def forward(self, x):
                return self.fc(self.pool(self.maxpool(self.conv1(x).relu())).flatten(1))

        def resnet18(num_classes=1000):
            return _Net(num_classes)
    """,
}


@pytest.mark.slow
def test_cifar10_fast_with_stand_in_torchvision(tmp_path: Path) -> None:
    fake = tmp_path / "site" / "torchvision"
    fake.mkdir(parents=True)
    for name, source in FAKE_TORCHVISION.items():
        (fake / name).write_text(textwrap.dedent(source))
    (tmp_path / "cifar-10-batches-py").mkdir()
    args = [CIFAR, "--data-dir", str(tmp_path), "--fast", "--device", "cpu", "--workers", "0"]
    out = ok(run([*args, "--out", "result.json"], tmp_path, site=tmp_path / "site"))
    assert "variant aalu, device cpu, 2000 training images" in out
    assert "seed 0  labeled    200 (10 %)" in out and "labeled    400 (20 %)" in out
    header = next(line for line in out.splitlines() if line.startswith("labeled %"))
    rows = out.split(header)[1].split()
    assert rows[0:1] == ["10"] and rows[3:4] == ["15"] and rows[6:7] == ["20"]
    assert (tmp_path / "result.json").is_file()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.slow
def test_distributed_selection_under_torchrun(tmp_path: Path) -> None:
    # Two gloo ranks on this machine, launched as the docs say (torchrun).
    args = [
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        str(EXAMPLES / "distributed_selection.py"),
        "--fast",
    ]
    out = ok(run(args, tmp_path, timeout=180))
    assert "2 rank(s), backend gloo" in out
    cycles = [line for line in out.splitlines() if line.startswith("cycle ")]
    assert len(cycles) == 3
    assert out.count("selected 71 in") == 2
