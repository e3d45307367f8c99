"""RGPKD as we interpret it (docs/rgpkd.md).

    python -m rgpkd_jax.main --config configs/rgpkd.py:mvtec_ad/bottle --workdir workdirs/rgpkd_bottle

The authors published no training code (docs/reference.md §4); every default below is our choice:
ResNet18 teacher, U-Net student with its own encoder, prompt bank of teacher features with top-1
retrieval used in training and test, reconstruction loss MSE + (1 - SSIM), Adam with warm-up then
linear decay. Ablations: --config.model.prompts=False, .reconstruction=False, .skips=False,
.top_k=3, .bank_size=64.
"""

from rgpkd_jax.config_base import base_config


def get_config(arg=None):
    c = base_config("rgpkd", arg)
    with c.unlocked():
        c.teacher.arch = "resnet18"
        c.model.prompts = True
        c.model.reconstruction = True
        c.model.skips = True
        c.model.top_k = 1
        c.model.bank_size = 0            # 0 = every training image
        c.model.bank_dtype = "float16"
        c.model.rec_weight = 1.0
        c.model.base_width = 64
        c.model.distill_loss = "cosine"
        c.train.optimizer = "adam"
        c.train.learning_rate = 1e-3
        c.train.b1 = 0.9
        c.train.schedule = "warmup_linear_decay"
        c.train.warmup_epochs = 10.0
        c.eval.reconstruction_weight = 0.0
    if c.dataset.image_size == 64:  # tiny: a narrow student
        c.model.base_width = 16
        c.train.warmup_epochs = 0.5
    c.lock()
    return c
