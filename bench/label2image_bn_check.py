"""Does batch norm explain a label2image student's worst maps? One run's student scored on the 52
bundled held-out maps three ways: as trained (running statistics), with the running statistics
re-estimated on the whole training maps, and with each map's own batch statistics.

    python bench/label2image_bn_check.py bench/out/label2image/demo_uniform_1over10_s0
"""

from __future__ import annotations

import copy
import sys

import torch

from gancompress.arch.dynamic import recalibrate_batchnorm
from gancompress.data.bundled_labels import bundled_label_maps
from gancompress.data.label_maps import one_hot
from gancompress.export.student import load_student
from gancompress.metrics.sr import psnr_rgb
from gancompress.teachers import load_teacher


def main(run: str):
    torch.set_num_threads(1)
    student, _ = load_student(run)
    teacher = load_teacher("demo-label2image")
    ev = [one_hot(ids, 8)[None] for _, ids in bundled_label_maps("eval", 256, 8, views=13)]
    tr = [one_hot(ids, 8)[None] for _, ids in bundled_label_maps("train", 256, 8, views=4)]
    targets = [teacher.predict(x)[0] for x in ev]

    def score(model, train_mode=False):
        model.train(train_mode)
        with torch.no_grad():
            ps = [psnr_rgb(model(x).clamp(0, 1)[0], t) for x, t in zip(ev, targets)]
        return {"mean": sum(ps) / len(ps), "worst": min(ps)}

    recal = copy.deepcopy(student)
    recalibrate_batchnorm(recal, [torch.cat(tr[i:i + 4]) for i in range(0, len(tr), 4)])
    print({"as trained": score(student), "recalibrated on training maps": score(recal),
           "each map's own batch statistics": score(copy.deepcopy(student), train_mode=True)})


if __name__ == "__main__":
    main(sys.argv[1])
