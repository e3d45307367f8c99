"""RD4AD (Deng & Li, CVPR 2022) with the official recipe (docs/reference.md §2.4).

    python -m rgpkd_jax.main --config configs/rd4ad.py:mvtec_ad/bottle --workdir workdirs/rd4ad_bottle

Adam 0.005, betas (0.5, 0.999), batch 16, 200 epochs, 256 px, WideResNet50-2 teacher, flattened
cosine loss; anomaly map = sum of per-level 1-cos maps, Gaussian sigma 4, score = max.
"""

from rgpkd_jax import config_base


def get_config(arg=None):
    return config_base.build("rd4ad", arg, defaults=lambda c: config_base.set_rd4ad_model(
        c, skips=False, consistency_rate=0.0))
