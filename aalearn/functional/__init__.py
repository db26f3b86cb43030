"""Stateless kernels: uncertainty scores and deterministic streaming top-k selection.

One import line per module; every public name is listed in ``__all__`` (sorted).
"""

from aalearn.functional.badge_seeding import badge
from aalearn.functional.batchbald_greedy import batchbald
from aalearn.functional.coreset import k_center_greedy
from aalearn.functional.coverage import ball_coverage, ball_purity, probcover, probcover_delta
from aalearn.functional.losses import (
    assistant_adversarial_loss,
    assistant_loss,
    kl_divergence,
    ranking_loss,
    representation_loss,
    vaal_discriminator_loss,
    vaal_representation_loss,
    vaal_vae_adversarial_loss,
    vae_adversarial_loss,
    vae_loss,
)
from aalearn.functional.topk import StreamingTopK, topk_indices
from aalearn.functional.typicality import typiclust
from aalearn.functional.uncertainty import bald, entropy, least_confidence, margin

__all__ = [
    "StreamingTopK",
    "assistant_adversarial_loss",
    "assistant_loss",
    "badge",
    "bald",
    "ball_coverage",
    "ball_purity",
    "batchbald",
    "entropy",
    "k_center_greedy",
    "kl_divergence",
    "least_confidence",
    "margin",
    "probcover",
    "probcover_delta",
    "ranking_loss",
    "representation_loss",
    "topk_indices",
    "typiclust",
    "vaal_discriminator_loss",
    "vaal_representation_loss",
    "vaal_vae_adversarial_loss",
    "vae_adversarial_loss",
    "vae_loss",
]
