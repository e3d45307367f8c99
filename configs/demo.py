"""The CPU demo: RD4AD with a ResNet18 teacher on the embedded synthetic dataset (`make demo`).

    python -m rgpkd_jax.main --config configs/demo.py --workdir workdirs/demo --mode train_eval

Finishes in a few minutes on 2 CPU cores and prints image AUROC, pixel AUROC and AU-PRO. It uses
ImageNet teacher weights when they are in the cache or can be downloaded, and otherwise a random
teacher, which it says loudly: with a random teacher the numbers are not results.
"""

from rgpkd_jax.config_base import base_config, set_rd4ad_model


def get_config(arg=None):
    c = base_config("rd4ad", arg or "synthetic/grid")
    set_rd4ad_model(c, skips=False, consistency_rate=0.0)
    c.dataset.image_size = 128
    c.teacher.arch = "resnet18"
    c.teacher.fallback_to_random = True
    c.train.epochs = 20
    c.train.batch_size = 16
    c.train.checkpoint_every_steps = 50
    c.train.log_every_steps = 5
    c.eval.num_visualise = 4
    c.lock()
    return c
