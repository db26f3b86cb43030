"""Samplers: strategies that pick the next items to label."""

from aalearn.samplers.aalu import AALU_VARIANTS, AALUSampler
from aalearn.samplers.adversarial import AdversarialSampler
from aalearn.samplers.badge import BADGESampler
from aalearn.samplers.base import BaseSampler, Sampler
from aalearn.samplers.batchbald import BatchBALDSampler
from aalearn.samplers.budget_aware import BudgetAwareSampler
from aalearn.samplers.coreset import CoreSetSampler
from aalearn.samplers.probcover import ProbCoverSampler
from aalearn.samplers.random import RandomSampler
from aalearn.samplers.stochastic import StochasticBatchSampler
from aalearn.samplers.trained import FeatureSelectorSampler, SelectorSampler
from aalearn.samplers.typiclust import TypiClustSampler
from aalearn.samplers.uncertainty import UncertaintySampler
from aalearn.samplers.vaal import VAALSampler

__all__ = [
    "AALU_VARIANTS",
    "AALUSampler",
    "AdversarialSampler",
    "BADGESampler",
    "BaseSampler",
    "BatchBALDSampler",
    "BudgetAwareSampler",
    "CoreSetSampler",
    "FeatureSelectorSampler",
    "ProbCoverSampler",
    "RandomSampler",
    "Sampler",
    "SelectorSampler",
    "StochasticBatchSampler",
    "TypiClustSampler",
    "UncertaintySampler",
    "VAALSampler",
]
