"""Published numbers our RD4AD stands beside: the paper (primary on MVTec AD), anomalib's benchmark,
the RGPKD repository's `Result_test.csv` (a WRN50 RD-style model), and the RD4AD column of the
SK-RD4AD README's VisA table (primary on VisA); in the unified setting, the ADer benchmark's RD rows
(300 epochs primary, 100 epochs beside them). docs/reference.md §2.9, §3.4, §4.4, §5.8."""

from benchmarks.leaderboard.published import (IMAGE_AUROC, MVTEC_ORDER, PER_IMAGE_AUPRO, PIXEL_AUROC, Reference,
                                              ader_reference, by_scope)

REFERENCES = (
    Reference(
        key="rd4ad_paper", title="RD4AD paper (Deng & Li, CVPR 2022), Tables 1-2, WRN50-2",
        method="rd4ad", dataset="mvtec_ad", primary=True,
        source="docs/reference.md §2.9 (paper tables as recalled; per-class values reproduce the published "
               "means exactly; carpet, bottle, hazelnut, leather, cable confirmed by SK-RD4AD READMEs)",
        caveat="PRO is the RD4AD code's per-image AUPRO; the code selects nothing on test data but "
               "evaluates the test set every 10 epochs",
        values={
            IMAGE_AUROC: {**by_scope(MVTEC_ORDER, (98.9, 100.0, 100.0, 99.3, 99.2, 100.0, 95.0, 96.3, 99.9,
                                                   100.0, 96.6, 97.0, 99.5, 96.7, 98.5)),
                          "mean": 98.5, "mean/textures": 99.5, "mean/objects": 98.0},
            PIXEL_AUROC: {**by_scope(MVTEC_ORDER, (98.9, 99.3, 99.4, 95.6, 95.3, 98.7, 97.4, 98.7, 98.9,
                                                   97.3, 98.2, 99.6, 99.1, 92.5, 98.2)),
                          "mean": 97.8},
            PER_IMAGE_AUPRO: {**by_scope(MVTEC_ORDER, (97.0, 97.6, 99.1, 90.6, 90.9, 96.6, 91.0, 95.8, 95.5,
                                                       92.3, 96.4, 98.2, 94.5, 78.0, 95.4)),
                              "mean": 93.9},
        }),
    Reference(
        key="anomalib_rd", title="anomalib ReverseDistillation benchmark (README), WRN50-2",
        method="rd4ad", dataset="mvtec_ad", primary=False,
        source="docs/reference.md §2.9 secondary reference: anomalib README @ 161bb36 (seed 42, batch 16; "
               "printed as fractions)",
        caveat="anomalib deviates from the official code (docs/reference.md §6)",
        values={
            IMAGE_AUROC: {**by_scope(MVTEC_ORDER, (98.4, 100.0, 100.0, 100.0, 99.7, 100.0, 96.6, 97.4, 100.0,
                                                   100.0, 97.2, 98.5, 95.3, 97.0, 97.8)),
                          "mean": 98.5},
            PIXEL_AUROC: {**by_scope(MVTEC_ORDER, (98.8, 99.2, 99.1, 95.4, 94.7, 98.4, 96.4, 98.7, 98.8,
                                                   96.9, 97.5, 99.6, 99.1, 89.3, 98.4)),
                          "mean": 96.9},
        }),
    Reference(
        key="rgpkd_repo_result_test",
        title="RGPKD repository Result_test.csv: a WRN50 RD-style model, NOT RGPKD",
        method="rd4ad", dataset="mvtec_ad", primary=False,
        source="docs/reference.md §4.4: Cariaaaaaa/RGPKD Result_test.csv (blob 808239c) from test.py @ 4fe7741, "
               "which evaluates WRN50 + OCBE + RD decoder from ./checkpoints/Best.pth (printed as fractions)",
        caveat="unknown training; one checkpoint evaluated on every class; AUPRO is the per-image "
               "variant; the means given in docs/reference.md §4.4 are inferred, so none are listed",
        values={
            PIXEL_AUROC: {"carpet": 99.0, "bottle": 98.1, "hazelnut": 98.9, "leather": 99.5, "cable": 80.4,
                          "capsule": 97.4, "grid": 98.5, "pill": 96.9, "transistor": 83.1, "metal_nut": 94.4,
                          "screw": 98.7, "toothbrush": 99.0, "zipper": 96.8, "tile": 95.0, "wood": 95.4},
            IMAGE_AUROC: {"carpet": 96.0, "bottle": 99.7, "hazelnut": 100.0, "leather": 100.0, "cable": 87.0,
                          "capsule": 80.3, "grid": 97.1, "pill": 89.6, "transistor": 90.1, "metal_nut": 99.4,
                          "screw": 87.0, "toothbrush": 99.4, "zipper": 96.0, "tile": 99.3, "wood": 98.5},
            PER_IMAGE_AUPRO: {"carpet": 96.8, "bottle": 95.0, "hazelnut": 95.2, "leather": 98.9, "cable": 78.6,
                              "capsule": 92.9, "grid": 96.3, "pill": 94.4, "transistor": 68.5,
                              "metal_nut": 91.3, "screw": 94.7, "toothbrush": 93.4, "zipper": 92.3,
                              "tile": 85.8, "wood": 92.1},
        }),
    Reference(
        key="rd4ad_visa_per_sk_readme", title="RD4AD on VisA as given by the SK-RD4AD README",
        method="rd4ad", dataset="visa", primary=True,
        source="docs/reference.md §3.4: RD4AD column of the SK-RD4AD README VisA table; RD4AD itself "
               "publishes no VisA numbers (§2.7)",
        caveat="provenance unknown; the pixel-AUROC mean 97.8 does not match its rows (they average 98.3, "
               "it looks copied from MVTec); AUPRO values of 43-46 on pcb1/2 suggest a different AUPRO "
               "implementation from the SK column",
        values={
            PIXEL_AUROC: {"pcb1": 99.6, "pcb2": 98.3, "pcb3": 99.3, "pcb4": 98.2, "pipe_fryum": 99.1,
                          "candle": 98.9, "capsules": 99.4, "cashew": 94.4, "chewinggum": 97.6, "fryum": 96.4,
                          "macaroni1": 99.3, "macaroni2": 99.1, "mean": 97.8},
            PER_IMAGE_AUPRO: {"pcb1": 43.2, "pcb2": 46.4, "pcb3": 80.3, "pcb4": 72.2, "pipe_fryum": 68.3,
                              "candle": 92.2, "capsules": 56.9, "cashew": 79.0, "chewinggum": 92.5,
                              "fryum": 81.0, "macaroni1": 71.9, "macaroni2": 68.0, "mean": 70.9},
        }),
    ader_reference("rd4ad", "mvtec_ad", 300, primary=True, label="RD", log_dir="rd",
                   mad=81.0,
                   caveat=("the last epoch is far below the log's best on metal_nut (image AUROC 59.9; 99.8 at epoch "
                           "150) and toothbrush (35.8; 99.2 at epoch 90): the mean image AUROC is 90.5, the 100-epoch "
                           "run's 93.6"),
                   rows=(
                       (99.603, 99.880, 98.413, 97.834, 68.037, 67.948, 94.629),  # bottle
                       (81.897, 88.375, 80.645, 84.948, 25.903, 33.018, 76.750),  # cable
                       (98.165, 99.608, 96.889, 98.761, 44.208, 50.448, 95.983),  # capsule
                       (98.395, 99.537, 97.207, 98.982, 57.691, 60.055, 95.595),  # carpet
                       (97.828, 99.266, 96.552, 99.168, 45.907, 47.594, 97.301),  # grid
                       (100.000, 100.000, 100.000, 98.616, 58.255, 59.268, 96.414),  # hazelnut
                       (100.000, 100.000, 100.000, 99.289, 38.182, 45.408, 97.788),  # leather
                       (59.873, 83.617, 93.939, 92.124, 49.969, 52.193, 87.549),  # metal_nut
                       (97.027, 99.477, 97.163, 97.472, 63.106, 64.473, 96.046),  # pill
                       (98.299, 99.452, 96.137, 99.409, 41.338, 44.945, 97.065),  # screw
                       (97.908, 99.233, 95.238, 95.209, 48.365, 60.378, 85.678),  # tile
                       (35.833, 62.560, 85.714, 97.310, 21.270, 40.016, 86.122),  # toothbrush
                       (93.667, 94.431, 90.909, 85.597, 41.710, 44.685, 74.817),  # transistor
                       (99.386, 99.821, 98.333, 95.462, 49.436, 51.695, 91.586),  # wood
                       (99.527, 99.867, 99.160, 98.378, 52.437, 59.901, 95.213),  # zipper
                       (90.5, 95.0, 95.1, 95.9, 47.1, 52.1, 91.2),  # mean (README)
                   )),
    ader_reference("rd4ad", "mvtec_ad", 100, primary=False, label="RD", log_dir="rd",
                   mad=82.2,
                   caveat=("the last epoch is far below the log's best on bottle (image AUROC 40.6; 99.8 at epoch 20)"),
                   rows=(
                       (40.556, 77.462, 86.301, 93.439, 29.633, 48.491, 80.432),  # bottle
                       (81.897, 88.738, 81.407, 83.951, 26.565, 34.397, 77.277),  # cable
                       (98.444, 99.673, 96.889, 98.761, 45.387, 51.751, 96.093),  # capsule
                       (98.957, 99.711, 98.305, 99.067, 59.768, 61.124, 95.843),  # carpet
                       (98.747, 99.594, 97.391, 99.228, 47.597, 48.802, 97.473),  # grid
                       (100.000, 100.000, 100.000, 98.685, 58.556, 59.649, 96.511),  # hazelnut
                       (100.000, 100.000, 100.000, 99.338, 39.075, 46.618, 97.922),  # leather
                       (99.902, 99.977, 99.459, 93.873, 62.848, 64.746, 91.958),  # metal_nut
                       (97.245, 99.518, 96.820, 97.386, 62.984, 64.813, 96.072),  # pill
                       (97.766, 99.275, 96.266, 99.430, 42.288, 47.328, 97.110),  # screw
                       (99.026, 99.636, 97.006, 95.278, 48.710, 61.046, 86.306),  # tile
                       (98.333, 99.384, 96.552, 98.937, 51.826, 57.687, 92.617),  # toothbrush
                       (94.208, 94.834, 89.474, 85.139, 41.823, 44.695, 74.455),  # transistor
                       (99.649, 99.893, 98.333, 95.489, 49.708, 51.626, 91.731),  # wood
                       (99.527, 99.871, 99.160, 98.461, 55.951, 60.952, 95.528),  # zipper
                       (93.6, 97.2, 95.6, 95.8, 48.2, 53.6, 91.2),  # mean (README)
                   )),
    ader_reference("rd4ad", "visa", 300, primary=True, label="RD", log_dir="rd",
                   mad=78.7, rows=(
                       (91.850, 92.738, 83.938, 99.016, 19.091, 30.493, 95.161),  # candle
                       (80.950, 89.689, 81.553, 99.281, 57.286, 59.437, 91.949),  # capsules
                       (93.320, 96.471, 91.542, 92.298, 44.913, 50.109, 84.525),  # cashew
                       (95.506, 97.990, 93.814, 98.705, 58.417, 61.006, 78.130),  # chewinggum
                       (95.840, 98.078, 92.386, 97.000, 48.139, 51.807, 93.146),  # fryum
                       (95.222, 93.711, 88.770, 99.771, 23.603, 31.069, 97.244),  # macaroni1
                       (85.603, 79.288, 81.000, 99.587, 12.260, 20.238, 96.998),  # macaroni2
                       (96.390, 96.399, 91.787, 99.450, 66.787, 62.173, 96.105),  # pcb1
                       (97.340, 96.946, 94.175, 97.736, 21.085, 30.067, 91.671),  # pcb2
                       (96.812, 96.731, 90.566, 98.012, 23.753, 34.617, 93.551),  # pcb3
                       (99.921, 99.922, 98.507, 97.680, 29.974, 35.412, 88.431),  # pcb4
                       (98.220, 99.104, 96.552, 99.101, 55.149, 58.140, 95.856),  # pipe_fryum
                       (93.9, 94.8, 90.4, 98.1, 38.4, 43.7, 91.9),  # mean (README)
                   )),
    ader_reference("rd4ad", "visa", 100, primary=False, label="RD", log_dir="rd",
                   mad=76.9,
                   caveat=("the last epoch is far below the log's best on pcb1 (image AUROC 54.8; 96.4 at epoch 30)"),
                   rows=(
                       (93.130, 93.362, 86.916, 99.117, 24.221, 35.379, 95.471),  # candle
                       (81.783, 90.510, 81.279, 99.318, 60.234, 60.671, 93.014),  # capsules
                       (92.120, 95.689, 91.346, 91.277, 43.828, 49.436, 85.100),  # cashew
                       (95.761, 97.964, 92.632, 98.679, 60.418, 62.587, 78.657),  # chewinggum
                       (95.420, 97.922, 92.537, 96.926, 47.524, 51.650, 93.232),  # fryum
                       (94.807, 92.759, 88.889, 99.767, 23.759, 31.056, 97.357),  # macaroni1
                       (87.368, 82.997, 82.796, 99.615, 12.821, 22.394, 97.224),  # macaroni2
                       (54.760, 47.642, 74.903, 98.644, 18.757, 38.309, 92.522),  # pcb1
                       (97.340, 96.942, 94.059, 97.831, 22.099, 29.953, 91.629),  # pcb2
                       (96.198, 96.131, 90.732, 97.965, 25.286, 34.819, 93.630),  # pcb3
                       (99.980, 99.980, 99.497, 97.776, 30.240, 36.012, 89.174),  # pcb4
                       (98.080, 99.007, 96.517, 99.085, 55.837, 58.229, 96.284),  # pipe_fryum
                       (90.6, 90.9, 89.3, 98.0, 35.4, 42.5, 91.9),  # mean (README)
                   )),
)
