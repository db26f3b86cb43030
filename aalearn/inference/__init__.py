"""One batched inference pass of a model over pool items.

Samplers never write their own loop over the pool: they ask :func:`collect` (or
the streaming :func:`stream`) for what they need, probabilities, features from a
named layer, per-sample losses, Monte-Carlo dropout samples or the raw inputs,
and get it from a single pass. How the pass reads the user's batches and model
outputs is one :class:`InferenceConfig`.

The package, one module per layer:

* :mod:`~aalearn.inference.config`: :class:`InferenceConfig` and
  :func:`resolve_config`, the one place a call's configuration is resolved;
* :mod:`~aalearn.inference.adapters`: how batches and model outputs are read (the
  defaults of ``input_fn``, ``target_fn`` and ``output_fn``); a new batch layout or
  model output is added there and nowhere else;
* :mod:`~aalearn.inference.features`: the forward hook on the feature layer;
* :mod:`~aalearn.inference.loading`: the device, the model's mode and the batches;
* :mod:`~aalearn.inference.outputs`: :class:`PassRequest` (what a pass computes) and
  :class:`InferenceOutputs` (what it returns), whose fields are the one list of
  outputs;
* :mod:`~aalearn.inference.passes`: :func:`stream` and :func:`collect`.
"""

from aalearn.inference.adapters import default_input_fn, default_target_fn
from aalearn.inference.config import InferenceConfig, resolve_config
from aalearn.inference.features import find_feature_layer
from aalearn.inference.loading import inference_device, preserve_mode
from aalearn.inference.outputs import OUTPUT_FIELDS, InferenceOutputs, PassRequest
from aalearn.inference.passes import collect, stream

__all__ = [
    "OUTPUT_FIELDS",
    "InferenceConfig",
    "InferenceOutputs",
    "PassRequest",
    "collect",
    "default_input_fn",
    "default_target_fn",
    "find_feature_layer",
    "inference_device",
    "preserve_mode",
    "resolve_config",
    "stream",
]
