"""The unified (multi-class) setting: one model trained on several categories of a dataset at once.

``dataset.category`` names one category (the classic setting), ``all`` (every category of the
dataset) or several joined by ``+`` (``grid+weave``). A unified run trains on the union of the
categories' training splits and is evaluated on each category's test split alone (docs/unified.md).

How the union is sampled is ``dataset.sampling``:

- ``natural`` (default, as the ADer benchmark): every epoch is a permutation of the union, so
  each image is seen once per epoch and a category's share is its share of the images;
- ``balanced``: every epoch has as many images as the union, split evenly between the categories
  (the first ``len(union) % K`` categories get one more); each category's draws come from an endless
  stream of its own permutations, so a small category repeats its images and a large one's are all
  seen over successive epochs, each image equally often within one.
"""

from __future__ import annotations

import bisect
import functools

import grain
import numpy as np

from rgpkd_jax.data.errors import DatasetError

ALL = "all"
SEPARATOR = "+"
SAMPLINGS = ("natural", "balanced")
# The two settings results are reported in (eval_metrics.json's `setting`, the leaderboard's axis).
PER_CATEGORY, UNIFIED = "per_category", "unified"
SETTINGS = (PER_CATEGORY, UNIFIED)
CATEGORIES_DIR = "categories"  # a unified run's workdir: categories/<category>/ holds its results there


def requested(category: str) -> list[str] | None:
    """The names ``dataset.category`` lists (``None`` for ``all``), without expanding ``all``."""
    if category == ALL:
        return None
    names = category.split(SEPARATOR)
    if any(not name for name in names) or len(set(names)) != len(names):
        raise DatasetError(f"dataset.category={category!r}: name categories once each, joined by "
                           f"{SEPARATOR!r} (e.g. 'grid{SEPARATOR}weave'), or {ALL!r}")
    return names


def is_unified(config) -> bool:
    """Whether ``config`` trains one model on several categories."""
    names = requested(config.dataset.category)
    return names is None or len(names) > 1


def category_names(config) -> list[str]:
    """The categories ``config.dataset.category`` stands for, in the dataset's order for ``all``."""
    names = requested(config.dataset.category)
    if names is not None:
        return names
    import rgpkd_jax.data as data_lib  # pylint: disable=g-import-not-at-top  (the package imports us)
    return data_lib.categories(config.dataset.name, config.dataset.get("manual_dir") or None)


def for_category(config, category: str):
    """A copy of ``config`` for one of its categories (evaluation, thresholds, preparation)."""
    single = config.copy_and_resolve_references()
    single.dataset.category = category
    return single


def sampling(config) -> str:
    value = config.dataset.get("sampling", "natural")
    if value not in SAMPLINGS:
        raise DatasetError(f"dataset.sampling={value!r}; choose one of {list(SAMPLINGS)}")
    return value


class UnionSource:
    """The categories' sources one after another: index ``i`` of the union is index
    ``i - offset[c]`` of category ``c``'s source; every record gains its ``category``."""

    def __init__(self, sources: list, categories: list[str]):
        self.sources, self.categories = sources, list(categories)
        self.sizes = [len(s) for s in sources]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, index: int) -> tuple[int, int]:
        """(category position, index within that category's source) of union index ``index``."""
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} outside the union of {len(self)} records")
        which = bisect.bisect_right(self.offsets, index) - 1
        return which, index - int(self.offsets[which])

    def category_of(self, indices) -> np.ndarray:
        """The category name of each union index."""
        positions = np.searchsorted(self.offsets, np.asarray(indices), side="right") - 1
        return np.asarray(self.categories)[positions]

    def __getitem__(self, index: int) -> dict:
        which, local = self.locate(int(index))
        return {**self.sources[which][local], "category": self.categories[which]}


class BalancedOrder(grain.MapDataset):
    """Union indices in the ``balanced`` order (module docstring); index ``e * len + j`` is position
    ``j`` of epoch ``e``, so grain's repeat, slicing and checkpointed iterators work as with a shuffle."""

    def __init__(self, sizes: list[int], seed: int):
        super().__init__()
        if not sizes or min(sizes) == 0:
            raise DatasetError(f"balanced sampling needs images in every category; sizes {sizes}")
        self.sizes, self.seed = list(sizes), int(seed)
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        total, count = int(self.offsets[-1]), len(sizes)
        self.per_epoch = [total // count + (c < total % count) for c in range(count)]
        self.slot_offsets = np.concatenate([[0], np.cumsum(self.per_epoch)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def __str__(self) -> str:
        return f"BalancedOrder(sizes={self.sizes}, seed={self.seed})"

    @functools.lru_cache(maxsize=4)
    def _epoch_slots(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self.seed, 0, epoch]).permutation(len(self))

    @functools.lru_cache(maxsize=256)
    def _round(self, category: int, repeat: int) -> np.ndarray:
        return np.random.default_rng([self.seed, 1, category, repeat]).permutation(self.sizes[category])

    def __getitem__(self, index):
        if isinstance(index, slice):
            return self.slice(index)
        epoch, position = divmod(int(index), len(self))
        slot = int(self._epoch_slots(epoch)[position])
        category = int(np.searchsorted(self.slot_offsets, slot, side="right") - 1)
        # the category's draw number since the start of training, in its endless stream
        draw = epoch * self.per_epoch[category] + slot - int(self.slot_offsets[category])
        repeat, within = divmod(draw, self.sizes[category])
        return int(self.offsets[category]) + int(self._round(category, repeat)[within])
