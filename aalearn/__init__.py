"""aalearn: deep active learning for PyTorch.

Keep your model, dataset and training loop; aalearn tells you which unlabeled
items to label next and keeps track of the labeled and unlabeled pools.

``import aalearn`` imports torch, numpy and aalearn only (never torchvision).
"""

from aalearn import embeddings, functional
from aalearn.history import History
from aalearn.inference import InferenceConfig, InferenceOutputs, collect, stream
from aalearn.pool import ActivePool, PoolSubset
from aalearn.samplers import (
    AALUSampler,
    AdversarialSampler,
    BADGESampler,
    BaseSampler,
    BatchBALDSampler,
    BudgetAwareSampler,
    CoreSetSampler,
    ProbCoverSampler,
    RandomSampler,
    Sampler,
    StochasticBatchSampler,
    TypiClustSampler,
    UncertaintySampler,
    VAALSampler,
)

__version__ = "0.1.0"

__all__ = [
    "AALUSampler",
    "ActivePool",
    "AdversarialSampler",
    "BADGESampler",
    "BaseSampler",
    "BatchBALDSampler",
    "BudgetAwareSampler",
    "CoreSetSampler",
    "History",
    "InferenceConfig",
    "InferenceOutputs",
    "PoolSubset",
    "ProbCoverSampler",
    "RandomSampler",
    "Sampler",
    "StochasticBatchSampler",
    "TypiClustSampler",
    "UncertaintySampler",
    "VAALSampler",
    "__version__",
    "collect",
    "embeddings",
    "functional",
    "stream",
]
