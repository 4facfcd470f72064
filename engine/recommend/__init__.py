"""Recommendations: people, groups, challenges and races to join (docs/models.md).

A matrix factorisation with side features, trained with the BPR ranking loss on implicit
interactions; an exact dot-product index over its item vectors; business rules applied by the
caller after the model; a registry of versions on disk with a ``current`` pointer.
"""

from __future__ import annotations

from engine.recommend.data import KINDS, Interactions, build
from engine.recommend.evaluate import Scores, evaluate, time_split
from engine.recommend.index import Index
from engine.recommend.model import Model, train
from engine.recommend.registry import Registry

__all__ = ["KINDS", "Index", "Interactions", "Model", "Registry", "Scores", "build", "evaluate", "time_split", "train"]
