"""Any torch model, any dataset: inputs, outputs, targets and features as users have them.

Each case runs through the samplers themselves and asserts the picks (against a twin
model of the plain shape) or the error message.
"""

from __future__ import annotations

import io
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset

import aalearn
from aalearn.inference import collect

N, D, C = 60, 6, 3
CPU = {"device": "cpu"}
METHODS = ["entropy", "margin", "least_confidence"]


def _data() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(N, D, generator=g)
    b = torch.randn(N, 2, generator=g)
    y = torch.arange(N) % C
    return a, b, y


class TwoInputs(nn.Module):
    """forward(a, b): logits from both inputs (the multi-input twin of `OneInput`)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Linear(D + 2, 8)
        self.fc = nn.Linear(8, C)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.body(torch.cat([a, b], dim=1))))


class OneInput(nn.Module):
    """The same network on the concatenated input."""

    def __init__(self, twin: TwoInputs) -> None:
        super().__init__()
        self.twin = twin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.twin(x[:, :D], x[:, D:])


class Records(Dataset):
    """Dict items, as a HuggingFace dataset with_format('torch') gives them."""

    def __init__(self, label_key: str = "label") -> None:
        self.a, self.b, self.y = _data()
        self.label_key = label_key

    def __len__(self) -> int:
        return N

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"a": self.a[i], "b": self.b[i], self.label_key: self.y[i]}


def _pool(dataset: Dataset, n_labeled: int = 10, **kwargs) -> aalearn.ActivePool:
    pool = aalearn.ActivePool(dataset, **kwargs)
    pool.label(np.arange(n_labeled))
    return pool


def _reference_picks(method: str = "entropy", budget: int = 10) -> np.ndarray:
    a, b, y = _data()
    model = OneInput(TwoInputs())
    pool = _pool(TensorDataset(torch.cat([a, b], 1), y))
    return aalearn.UncertaintySampler(method, inference=CPU).select(model, pool, budget)


# ------------------------------------------------------------------- inputs


def test_input_fn_returning_a_tuple_calls_model_with_positional_args():
    a, b, y = _data()
    pool = _pool(TensorDataset(a, b, y))
    sampler = aalearn.UncertaintySampler(
        inference={**CPU, "input_fn": lambda batch: (batch[0], batch[1])}
    )
    np.testing.assert_array_equal(sampler.select(TwoInputs(), pool, 10), _reference_picks())


def test_input_fn_returning_a_dict_calls_model_with_keywords():
    a, b, y = _data()
    pool = _pool(TensorDataset(a, b, y))
    fn = lambda batch: {"b": batch[1], "a": batch[0]}  # noqa: E731
    sampler = aalearn.UncertaintySampler(inference={**CPU, "input_fn": fn})
    np.testing.assert_array_equal(sampler.select(TwoInputs(), pool, 10), _reference_picks())


@pytest.mark.parametrize("label_key", ["label", "labels"])
def test_dict_batches_go_to_model_as_keywords_without_their_label(label_key):
    pool = _pool(Records(label_key))
    for method in METHODS:
        picked = aalearn.UncertaintySampler(method, inference=CPU).select(TwoInputs(), pool, 10)
        np.testing.assert_array_equal(picked, _reference_picks(method))


def test_forward_rejecting_keys_names_them_and_its_parameters():
    class Extra(Records):
        def __getitem__(self, i):
            return {**super().__getitem__(i), "text_id": torch.tensor(i)}

    pool = _pool(Extra())
    msg = (
        r"forward does not take the batch key\(s\) \['text_id'\]: .*keys \['a', 'b', "
        r"'text_id'\].*its forward's parameters are \['a', 'b'\]\. Pass inference=\{'input_fn'"
    )
    with pytest.raises(TypeError, match=msg):
        aalearn.UncertaintySampler(inference=CPU).select(TwoInputs(), pool, 3)


def test_a_custom_label_key_is_left_out_of_the_model_call():
    pool = _pool(Records("target"))
    with pytest.raises(TypeError, match=r"batch key\(s\) \['target'\]"):
        aalearn.UncertaintySampler(inference=CPU).select(TwoInputs(), pool, 3)
    picked = aalearn.UncertaintySampler(inference={**CPU, "label_key": "target"}).select(
        TwoInputs(), pool, 10
    )
    np.testing.assert_array_equal(picked, _reference_picks())


def test_nested_inputs_are_moved_and_batch_size_is_the_first_tensor():
    seen = []

    class Nested(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.twin = TwoInputs()

        def forward(self, parts: dict, scale: float) -> torch.Tensor:
            seen.append((type(parts["pair"]).__name__, parts["pair"][0].device.type))
            return self.twin(*parts["pair"]) * scale

    a, b, y = _data()
    fn = lambda batch: ({"pair": [batch[0], batch[1]]}, 1.0)  # noqa: E731
    out = collect(Nested(), TensorDataset(a, b, y), np.arange(N), input_fn=fn, batch_size=25)
    assert out.probs.shape == (N, C)
    assert seen == [("list", "cpu")] * 3  # batches of 25, 25, 10: the size of the first tensor


def test_an_input_without_a_tensor_says_what_to_pass():
    class Strings(Dataset):
        def __len__(self):
            return 4

        def __getitem__(self, i):
            return "text"

    with pytest.raises(TypeError, match=r"model input to be a tensor.*inference=\{'input_fn'"):
        collect(nn.Linear(2, 2), Strings(), np.arange(4))


# ------------------------------------------------------------------ outputs


class Wrapped(nn.Module):
    """The plain model, its logits wrapped as `kind` says."""

    def __init__(self, inner: nn.Module, kind: str) -> None:
        super().__init__()
        self.inner, self.kind = inner, kind

    def forward(self, x: torch.Tensor):
        logits = self.inner(x)
        if self.kind == "tuple":
            return logits, x
        if self.kind == "list":
            return [logits]
        if self.kind == "dict":
            return {"loss": None, "logits": logits}
        if self.kind == "object":
            return types.SimpleNamespace(logits=logits)
        if self.kind == "probs":
            return logits.softmax(-1)
        if self.kind == "log_probs":
            return logits.log_softmax(-1)
        return {"scores": logits}  # needs output_fn


def _plain_pool() -> tuple[aalearn.ActivePool, nn.Module]:
    a, b, y = _data()
    return _pool(TensorDataset(torch.cat([a, b], 1), y)), OneInput(TwoInputs())


@pytest.mark.parametrize(
    ("kind", "extra"),
    [
        ("tuple", {}),
        ("list", {}),
        ("dict", {}),
        ("object", {}),
        ("probs", {"outputs": "probs"}),
        ("log_probs", {"outputs": "log_probs"}),
        ("custom", {"output_fn": lambda out: out["scores"]}),
    ],
)
def test_output_shapes_give_the_plain_picks(kind, extra):
    pool, plain = _plain_pool()
    model = Wrapped(plain, kind)
    for method in METHODS:
        picked = aalearn.UncertaintySampler(method, inference={**CPU, **extra}).select(
            model, pool, 10
        )
        np.testing.assert_array_equal(picked, _reference_picks(method))
    ours = collect(model, pool.dataset, np.arange(N), device="cpu", **extra)
    ref = collect(plain, pool.dataset, np.arange(N), device="cpu")
    torch.testing.assert_close(ours.probs, ref.probs, rtol=1e-5, atol=1e-6)


def test_a_softmax_head_is_not_softmaxed_twice():
    pool, plain = _plain_pool()
    head = Wrapped(plain, "probs")
    wrong = collect(head, pool.dataset, np.arange(N), device="cpu").probs
    right = collect(head, pool.dataset, np.arange(N), device="cpu", outputs="probs").probs
    ref = collect(plain, pool.dataset, np.arange(N), device="cpu").probs
    torch.testing.assert_close(right, ref, rtol=1e-5, atol=1e-6)
    assert (wrong.max(1).values < ref.max(1).values).all()  # softmax twice flattens them


class Binary(nn.Module):
    """One logit per item, shape (B,) or (B, 1), as logits, probabilities or log-probs."""

    def __init__(self, shape: str, outputs: str = "logits") -> None:
        super().__init__()
        torch.manual_seed(1)
        self.fc = nn.Linear(D + 2, 1)
        self.shape, self.outputs = shape, outputs

    def logit(self, x: torch.Tensor) -> torch.Tensor:
        return 3 * self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.logit(x)
        if self.outputs == "probs":
            out = torch.sigmoid(out)
        elif self.outputs == "log_probs":
            out = F.logsigmoid(out)
        return out.squeeze(1) if self.shape == "(B,)" else out


class TwoLogitTwin(nn.Module):
    """The binary model's twin with two logits [0, l]."""

    def __init__(self, binary: Binary) -> None:
        super().__init__()
        self.binary = binary

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logit = self.binary.logit(x)
        return torch.cat([torch.zeros_like(logit), logit], dim=1)


@pytest.mark.parametrize("shape", ["(B,)", "(B, 1)"])
@pytest.mark.parametrize("outputs", ["logits", "probs", "log_probs"])
def test_binary_one_logit_head_picks_as_its_two_logit_twin(shape, outputs):
    pool, _ = _plain_pool()
    model = Binary(shape, outputs)
    twin = TwoLogitTwin(model)
    for method in METHODS:
        ours = aalearn.UncertaintySampler(method, inference={**CPU, "outputs": outputs})
        ref = aalearn.UncertaintySampler(method, inference=CPU)
        np.testing.assert_array_equal(ours.select(model, pool, 15), ref.select(twin, pool, 15))
    probs = collect(model, pool.dataset, np.arange(N), device="cpu", outputs=outputs).probs
    p1 = torch.sigmoid(model.logit(pool.dataset.tensors[0])).squeeze(1).detach()
    torch.testing.assert_close(probs, torch.stack([1 - p1, p1], 1), rtol=1e-4, atol=1e-5)
    # and its picks are not the lowest indices (the bug: constant scores)
    picked = aalearn.UncertaintySampler(inference={**CPU, "outputs": outputs}).select(
        model, pool, 5
    )
    assert picked.tolist() != pool.unlabeled_indices[:5].tolist()


@pytest.mark.parametrize("sampler_name", ["entropy", "bald", "coreset"])
def test_a_per_token_output_is_a_clear_error_on_every_path(sampler_name):
    class Tokens(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(D + 2, 4 * C)
            self.drop = nn.Dropout(0.1)

        def forward(self, x):
            return self.drop(self.fc(x)).reshape(-1, 4, C)  # (B, T, C)

    pool, _ = _plain_pool()
    sampler = {
        "entropy": aalearn.UncertaintySampler(inference=CPU),
        "bald": aalearn.UncertaintySampler("bald", mc_samples=2, inference=CPU),
        "coreset": aalearn.CoreSetSampler(inference=CPU),
    }[sampler_name]
    msg = (
        r"class scores for a batch of (\d+) items to have shape \(\1, C\) with C >= 2, or "
        r"\(\1,\) / \(\1, 1\) for a binary model with one logit, but got shape \(\1, 4, 3\)\. "
        r".*inference=\{'output_fn'"
    )
    with pytest.raises(ValueError, match=msg):
        sampler.select(Tokens(), pool, 3)


def test_an_output_without_logits_says_what_to_pass():
    pool, plain = _plain_pool()
    with pytest.raises(TypeError, match=r"class scores: a tensor.*but got dict.*'output_fn'"):
        aalearn.UncertaintySampler(inference=CPU).select(Wrapped(plain, "custom"), pool, 3)


# ------------------------------------------------------------------ targets


def test_losses_read_the_label_key_of_dict_batches_and_target_fn():
    data = Records("labels")
    model = TwoInputs()
    ref = collect(OneInput(model), TensorDataset(torch.cat([data.a, data.b], 1), data.y),
                  np.arange(N), losses=True).losses  # fmt: skip
    ours = collect(model, data, np.arange(N), losses=True).losses
    torch.testing.assert_close(ours, ref)
    shifted = collect(
        model, data, np.arange(N), losses=True, target_fn=lambda b: (b["labels"] + 1) % C
    ).losses
    logits = model(data.a, data.b).detach()
    torch.testing.assert_close(
        shifted, F.cross_entropy(logits, (data.y + 1) % C, reduction="none"), rtol=1e-5, atol=1e-6
    )


@pytest.mark.slow
def test_every_sampler_accepts_target_fn():
    pool = _pool(Records())
    fn = lambda b: b["label"]  # noqa: E731
    for sampler in (
        aalearn.RandomSampler(inference={"target_fn": fn}, random_state=0),
        aalearn.UncertaintySampler(inference={**CPU, "target_fn": fn}),
        aalearn.CoreSetSampler(inference={**CPU, "target_fn": fn}),
        aalearn.AALUSampler(epochs=1, hidden=(8,), inference={**CPU, "target_fn": fn}),
        aalearn.AdversarialSampler(epochs=1, hidden=(8,), inference={**CPU, "target_fn": fn}),
    ):
        assert sampler.select(TwoInputs(), pool, 4).shape == (4,)


def test_oracle_labels_on_dict_items_keep_the_structure():
    data = Records()
    pool = aalearn.ActivePool(data)
    pool.label([0, 1])  # the dataset's own labels
    pool.label([2, 3], labels=[2, 0])  # the oracle's
    batch = next(iter(DataLoader(pool.labeled_dataset(), batch_size=4)))
    assert sorted(batch) == ["a", "b", "label"]
    assert batch["label"].tolist() == [0, 1, 2, 0] and batch["label"].dtype == torch.int64
    torch.testing.assert_close(batch["a"], data.a[:4])
    plain = aalearn.ActivePool([{"x": 1.0, "y": 5}, {"x": 2.0, "y": 6}], label_key="y")
    plain.label([1], labels=[0])
    assert plain.labeled_dataset()[0] == {"x": 2.0, "y": 0}
    with pytest.raises(TypeError, match="`label_key` to be a str or None"):
        aalearn.ActivePool(data, label_key=1)  # type: ignore[arg-type]


def test_a_label_outside_the_models_classes_is_a_clear_error_at_selection():
    data = Records()
    pool = aalearn.ActivePool(data)
    pool.label(np.arange(6))
    pool.label([6, 7], labels=[7, 1])  # 7: the model has 3 classes
    msg = (
        r"1 item\(s\) have a label outside the model's 3 classes \[0, 3\), e.g. dataset "
        r"indices \[6\]"
    )
    sampler = aalearn.AALUSampler(variant="lossLearn", epochs=1, hidden=(8,), inference=CPU)
    with pytest.raises(ValueError, match=msg):
        sampler.select(TwoInputs(), pool, 3)
    with pytest.raises(ValueError, match=msg):
        collect(TwoInputs(), data, np.arange(8), losses=True, labels=pool.labels(np.arange(8)))


# ----------------------------------------------------------------- features


class RegisteredBackwards(nn.Module):
    """Registers `fc` before `proj`, calls proj then fc: 'auto' must pick fc's input."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(5, C)
        self.proj = nn.Linear(D + 2, 5)

    def forward(self, x):
        return self.fc(torch.tanh(self.proj(x)))


def test_auto_features_are_the_input_of_the_last_linear_called():
    pool, _ = _plain_pool()
    model = RegisteredBackwards()
    x = pool.dataset.tensors[0]
    out = collect(model, pool.dataset, np.arange(N), features=True, batch_size=16)
    torch.testing.assert_close(out.features, torch.tanh(model.proj(x)).detach())
    picked = aalearn.CoreSetSampler(inference=CPU).select(model, pool, 5)
    named = aalearn.CoreSetSampler(inference={**CPU, "feature_layer": "fc"}).select(model, pool, 5)
    np.testing.assert_array_equal(picked, named)


def test_feature_source_output_and_pooling_of_feature_maps():
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(64, 2))
    x = torch.randn(12, 1, 4, 4)
    data = TensorDataset(x, torch.zeros(12, dtype=torch.long))
    maps = conv[1](conv[0](x)).detach()  # (12, 4, 4, 4)
    out = collect(conv, data, np.arange(12), features=True, feature_layer="1",
                  feature_source="output", batch_size=5)  # fmt: skip
    torch.testing.assert_close(out.features, maps.mean(dim=(2, 3)))
    flat = collect(conv, data, np.arange(12), features=True, feature_layer="1",
                   feature_source="output", feature_pooling="flatten")  # fmt: skip
    torch.testing.assert_close(flat.features, maps.flatten(1))
    by_input = collect(conv, data, np.arange(12), features=True, feature_layer="2")
    torch.testing.assert_close(by_input.features, maps.mean(dim=(2, 3)))


def test_feature_layer_errors_name_the_layer_and_close_matches():
    pool, _ = _plain_pool()
    model = RegisteredBackwards()
    with pytest.raises(ValueError, match=r"but got 'prj'; close matches: \['proj'\]"):
        aalearn.CoreSetSampler(inference={**CPU, "feature_layer": "prj"}).select(model, pool, 3)

    class Unused(RegisteredBackwards):
        def __init__(self):
            super().__init__()
            self.spare = nn.Linear(5, 5)

    msg = r"The feature layer 'spare' was not called during the forward pass"
    with pytest.raises(ValueError, match=msg):
        aalearn.CoreSetSampler(inference={**CPU, "feature_layer": "spare"}).select(
            Unused(), pool, 3
        )


# -------------------------------------------------------------- conventions


def test_pool_state_dict_loads_under_weights_only():
    pool = aalearn.ActivePool(None, n_items=50)
    pool.label([3, 1])
    pool.label([7], labels=[2])
    buf = io.BytesIO()
    torch.save({"model": nn.Linear(2, 2).state_dict(), "pool": pool.state_dict()}, buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)["pool"]
    assert all(isinstance(v, (torch.Tensor, int)) for v in state.values())
    restored = aalearn.ActivePool(None, n_items=50)
    restored.load_state_dict(state)
    assert restored.labeled_indices.tolist() == [1, 3, 7]
    assert restored.labels([7]).tolist() == [2] and restored.round == 2
    np.testing.assert_array_equal(restored.labeled_round, pool.labeled_round)


def test_save_into_a_missing_directory_names_the_users_path(tmp_path):
    pool = aalearn.ActivePool(None, n_items=5)
    target = tmp_path / "nope" / "pool.npz"
    with pytest.raises(FileNotFoundError, match=r"Cannot save the pool to '.*nope/pool\.npz'"):
        pool.save(target)
    pool.label([2])
    pool.save(tmp_path / "pool.npz")  # the no-pickle archive still round-trips
    again = aalearn.ActivePool(None, n_items=5)
    again.load(tmp_path / "pool.npz")
    assert again.labeled_indices.tolist() == [2]
