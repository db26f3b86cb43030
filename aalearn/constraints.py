"""Parameter constraints a sampler declares once, checked by :class:`aalearn.BaseSampler`.

A sampler lists the rule of each constructor argument in ``_parameter_constraints``;
``select`` and ``score`` check every argument against its rule before any work, with one
wording for every sampler: a wrong type is a ``TypeError``, a wrong value a
``ValueError``, and both name the argument ("Expected argument `factor` to be >= 1,
but got 0."). NumPy numbers are accepted wherever Python numbers are.

Examples
--------
>>> import aalearn
>>> from aalearn.constraints import Int, Options
>>> class Demo(aalearn.BaseSampler):
...     _parameter_constraints = {"factor": Int(1), "rule": Options(("a", "b"))}
...     def __init__(self, *, factor=4, rule="a", inference=None, random_state=None):
...         super().__init__(inference=inference, random_state=random_state)
...         self.factor, self.rule = factor, rule
>>> Demo(factor=0)._validate_params()
Traceback (most recent call last):
...
ValueError: Expected argument `factor` to be >= 1, but got 0.
>>> Demo(rule=3)._validate_params()
Traceback (most recent call last):
...
TypeError: Expected argument `rule` to be a str, one of ['a', 'b'], but got int (3).
"""

from aalearn._validation import (
    Bool,
    Constraint,
    FlagOrCallable,
    Int,
    Options,
    Real,
    Rule,
    Widths,
    validate_params,
)

__all__ = [
    "Bool",
    "Constraint",
    "FlagOrCallable",
    "Int",
    "Options",
    "Real",
    "Rule",
    "Widths",
    "validate_params",
]
