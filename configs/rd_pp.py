"""RD++ (Tien et al., CVPR 2023) with the official recipe (docs/reference.md §11.6, docs/rd_pp.md).

    python -m rgpkd_jax.main --config configs/rd_pp.py:mvtec_ad/bottle --workdir workdirs/rd_pp_bottle

WideResNet50-2 teacher, 256 px. Adam betas (0.5, 0.999): learning rate 0.005 for the OCBE and
decoder, 0.001 for the projection layer (``model.proj_lr_ratio`` 0.2); one step per two batches of
16 whose gradients add up (``train.batch_size`` 32 in ``model.micro_batches`` 2 parts); loss =
RD4AD's flattened cosine + 0.2 x the projection loss. Epochs per MVTec AD category as the official
``main.py`` sets them (200, RD4AD's, for anything else). Anomaly map as RD4AD's.
"""

from rgpkd_jax import config_base

# Official main.py: "some classes converge faster than others".
OFFICIAL_EPOCHS = {
    "carpet": 10, "leather": 10, "grid": 260, "tile": 260, "wood": 100, "cable": 240, "capsule": 300,
    "hazelnut": 160, "metal_nut": 160, "screw": 280, "toothbrush": 280, "transistor": 300, "zipper": 300,
    "pill": 200, "bottle": 200,
}


def set_rd_pp(c, category: str) -> None:
    c.train.batch_size = 32        # 2 micro-batches of 16, one optimiser step
    c.train.learning_rate = 0.005  # OCBE and decoder; the projection layer: x proj_lr_ratio
    c.train.b1, c.train.b2 = 0.5, 0.999
    c.train.epochs = OFFICIAL_EPOCHS.get(category, c.train.epochs)
    c.model.micro_batches = 2
    c.model.proj_lr_ratio = 0.2    # 0.001 / 0.005
    c.model.proj_loss_weight = 0.2


def get_config(arg=None):
    _, category, _ = config_base.parse_arg(arg or config_base.DEFAULT_DATASET)
    return config_base.build("rd_pp", arg, defaults=lambda c: set_rd_pp(c, category))
