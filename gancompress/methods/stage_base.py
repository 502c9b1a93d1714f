"""What the search/retrain stages of `ofa` and `slim` share: logging on rank 0 and patch samplers
over the method's training pairs (split across ranks under torchrun)."""

from __future__ import annotations

from ..distill.loop import is_main, world


class MethodStages:
    def __init__(self, cfg, run, train_pairs, train_names):
        self.cfg, self.run, self.train_pairs, self.train_names = cfg, run, train_pairs, train_names

    def _log(self, msg):
        if not self.cfg.quiet and is_main():
            print(msg, flush=True)

    def _sampler(self, patch, batch, seed):
        from ..data.patches import PatchSampler

        rank, ws = world()
        return PatchSampler(self.train_pairs, patch, self.cfg.scale, batch, seed, names=self.train_names,
                            rank=rank, world_size=ws, **self.cfg.sampler_options())
