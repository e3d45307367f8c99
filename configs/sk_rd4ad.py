"""SK-RD4AD (Park et al., CVPRW 2025): RD4AD + non-corresponding skips (docs/reference.md §3).

    python -m rgpkd_jax.main --config configs/sk_rd4ad.py:mvtec_ad/bottle --workdir workdirs/sk_bottle

Official recipe: as RD4AD, skips E3->D2 and E2->D3, cosine loss (--L2 0) plus rate x the
inter-level consistency loss; rate 0.05 for a single class (the official `--class all` run
silently overrides it to 0.005).
"""

from rgpkd_jax import config_base


def get_config(arg=None):
    return config_base.build("sk_rd4ad", arg, defaults=lambda c: config_base.set_rd4ad_model(
        c, skips=True, consistency_rate=0.05))
