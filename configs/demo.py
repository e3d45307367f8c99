"""The CPU demo: RD4AD with a ResNet18 teacher on the embedded synthetic dataset (`make demo`).

    python -m rgpkd_jax.main --config configs/demo.py --workdir workdirs/demo --mode train_eval

Finishes in a few minutes on 2 CPU cores and prints image AUROC, pixel AUROC and AU-PRO. It uses
ImageNet teacher weights when they are in the cache or can be downloaded, and otherwise a random
teacher, which it says loudly: with a random teacher the numbers are not results.
"""

from rgpkd_jax import config_base


def _defaults(c):
    config_base.set_rd4ad_model(c, skips=False, consistency_rate=0.0)
    c.dataset.image_size = 128
    c.teacher.arch = "resnet18"
    c.teacher.fallback_to_random = True
    c.train.epochs = 20
    c.train.batch_size = 16
    c.train.checkpoint_every_steps = 50
    c.train.log_every_steps = 5
    c.eval.num_visualise = 4


def get_config(arg=None):
    """``arg`` defaults to synthetic/grid; ``,tiny`` shrinks the demo further, as any config."""
    return config_base.build("rd4ad", arg, defaults=_defaults, default_dataset="synthetic/grid")
