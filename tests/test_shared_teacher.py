"""Anchors on the real data in ../shared (skipped with a reason when it is absent)."""

import pytest

from conftest import SHARED

pytestmark = pytest.mark.skipif(not (SHARED / "teachers" / "srgan_x4.pth").is_file(),
                                reason=f"../shared not found at {SHARED} (real teacher and Set5 are not shipped)")


def test_srgan_teacher_set5_psnr_matches_reference():
    """Our loader + metric reproduce the published reference: Set5 x4 PSNR-Y 30.66 dB (border 4)."""
    from gancompress.data.sr_sets import load_sr_eval_set
    from gancompress.evaluate import predict_tiled
    from gancompress.metrics.sr import psnr_y
    from gancompress.teachers import load_teacher

    teacher = load_teacher(f"srgan:{SHARED / 'teachers' / 'srgan_x4.pth'}")
    data = load_sr_eval_set(SHARED / "data" / "sr" / "Set5", 4)
    assert len(data) == 5
    psnr = sum(psnr_y(predict_tiled(teacher, lr, 4), hr, 4) for _, lr, hr in data) / len(data)
    assert psnr == pytest.approx(30.66, abs=0.05)


def test_srgan_teacher_macs_match_reference():
    from gancompress.evaluate import teacher_macs
    from gancompress.teachers import load_teacher

    teacher = load_teacher(f"srgan:{SHARED / 'teachers' / 'srgan_x4.pth'}")
    assert teacher_macs(teacher) / 1e9 == pytest.approx(92.2, abs=0.05)
