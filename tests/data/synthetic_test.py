"""The embedded synthetic dataset: deterministic, exact masks, the promised splits."""

import numpy as np
import pytest

from rgpkd_jax.data import synthetic


@pytest.mark.parametrize("category", synthetic.CATEGORIES)
@pytest.mark.parametrize("defect", synthetic.DEFECT_TYPES)
def test_masks_are_exactly_the_changed_pixels(category, defect):
    for seed in range(4):
        good, good_mask = synthetic.make_example(category, "good", seed, 64)
        bad, mask = synthetic.make_example(category, defect, seed, 64)
        assert not good_mask.any() and set(np.unique(mask)) == {0, 255}
        changed = (good != bad).any(axis=-1)
        inside = mask > 0
        assert not changed[~inside].any()  # nothing outside the mask differs
        # A 'missing' patch on a texture may repaint pixels that were already background.
        minimum = 0.3 if defect == "missing" else 0.9
        assert changed[inside].mean() > minimum
        # Strong local change: mean colour difference inside the mask.
        assert np.abs(good.astype(int) - bad)[inside].mean() > 40


def test_deterministic_and_seed_dependent():
    first = synthetic.make_example("disc", "spot", 3, 48)
    again = synthetic.make_example("disc", "spot", 3, 48)
    other = synthetic.make_example("disc", "spot", 4, 48)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], other[0])


def test_splits():
    config = synthetic.SyntheticConfig(name="weave")
    splits = synthetic.list_samples(config)
    assert len(splits["train"]) == config.num_train
    assert all(s.label == 0 and s.mask is None for s in splits["train"])
    test = splits["test"]
    assert sum(s.label == 0 for s in test) == config.num_test_good
    defective = [s for s in test if s.label == 1]
    assert len(defective) == config.num_test_defective and all(s.mask is not None for s in defective)
    counts = {d: sum(s.defect_type == d for s in defective) for d in synthetic.DEFECT_TYPES}
    assert set(counts.values()) == {config.num_test_defective // len(synthetic.DEFECT_TYPES)}
    assert [s.file_name for s in test] == sorted(s.file_name for s in test)
    assert len({s.image for s in splits["train"] + test}) == config.num_train + len(test)  # all distinct
