"""The Label Studio round trip, against a real Label Studio server started by this module.

The server is the ``label-studio`` package in its own virtual environment (its Django
pins stay out of aalearn's): set ``AALEARN_LABEL_STUDIO`` to its ``label-studio``
executable (``.ci/labelstudio.sh`` does), or put ``label-studio`` on ``PATH``; the
server tests skip otherwise. ``AALEARN_LABEL_STUDIO_DB`` (optional) names a migrated
database to start from, which saves the start most of its time. One server per module,
on a free port of 127.0.0.1 with a temporary data directory; a scripted annotator
answers through the server's REST API.
The rules over exported task JSON run without a server.
"""

from __future__ import annotations

import base64
import io
import os
import re
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
import urllib.request
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from aalearn import ActivePool, UncertaintySampler
from aalearn.integrations._labelstudio_rules import collect_labels
from aalearn.integrations.labelstudio import (
    LabelStudioConnectionError,
    LabelStudioError,
    LabelStudioProject,
    image_to_data_uri,
    labeling_config,
)

ROOT = Path(__file__).resolve().parent.parent
ENV_VAR = "AALEARN_LABEL_STUDIO"
# Optional: a database that `label-studio version` migrated (`.ci/labelstudio.sh` makes it).
# A fresh database costs the start ~100 s of migrations; a copy of this one, ~20 s.
DB_ENV_VAR = "AALEARN_LABEL_STUDIO_DB"
TOKEN = "aalearn-test-token-0123456789"
START_TIMEOUT_S = 300.0  # a start that migrates a fresh database: ~2 min on 2 busy cores
CLASSES = ("zero", "one", "two")


# ---------------------------------------------------------------- no server needed
def _decode_png(uri: str) -> np.ndarray:
    """An independent PNG reader for what image_to_data_uri writes (8-bit, filter 0)."""
    png = base64.b64decode(uri.split(",", 1)[1])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, {}
    while pos < len(png):
        size = int.from_bytes(png[pos : pos + 4], "big")
        kind, body = png[pos + 4 : pos + 8], png[pos + 8 : pos + 8 + size]
        assert zlib.crc32(kind + body) == int.from_bytes(
            png[pos + 8 + size : pos + 12 + size], "big"
        )
        chunks[kind] = chunks.get(kind, b"") + body
        pos += 12 + size
    width, height = (
        int.from_bytes(chunks[b"IHDR"][:4], "big"),
        int.from_bytes(chunks[b"IHDR"][4:8], "big"),
    )
    channels = {0: 1, 2: 3, 6: 4}[chunks[b"IHDR"][9]]
    rows = np.frombuffer(zlib.decompress(chunks[b"IDAT"]), np.uint8).reshape(height, -1)
    assert (rows[:, 0] == 0).all()
    return rows[:, 1:].reshape(height, width, channels)


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        (np.arange(12, dtype=np.uint8).reshape(3, 4), np.arange(12).reshape(3, 4, 1)),
        (np.full((2, 2, 3), 0.5), np.full((2, 2, 3), 128)),
        (torch.tensor([[[0.0, 1.0]], [[1.0, 0.0]], [[0.0, 0.0]]]), [[[0, 255, 0], [255, 0, 0]]]),
    ],
    ids=["gray-uint8", "rgb-float", "torch-chw"],
)
def test_image_to_data_uri_round_trips(image: Any, expected: Any) -> None:
    np.testing.assert_array_equal(_decode_png(image_to_data_uri(image)), np.asarray(expected))


def test_image_to_data_uri_opens_in_pillow() -> None:
    pil = pytest.importorskip("PIL.Image")
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    uri = image_to_data_uri(rgb)
    img = pil.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    np.testing.assert_array_equal(np.asarray(img), rgb)


@pytest.mark.parametrize(
    ("image", "error", "match"),
    [
        ("a", TypeError, "str"),  # a str is a URL: the encoder refuses it
        (np.zeros((2, 2, 2)), ValueError, "C in 1, 3, 4"),
        (np.full((2, 2), 16.0), ValueError, r"values in \[0, 1\]"),
        (np.zeros((2, 2), dtype=np.int32), TypeError, "uint8 or float"),
    ],
)
def test_image_to_data_uri_rejects(image: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        image_to_data_uri(image)


def test_labeling_config_is_xml_with_the_choices() -> None:
    import xml.etree.ElementTree as ET

    view = ET.fromstring(labeling_config(["a <b>", 'say "hi"'], kind="image"))
    assert view.find("Image").attrib == {"name": "image", "value": "$image"}
    choices = view.find("Choices")
    assert choices.attrib["toName"] == "image" and choices.attrib["choice"] == "single"
    assert [c.attrib["value"] for c in choices] == ["a <b>", 'say "hi"']
    with pytest.raises(ValueError, match="`class_names` to be unique, but 'a' repeats"):
        labeling_config(["a", "a"])
    with pytest.raises(TypeError, match="`class_names` to be a sequence of str"):
        labeling_config("ab")
    with pytest.raises(ValueError, match="`kind` to be 'image' or 'text'"):
        labeling_config(["a"], kind="audio")  # type: ignore[arg-type]


def _answer(choice: Optional[str], ann_id: int = 1) -> dict[str, Any]:
    if choice is None:
        return {"id": ann_id, "result": [], "was_cancelled": True}
    value = {"choices": [choice]}
    return {"id": ann_id, "result": [{"from_name": "label", "type": "choices", "value": value}]}


def _task(task_id: int, index: Any, *answers: dict[str, Any]) -> dict[str, Any]:
    return {"id": task_id, "data": {"aalearn_index": index}, "annotations": list(answers)}


def test_rules_over_exported_tasks() -> None:
    pool = ActivePool(None, n_items=10)
    pool.label([8], labels=[2])
    pool.label([9])  # labeled with the dataset's own target: no label to compare
    tasks = [
        _task(1, 0, _answer("one")),
        _task(2, 1),  # pending
        _task(3, 2, _answer(None)),  # skipped
        _task(4, 3, _answer(None, 1), _answer("two", 2)),  # one skip, one answer: the answer
        _task(5, 4, _answer("zero", 1), _answer("zero", 2)),  # agreeing duplicates count once
        _task(6, 4, _answer("zero", 3)),  # the same index sent twice, same answer
        _task(7, 8, _answer("two")),  # already labeled, same label
        _task(8, 9, _answer("one")),  # already labeled without an oracle label
    ]
    found = collect_labels(tasks, CLASSES, pool)
    assert found.indices.tolist() == [0, 3, 4] and found.labels.tolist() == [1, 2, 0]
    assert found.pending.tolist() == [1] and found.skipped.tolist() == [2]
    assert found.already_labeled.tolist() == [8, 9] and found.conflicts.size == 0
    assert pool.n_labeled == 2  # collect_labels never changes the pool


@pytest.mark.parametrize(
    ("tasks", "match"),
    [
        ([_task(1, 0, _answer("three"))], "task 1 to choose one of .* unknown label 'three'"),
        ([_task(1, 0, {"id": 5, "result": []})], "annotation 5 of task 1 to hold exactly one"),
        ([_task(1, 0, _answer("one", 1), _answer("two", 2))], "index 0: 'one' .*; 'two'"),
        ([_task(1, 0, _answer("one")), _task(2, 0, _answer("two"))], "index 0: 'one'"),
        ([_task(1, 5, _answer("one"))], r"index 5: 'one' \(annotation 1 of task 1\); 'two' \(the"),
        ([_task(1, 12, _answer("one"))], r"task 1 to hold a dataset index in \[0, 10\)"),
        ([_task(1, "3", _answer("one"))], "task 1 to hold an int dataset index .* '3'"),
        ([{"id": 4, "data": {"image": "x"}, "annotations": []}], "task 4 .* None; was it created"),
    ],
    ids=["unknown", "empty", "conflict", "conflict-across-tasks", "pool", "range", "str", "none"],
)
def test_rules_reject_before_any_change(tasks: list[dict[str, Any]], match: str) -> None:
    pool = ActivePool(None, n_items=10)
    pool.label([5], labels=[2])
    valid = [_task(99, 7, _answer("zero"))]  # a valid task in the same export
    with pytest.raises(ValueError, match=match):
        collect_labels(valid + tasks, CLASSES, pool)
    assert pool.labeled_indices.tolist() == [5] and pool.round == 1


def test_rules_on_conflict_skip_reports_and_imports_the_rest() -> None:
    pool = ActivePool(None, n_items=10)
    pool.label([5], labels=[2])
    tasks = [_task(1, 0, _answer("one", 1), _answer("two", 2)), _task(2, 5, _answer("one"))]
    tasks.append(_task(3, 6, _answer("two")))
    found = collect_labels(tasks, CLASSES, pool, on_conflict="skip")
    assert found.conflicts.tolist() == [0, 5] and found.indices.tolist() == [6]
    with pytest.raises(ValueError, match="`on_conflict` to be 'raise' or 'skip'"):
        collect_labels(tasks, CLASSES, pool, on_conflict="majority")


def test_project_arguments_are_checked_without_contacting_a_server() -> None:
    with pytest.raises(ValueError, match="`url` to start with http"):
        LabelStudioProject("localhost:8080", "t", 1, CLASSES)
    with pytest.raises(TypeError, match="`token` to be a non-empty str"):
        LabelStudioProject("http://localhost:8080", "", 1, CLASSES)
    with pytest.raises(TypeError, match="`project_id` to be an int"):
        LabelStudioProject("http://localhost:8080", "t", "1", CLASSES)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`timeout` to be > 0"):
        LabelStudioProject("http://localhost:8080", "t", 1, CLASSES, timeout=0)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_unreachable_server_is_a_connection_error_naming_the_url() -> None:
    url = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    project = LabelStudioProject(url, "t", 1, CLASSES, timeout=5)
    pool = ActivePool(None, n_items=4)
    with pytest.raises(LabelStudioConnectionError, match=re.escape(f"Label Studio at {url}")):
        project.import_labels(pool)
    with pytest.raises(LabelStudioConnectionError, match=re.escape(url)):
        project.send([0], ["text"])
    # Bad arguments are refused before the network is tried.
    with pytest.raises(ValueError, match="`on_conflict` to be 'raise' or 'skip'"):
        project.import_labels(pool, on_conflict="last")
    with pytest.raises(TypeError, match="`pool` to be an ActivePool"):
        project.import_labels([0, 1])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="`items` to hold one item per index"):
        project.send([0, 1], ["a"])
    with pytest.raises(ValueError, match="unique non-negative"):
        project.send([1, 1], ["a", "b"])
    with pytest.raises(ValueError, match="C in 1, 3, 4"):
        project.send([0], [np.zeros((2, 2, 2))])
    text = LabelStudioProject(url, "t", 1, CLASSES, kind="text")
    with pytest.raises(TypeError, match="text items to be str"):
        text.send([0], [np.zeros((2, 2))])
    assert pool.n_labeled == 0 and pool.round == 0


def test_import_aalearn_does_not_import_the_integration() -> None:
    code = "import sys, aalearn; print(sorted(m for m in sys.modules if 'integrations' in m))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- a real server
def _executable() -> Optional[str]:
    return os.environ.get(ENV_VAR) or shutil.which("label-studio")


def _wait_healthy(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"label-studio exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1.0)
    pytest.fail(f"label-studio gave no /health in {START_TIMEOUT_S} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a fresh Label Studio server, stopped (then killed) at the module's end."""
    exe = _executable()
    if exe is not None and not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        pytest.fail(f"{ENV_VAR}={exe} is not an executable file")
    if exe is None:
        pytest.skip(
            f"Label Studio is not installed: set {ENV_VAR}=/path/to/label-studio (see "
            "`.ci/labelstudio.sh`: python3 -m venv ls-venv && ls-venv/bin/pip install "
            "label-studio) or put label-studio on PATH"
        )
    data = tmp_path_factory.mktemp("label-studio")
    migrated = os.environ.get(DB_ENV_VAR)
    if migrated and Path(migrated).is_file():
        shutil.copyfile(migrated, data / "label_studio.sqlite3")  # no user in it yet
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(
        LABEL_STUDIO_BASE_DATA_DIR=str(data),
        LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN="true",
        LATEST_VERSION_CHECK="false",  # no request to pypi.org at start
        COLLECT_ANALYTICS="false",
    )
    cmd = [exe, "start", "--no-browser", "--host", "127.0.0.1", "--port", str(port)]
    cmd += ["--username", "annotator@example.com", "--password", "aalearn-pw-1"]
    cmd += ["--user-token", TOKEN]
    log = data / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, log)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=20)


def annotate(project: LabelStudioProject, answer: Callable[[int], Optional[str]]) -> int:
    """A scripted annotator: answers each task without annotations through the REST API.

    ``answer(index)`` gives the label name, or ``None`` to skip the task. Returns the
    number of answers posted.
    """
    posted = 0
    for task in project.tasks():
        if task["annotations"]:
            continue
        name = answer(task["data"]["aalearn_index"])
        post(project, task["id"], name)
        posted += 1
    return posted


def post(project: LabelStudioProject, task_id: int, name: Optional[str]) -> None:
    """One annotation of ``task_id``: the choice ``name``, or a skip when ``None``."""
    result = []
    if name is not None:
        value = {"choices": [name]}
        result = [
            {"from_name": "label", "to_name": project.kind, "type": "choices", "value": value}
        ]
    body = {"result": result, "was_cancelled": name is None}
    project.request("POST", f"/api/tasks/{task_id}/annotations/", body)


def _digits() -> tuple[torch.Tensor, torch.Tensor]:
    from sklearn.datasets import load_digits

    x, y = load_digits(n_class=3, return_X_y=True)
    return torch.tensor(x[:150] / 16.0, dtype=torch.float32), torch.tensor(y[:150])


def _train(x: torch.Tensor, y: torch.Tensor, n_features: int) -> torch.nn.Module:
    torch.manual_seed(0)
    model = torch.nn.Linear(n_features, len(CLASSES))
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(30):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


def run_loop(
    server: str, kind: str, x: torch.Tensor, y: torch.Tensor, items: Callable
) -> LabelStudioProject:
    """Two active-learning cycles through the server: select, send, annotate, import."""
    pool = ActivePool(TensorDataset(x, y))
    first = pool.random_unlabeled(9, random_state=0)
    pool.label(first, labels=y[first])
    project = LabelStudioProject.create(server, TOKEN, CLASSES, kind=kind, title=f"loop {kind}")
    truth = {i: CLASSES[int(y[i])] for i in range(len(y))}
    sampler = UncertaintySampler("entropy")
    for cycle in range(2):
        labeled = pool.labeled_indices.copy()
        model = _train(x[labeled], torch.from_numpy(pool.labels(labeled)), x.shape[1])
        picked = sampler.select(model, pool, budget=6)
        assert project.send(picked, items(picked)).tolist() == picked.tolist()
        assert annotate(project, truth.__getitem__) == 6
        found = project.import_labels(pool)
        assert sorted(found.indices.tolist()) == sorted(picked.tolist())
        assert pool.n_labeled == 9 + 6 * (cycle + 1) and pool.round == cycle + 2
        np.testing.assert_array_equal(pool.labels(picked), y[picked].numpy())
        assert found.already_labeled.size == 6 * cycle  # the first cycle's tasks, kept
    tasks = project.tasks()
    assert len(tasks) == 12 and all(t["data"][kind] for t in tasks)
    return project


@pytest.mark.slow
def test_two_cycle_loop_with_images(server: str) -> None:
    x, y = _digits()

    def images(picked: np.ndarray) -> list[np.ndarray]:
        return [x[i].reshape(8, 8).numpy() for i in picked]

    project = run_loop(server, "image", x, y, images)
    # What the annotator's browser gets is the image itself, as a PNG data URI.
    task = project.tasks()[0]
    pixels = _decode_png(task["data"]["image"])[:, :, 0]
    expected = np.round(x[task["data"]["aalearn_index"]].reshape(8, 8).numpy() * 255)
    np.testing.assert_array_equal(pixels, expected)


@pytest.mark.slow
def test_two_cycle_loop_with_text(server: str) -> None:
    words = ("apple", "river", "piano")
    rng = np.random.default_rng(0)
    y = torch.tensor(rng.integers(0, 3, 120))
    texts = [f"a note about the {words[int(c)]} number {i}" for i, c in enumerate(y)]
    x = torch.tensor([[float(w in t) for w in words] for t in texts]) + 0.3 * torch.randn(
        len(texts), 3, generator=torch.Generator().manual_seed(0)
    )
    run_loop(server, "text", x, y, lambda picked: [texts[i] for i in picked])


@pytest.fixture
def project(server: str) -> LabelStudioProject:
    return LabelStudioProject.create(server, TOKEN, CLASSES, kind="text", title="failure cases")


def _by_index(project: LabelStudioProject) -> dict[int, int]:
    return {t["data"]["aalearn_index"]: t["id"] for t in project.tasks()}


@pytest.mark.slow
def test_skip_unknown_duplicate_conflict_through_the_server(project: LabelStudioProject) -> None:
    pool = ActivePool(None, n_items=20)
    assert project.send([3, 4, 5, 6], ["t3", "t4", "t5", "t6"]).tolist() == [3, 4, 5, 6]
    assert project.send([6, 7], ["again", "t7"]).tolist() == [7]  # a re-send adds no duplicate
    assert sorted(_by_index(project)) == [3, 4, 5, 6, 7]
    task = _by_index(project)
    post(project, task[3], "one")
    post(project, task[4], None)  # skipped
    post(project, task[5], "two")
    post(project, task[5], "two")  # a second annotator agrees: labeled once
    post(project, task[6], "seven")  # the server accepts any name; the import does not
    with pytest.raises(ValueError, match=f"task {task[6]} to choose .* unknown label 'seven'"):
        project.import_labels(pool)
    assert pool.n_labeled == 0 and pool.round == 0
    # Fix it in Label Studio: the wrong annotation goes, a right one comes.
    bad = [a["id"] for t in project.tasks() if t["id"] == task[6] for a in t["annotations"]]
    project.request("DELETE", f"/api/annotations/{bad[0]}/")
    post(project, task[6], "zero")
    found = project.import_labels(pool)
    assert found.indices.tolist() == [3, 5, 6] and found.labels.tolist() == [1, 2, 0]
    assert found.skipped.tolist() == [4] and found.pending.tolist() == [7]
    assert pool.round == 1
    # A re-run labels nothing twice; a changed answer is a conflict with the pool.
    again = project.import_labels(pool)
    assert again.indices.size == 0 and again.already_labeled.tolist() == [3, 5, 6]
    post(project, task[3], "two")
    post(project, task[7], "one")
    with pytest.raises(ValueError, match="index 3: 'one' .*; 'two' .*The pool is unchanged"):
        project.import_labels(pool)
    assert pool.round == 1
    found = project.import_labels(pool, on_conflict="skip")
    assert found.conflicts.tolist() == [3] and found.indices.tolist() == [7]
    assert pool.labels([3, 5, 6, 7]).tolist() == [1, 2, 0, 1] and pool.round == 2


class _Proxy(socketserver.ThreadingTCPServer):
    """A TCP relay to the server, to make the server 'go away' mid-run."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        super().__init__(("127.0.0.1", 0), _Relay)


class _Relay(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        upstream = socket.create_connection(self.server.target)  # type: ignore[attr-defined]

        def pump(src: socket.socket, dst: socket.socket) -> None:
            try:
                while chunk := src.recv(65536):
                    dst.sendall(chunk)
            except OSError:
                pass
            finally:
                dst.close()

        back = threading.Thread(target=pump, args=(upstream, self.request), daemon=True)
        back.start()
        pump(self.request, upstream)
        back.join(timeout=30)


@pytest.mark.slow
def test_server_going_away_mid_run_changes_nothing_and_a_rerun_is_safe(server: str) -> None:
    host, port = server.rsplit(":", 1)
    proxy = _Proxy((host.removeprefix("http://"), int(port)))
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    via = f"http://127.0.0.1:{proxy.server_address[1]}"
    project = LabelStudioProject.create(via, TOKEN, CLASSES, kind="text", title="goes away")
    project.send([0, 1, 2], ["a", "b", "c"])
    annotate(project, lambda i: CLASSES[i])
    proxy.shutdown()
    proxy.server_close()
    thread.join(timeout=10)
    pool = ActivePool(None, n_items=3)
    with pytest.raises(LabelStudioConnectionError, match=f"Could not reach Label Studio at {via}"):
        project.import_labels(pool)
    with pytest.raises(LabelStudioConnectionError, match=re.escape(via)):
        project.send([0, 1], ["a", "b"])
    assert pool.n_labeled == 0 and pool.round == 0
    # The server is back (here: reached directly): the re-run labels each item once.
    back = LabelStudioProject(server, TOKEN, project.project_id, CLASSES, kind="text")
    assert back.send([0, 1], ["a", "b"]).size == 0
    assert back.import_labels(pool).indices.tolist() == [0, 1, 2]
    assert back.import_labels(pool).already_labeled.tolist() == [0, 1, 2]
    assert pool.labels().tolist() == [0, 1, 2] and pool.round == 1


@pytest.mark.slow
def test_tokens(server: str) -> None:
    with pytest.raises(LabelStudioError, match="HTTP 401.*LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN"):
        LabelStudioProject.create(server, "wrong-token", CLASSES)
    # A personal access token (a JWT, Label Studio's newer flow) works as well.
    legacy = LabelStudioProject(server, TOKEN, 1, CLASSES)
    pat = legacy.request("POST", "/api/token/")["token"]
    assert pat.count(".") == 2
    project = LabelStudioProject.create(server, pat, CLASSES, kind="text", title="pat")
    assert project.send([0], ["hello"]).tolist() == [0]
    assert project.tasks()[0]["data"] == {"text": "hello", "aalearn_index": 0}
    with pytest.raises(LabelStudioError, match="HTTP 404"):
        LabelStudioProject(server, TOKEN, 10_000, CLASSES).tasks()


def _page_blocks() -> list[str]:
    text = (ROOT / "docs" / "labelstudio.md").read_text()
    return re.findall(r"^```python\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


@pytest.mark.slow
def test_docs_page_runs_as_written(server: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The page's python blocks in order; after each block that sends, a scripted annotator."""
    from sklearn.datasets import load_digits

    monkeypatch.setenv("LABEL_STUDIO_URL", server)
    monkeypatch.setenv("LABEL_STUDIO_API_KEY", TOKEN)
    truth = load_digits().target
    blocks = _page_blocks()
    assert len(blocks) == 4
    namespace: dict[str, Any] = {"__name__": "docs_page"}
    for block in blocks:
        exec(compile(block, str(ROOT / "docs" / "labelstudio.md"), "exec"), namespace)
        if "project.send(" in block:
            project = namespace["project"]
            assert annotate(project, lambda i: str(truth[i])) > 0
    pool = namespace["pool"]
    assert pool.n_labeled == 30 and pool.round == 2
    np.testing.assert_array_equal(pool.labels(), truth[pool.labeled_indices])


@pytest.mark.slow
def test_example_script_runs_a_loop(server: str, tmp_path: Path) -> None:
    script = ROOT / "examples" / "labelstudio_loop.py"
    args = ["--url", server, "--token", TOKEN, "--cycles", "2", "--budget", "5"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, str(script), *args, "--scripted-annotator"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("imported 5 labels; pending [], skipped []") == 2
    assert "disagreed with the dataset on 0 of them" in proc.stdout
    assert "done: 30 labeled in 3 rounds" in proc.stdout
    # A re-run on the same project sends and labels nothing twice.
    project_id = re.search(r"project (\d+):", proc.stdout).group(1)  # type: ignore[union-attr]
    cmd += ["--project-id", project_id, "--cycles", "1"]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "cycle 0: 30 labeled" in proc.stdout
