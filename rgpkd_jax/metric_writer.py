"""Training metrics as JSON lines in the workdir, mirrored to absl logging and a progress bar."""

from __future__ import annotations

import json
import math
import os
import sys
import time

from absl import logging

from rgpkd_jax import files


class MetricWriter:
    """Appends one JSON object per log step to `<workdir>/metrics.jsonl` (resumes append)."""

    def __init__(self, workdir: str, total_steps: int, initial_step: int, enabled: bool = True):
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.enabled = enabled
        self._bar = None
        if enabled:
            self._drop_records_after(initial_step)
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm
            self._bar = tqdm(total=total_steps, initial=initial_step, unit="step", dynamic_ncols=True)

    def _drop_records_after(self, step: int) -> None:
        """After a resume, steps beyond the checkpoint are redone: forget their old records."""
        records = read_metrics(os.path.dirname(self.path))
        kept = [r for r in records if r["step"] <= step]
        if len(kept) == len(records):
            return
        with files.atomic_write(self.path) as f:
            f.writelines(json.dumps(r) + "\n" for r in kept)

    def write(self, step: int, values: dict) -> None:
        if not self.enabled:
            return
        record = {"step": step, "time": time.time(), **{k: _plain(v) for k, v in values.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        summary = " ".join(f"{k}={v:.5g}" if isinstance(v, float) else f"{k}={v}"
                           for k, v in record.items() if k not in ("step", "time"))
        if self._bar is not None:
            self._bar.set_postfix_str(summary, refresh=False)
        else:
            logging.info("step %d: %s", step, summary)

    def advance(self, steps: int) -> None:
        if self._bar is not None:
            self._bar.update(steps)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _plain(v):
    """numpy/jax scalars -> python numbers (JSON has no NaN: write it as a string)."""
    try:
        v = v.item()
    except AttributeError:
        pass
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    return v


def read_metrics(workdir: str) -> list[dict]:
    """The records of ``<workdir>/metrics.jsonl``."""
    return files.read_json_lines(os.path.join(workdir, "metrics.jsonl"))
