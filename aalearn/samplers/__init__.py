"""Samplers: strategies that pick the next items to label."""

from aalearn.samplers.base import BaseSampler, Sampler
from aalearn.samplers.random import RandomSampler
from aalearn.samplers.uncertainty import UncertaintySampler

__all__ = ["BaseSampler", "RandomSampler", "Sampler", "UncertaintySampler"]
