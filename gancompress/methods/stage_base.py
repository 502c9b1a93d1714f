"""What the search/retrain stages of `ofa` and `slim` share: logging on rank 0 and patch samplers
over the method's training pairs (split across ranks under torchrun; compress.make_sampler)."""

from __future__ import annotations

from ..distill.loop import is_main


class MethodStages:
    def __init__(self, cfg, run, train_pairs, train_names, teacher):
        self.cfg, self.run, self.train_pairs, self.train_names = cfg, run, train_pairs, train_names
        self.teacher = teacher

    def _log(self, msg):
        if not self.cfg.quiet and is_main():
            print(msg, flush=True)

    def _sampler(self, patch, batch, seed):
        from ..compress import make_sampler

        return make_sampler(self.cfg, self.train_pairs, self.train_names, patch, batch, seed, self.teacher)
