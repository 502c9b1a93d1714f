"""Translation batches labelled by the teacher on each crop (data/teacher_views.py)."""

import torch

from gancompress.data.teacher_views import TeacherViewSampler
from gancompress.errors import UserError


class _InstanceNormTeacher(torch.nn.Module):
    """A teacher whose output depends on the whole input (instance norm), like a CycleGAN."""

    def forward(self, x):
        return torch.sigmoid(torch.nn.functional.instance_norm(x))

    def predict(self, x):
        return self(x).clamp(0, 1)


def _images():
    g = torch.Generator().manual_seed(0)
    return [torch.rand(3, 40, 56, generator=g), torch.rand(3, 64, 48, generator=g)]


def test_labels_are_the_teacher_output_of_the_crop_itself():
    t = _InstanceNormTeacher()
    s = TeacherViewSampler(_images(), t, 24, 5, seed=1)
    x, y = s.next_batch()
    assert x.shape == y.shape == (5, 3, 24, 24)
    torch.testing.assert_close(y, t.predict(x))
    # a crop of the whole image's output would differ: instance norm sees the whole image
    whole = t.predict(_images()[0][None])[0, :, :24, :24]
    assert (whole - t.predict(_images()[0][None, :, :24, :24])[0]).abs().max() > 1e-3


def test_deterministic_and_resumable():
    t = _InstanceNormTeacher()
    a, b = TeacherViewSampler(_images(), t, 16, 3, seed=4), TeacherViewSampler(_images(), t, 16, 3, seed=4)
    a.next_batch()
    state = a.state_dict()
    xa, _ = a.next_batch()
    b.load_state_dict(state)
    xb, _ = b.next_batch()
    assert torch.equal(xa, xb)
    other = TeacherViewSampler(_images(), t, 16, 3, seed=4, rank=1, world_size=2).next_batch()[0]
    assert not torch.equal(other, TeacherViewSampler(_images(), t, 16, 3, seed=4).next_batch()[0])


def test_fixed_views_are_plain_crops_and_small_images_are_refused():
    t = _InstanceNormTeacher()
    imgs = _images()
    x, _ = TeacherViewSampler(imgs, t, 16, 4, seed=0, augment=False, rescale=False).next_batch()
    # without flips or rescaling every view is a crop of one of the images, pixel for pixel
    for v in x:
        found = any((im.unfold(1, 16, 1).unfold(2, 16, 1) == v[:, None, None]).all(0).all(-1).all(-1).any()
                    for im in imgs)
        assert found
    try:
        TeacherViewSampler(imgs, t, 48, 2, seed=0, names=["a.png", "b.png"])
    except UserError as e:
        assert "a.png" in str(e) and "--patch" in str(e)
    else:
        raise AssertionError("a too small image must be refused")


class _CountingTeacher(_InstanceNormTeacher):
    def __init__(self):
        super().__init__()
        self.views = 0

    def predict(self, x):
        self.views += x.shape[0]
        return super().predict(x)


def test_label_reuse_keeps_exact_labels_costs_less_and_resumes_exactly():
    t = _CountingTeacher()
    s = TeacherViewSampler(_images(), t, 16, 4, seed=2, reuse=4)
    batches = [s.next_batch() for _ in range(20)]
    for x, y in batches:  # every label is still the teacher's output for that very view
        torch.testing.assert_close(y, _InstanceNormTeacher().predict(x))
    # pool of 2*4*4 = 32 filled once, then one fresh view per step
    assert t.views == 32 + 19
    # a copy resumed from the state gives the same batches (the pool travels in the state)
    state = {k: (v.clone() if torch.is_tensor(v) else v) for k, v in s.state_dict().items()}
    nxt = [s.next_batch() for _ in range(3)]
    r = TeacherViewSampler(_images(), _InstanceNormTeacher(), 16, 4, seed=2, reuse=4)
    r.load_state_dict(state)
    for (xa, ya), (xb, yb) in zip(nxt, [r.next_batch() for _ in range(3)]):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    t16 = _CountingTeacher()  # reuse above the batch size: one new view every 4 steps
    s16 = TeacherViewSampler(_images(), t16, 16, 4, seed=2, reuse=16)
    for _ in range(41):
        s16.next_batch()
    assert t16.views == 2 * 4 * 16 + 10
    try:
        TeacherViewSampler(_images(), t, 16, 4, seed=2, reuse=0)
    except UserError as e:
        assert "--label-reuse" in str(e)
    else:
        raise AssertionError("reuse 0 must be refused")
