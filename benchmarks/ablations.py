"""RGPKD's ablations (docs/rgpkd.md): its parts switched off one at a time, and prompt-bank sizes.

The leaderboard runs them as job variants (`--ablations`), the sanity check as rows of its table,
both named `rgpkd+<ablation>`.
"""

from __future__ import annotations

import dataclasses

METHOD = "rgpkd"  # the method whose switches these are


@dataclasses.dataclass(frozen=True)
class Ablation:
    name: str
    overrides: tuple[str, ...]  # key=value over configs/rgpkd.py
    description: str

    @property
    def label(self) -> str:
        """How tables name it: `rgpkd+<name>`."""
        return f"{METHOD}+{self.name}"


SWITCHES = (
    Ablation("no_prompts", ("model.prompts=False",), "no prompt bank, no fusion"),
    Ablation("no_reconstruction", ("model.reconstruction=False",), "no reconstruction head"),
    Ablation("no_skips", ("model.skips=False",), "no encoder -> decoder skips"),
    Ablation("top_k3", ("model.top_k=3",), "prompt = mean of the 3 nearest bank entries"),
)


def bank_size(size: int) -> Ablation:
    return Ablation(f"bank{size}", (f"model.bank_size={size}",), f"a prompt bank of {size} entries")
