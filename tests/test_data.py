"""Tests for gancompress.data: loading, degradation, bundled photographs, eval sets, patches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from gancompress.data.bundled import EVAL_NAMES, TRAIN_NAMES, bundled_photographs, bundled_tiny
from gancompress.data.degrade import bicubic_downscale, bicubic_upscale
from gancompress.data.images import (
    list_images,
    load_folder,
    load_image,
    quantize,
    save_image,
)
from gancompress.data.patches import PatchSampler, split_pairs
from gancompress.data.sr_sets import load_sr_eval_set
from gancompress.errors import UserError


def _rand_rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def _write(path, h=32, w=40, seed=0, mode="RGB"):
    arr = _rand_rgb(h, w, seed)
    im = Image.fromarray(arr, "RGB")
    if mode != "RGB":
        im = im.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path)
    return path


# ----------------------------------------------------------------------------- images


def test_grayscale_loads_as_rgb(tmp_path):
    p = tmp_path / "g.png"
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8), "L").save(p)
    img = load_image(p)
    assert img.shape == (3, 8, 8) and img.dtype == torch.float32
    assert torch.equal(img[0], img[1]) and torch.equal(img[1], img[2])
    assert abs(float(img[0, 0, 1]) - 1 / 255) < 1e-7


def test_rgba_composited_on_white(tmp_path):
    p = tmp_path / "a.png"
    arr = np.zeros((4, 4, 4), dtype=np.uint8)
    arr[..., 0] = 255  # red
    arr[:2, :, 3] = 255  # top half opaque, bottom half fully transparent
    Image.fromarray(arr, "RGBA").save(p)
    img = load_image(p)
    assert img.shape == (3, 4, 4)
    assert torch.allclose(img[:, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert torch.allclose(img[:, 3, 0], torch.ones(3))  # transparent -> white


def test_palette_and_16bit_load_as_rgb(tmp_path):
    _write(tmp_path / "p.png", mode="P")
    assert load_image(tmp_path / "p.png").shape == (3, 32, 40)
    arr16 = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4369)  # 0 .. 65535
    Image.fromarray(arr16).save(tmp_path / "d.png")
    img = load_image(tmp_path / "d.png")
    assert img.shape == (3, 4, 4)
    assert float(img.max()) == 1.0 and float(img.min()) == 0.0


def test_save_load_roundtrip_quantizes(tmp_path):
    x = torch.rand(3, 9, 11) * 1.2 - 0.1
    save_image(x, tmp_path / "sub" / "dir" / "x.png")
    y = load_image(tmp_path / "sub" / "dir" / "x.png")
    assert torch.allclose(y, quantize(x), atol=1e-6)


def test_corrupt_alone_raises_naming_it(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"this is not a png at all \x00\x01\x02" * 10)
    with pytest.raises(UserError, match="bad.png"):
        load_image(tmp_path / "bad.png")
    with pytest.raises(UserError, match="bad.png"):
        load_folder(tmp_path)


def test_corrupt_skipped_with_warning_when_others_remain(tmp_path, capsys):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\ngarbage" * 5)
    _write(tmp_path / "good.png")
    got = load_folder(tmp_path)
    assert [n for n, _ in got] == ["good.png"]
    err = capsys.readouterr().err
    assert "warning" in err and "bad.png" in err


def test_missing_empty_and_imageless_folders(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        list_images(tmp_path / "nope")
    with pytest.raises(UserError, match="empty"):
        list_images(tmp_path)
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(UserError, match=r"no images in .*\.png"):
        load_folder(tmp_path, hint="point --train-data at a folder of images")
    with pytest.raises(UserError, match="not a folder"):
        list_images(tmp_path / "notes.txt")


def test_list_images_sorted_case_insensitive_not_recursive(tmp_path):
    _write(tmp_path / "b.PNG")
    _write(tmp_path / "a.JPG")
    _write(tmp_path / "sub" / "c.png")
    (tmp_path / "z.txt").write_text("x")
    assert [p.name for p in list_images(tmp_path)] == ["a.JPG", "b.PNG"]


def test_too_small_images(tmp_path, capsys):
    _write(tmp_path / "small.png", h=10, w=50)
    with pytest.raises(UserError, match="small.png.*at least 16"):
        load_folder(tmp_path, min_size=16)
    _write(tmp_path / "big.png", h=20, w=20)
    got = load_folder(tmp_path, min_size=16)
    assert [n for n, _ in got] == ["big.png"]
    err = capsys.readouterr().err
    assert "small.png" in err and "16" in err


# ----------------------------------------------------------------------------- degrade


def test_bicubic_downscale_crops_and_sizes():
    hr = torch.rand(3, 30, 43)
    hr_c, lr = bicubic_downscale(hr, 4)
    assert hr_c.shape == (3, 28, 40) and lr.shape == (3, 7, 10)
    assert torch.equal(hr_c, hr[:, :28, :40])
    for method in ("torch", "pil"):
        up = bicubic_upscale(lr, 4, method=method)
        assert up.shape == (3, 28, 40) and float(up.min()) >= 0 and float(up.max()) <= 1
    flat = torch.full((3, 16, 16), 0.5)
    assert torch.allclose(bicubic_downscale(flat, 2)[1], torch.full((3, 8, 8), 128 / 255))


# ----------------------------------------------------------------------------- bundled


def test_bundled_photographs_train_eval_disjoint():
    train = bundled_photographs("train")
    ev = bundled_photographs("eval")
    assert len(train) >= 8 and 3 <= len(ev) <= 4
    tn, en = {n for n, _ in train}, {n for n, _ in ev}
    assert not tn & en
    assert tn <= set(TRAIN_NAMES) and en <= set(EVAL_NAMES)
    for _, img in train + ev:
        assert img.dim() == 3 and img.shape[0] == 3 and img.dtype == torch.float32
        assert min(img.shape[1:]) >= 256
        assert 0.0 <= float(img.min()) and float(img.max()) <= 1.0
    with pytest.raises(UserError):
        bundled_photographs("test")


def test_bundled_tiny():
    tiny = bundled_tiny()
    assert len(tiny) == 2
    for name, img in tiny:
        assert img.shape == (3, 96, 96)
        assert name.split("_96")[0] in TRAIN_NAMES
    assert torch.equal(tiny[0][1], bundled_tiny()[0][1])


# ----------------------------------------------------------------------------- eval sets


def _make_pair_dirs(root, scale, names=("a", "b"), hr_size=(40, 48)):
    for i, n in enumerate(names):
        hr = torch.from_numpy(_rand_rgb(*hr_size, seed=i)).permute(2, 0, 1).float() / 255
        hr_c, lr = bicubic_downscale(hr, scale)
        save_image(hr_c, root / "HR" / f"{n}.png")
        save_image(lr, root / "LR" / f"{n}.png")


def test_eval_set_scale_subfolder_layout(tmp_path):
    _make_pair_dirs(tmp_path / "x4", 4)
    got = load_sr_eval_set(tmp_path, 4)
    assert [n for n, _, _ in got] == ["a", "b"]
    for _, lr, hr in got:
        assert lr.shape == (3, 10, 12) and hr.shape == (3, 40, 48)


def test_eval_set_hr_lr_layout_and_suffix_pairing(tmp_path):
    _make_pair_dirs(tmp_path, 2)
    (tmp_path / "LR" / "b.png").rename(tmp_path / "LR" / "bx2.png")
    got = load_sr_eval_set(tmp_path, 2)
    assert [n for n, _, _ in got] == ["a", "b"]
    assert got[1][1].shape == (3, 20, 24)


def test_eval_set_hr_only_layout(tmp_path):
    _write(tmp_path / "img.png", h=42, w=51)
    (name, lr, hr), = load_sr_eval_set(tmp_path, 4)
    assert name == "img" and hr.shape == (3, 40, 48) and lr.shape == (3, 10, 12)


def test_eval_set_pairing_errors(tmp_path):
    _make_pair_dirs(tmp_path, 4)
    save_image(torch.rand(3, 10, 12), tmp_path / "LR" / "orphan.png")
    with pytest.raises(UserError, match="orphan.png"):
        load_sr_eval_set(tmp_path, 4)
    (tmp_path / "LR" / "orphan.png").unlink()
    save_image(torch.rand(3, 9, 12), tmp_path / "LR" / "a.png")  # wrong size
    with pytest.raises(UserError, match=r"a\.png.*9"):
        load_sr_eval_set(tmp_path, 4)


def test_eval_set_names_available_scales(tmp_path):
    _make_pair_dirs(tmp_path / "x2", 2)
    with pytest.raises(UserError, match="x2.*no x4"):
        load_sr_eval_set(tmp_path, 4)


def test_eval_set_missing_or_empty(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_sr_eval_set(tmp_path / "nope", 4)
    with pytest.raises(UserError, match="no images"):
        load_sr_eval_set(tmp_path, 4)


# ----------------------------------------------------------------------------- patches


def _nearest_pair(h, w, scale, seed=0):
    lr = torch.rand(3, h, w, generator=torch.Generator().manual_seed(seed))
    target = lr.repeat_interleave(scale, dim=1).repeat_interleave(scale, dim=2)
    return lr, target


def test_patch_sampler_alignment():
    scale = 3
    pairs = [_nearest_pair(20, 25, scale, 0), _nearest_pair(17, 30, scale, 1)]
    sampler = PatchSampler(pairs, lr_patch=8, scale=scale, batch_size=16, seed=5)
    lr_b, t_b = sampler.next_batch()
    assert lr_b.shape == (16, 3, 8, 8) and t_b.shape == (16, 3, 24, 24)
    # target = nearest upsampling of lr, so it must survive crop + flip + rot90 unchanged
    up = lr_b.repeat_interleave(scale, dim=2).repeat_interleave(scale, dim=3)
    assert torch.equal(up, t_b)


def test_patch_sampler_without_augment_matches_crop():
    scale, p = 2, 5
    pairs = [_nearest_pair(12, 14, scale, 0), _nearest_pair(9, 11, scale, 1)]
    # a target that is not derived from lr (e.g. a teacher output): crops must still line up
    pairs = [(lr, t + 0.01 * torch.arange(t.shape[-1]).float()) for lr, t in pairs]
    s = PatchSampler(pairs, lr_patch=p, scale=scale, batch_size=8, seed=0, augment=False)
    lr_b, t_b = s.next_batch()
    for i in range(8):
        hits = [
            (k, y, x)
            for k, (lr, _) in enumerate(pairs)
            for y in range(lr.shape[1] - p + 1)
            for x in range(lr.shape[2] - p + 1)
            if torch.equal(lr[:, y : y + p, x : x + p], lr_b[i])
        ]
        assert len(hits) == 1
        k, y, x = hits[0]
        target = pairs[k][1]
        assert torch.equal(t_b[i], target[:, y * scale : (y + p) * scale, x * scale : (x + p) * scale])


def test_patch_sampler_align_puts_corners_on_the_grid():
    # every pixel's value is its own (y, x): a crop's first pixel tells where it was taken
    h, w, p = 37, 41, 8
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    im = torch.stack([yy, xx, yy * 0])
    s = PatchSampler([(im, im)], lr_patch=p, scale=1, batch_size=64, seed=0, augment=False, align=4)
    lr_b, t_b = s.next_batch()
    ys, xs = lr_b[:, 0, 0, 0].long(), lr_b[:, 1, 0, 0].long()
    assert torch.equal(lr_b, t_b)
    assert (ys % 4 == 0).all() and (xs % 4 == 0).all()
    assert int(ys.max()) <= h - p and int(xs.max()) <= w - p
    assert len(set(ys.tolist())) > 3 and len(set(xs.tolist())) > 3  # still random along the grid
    free = PatchSampler([(im, im)], lr_patch=p, scale=1, batch_size=64, seed=0, augment=False).next_batch()[0]
    assert (free[:, 1, 0, 0].long() % 4 != 0).any()


def test_crop_align_reaches_the_samplers_and_is_checked():
    from gancompress.config import task_config, validate_options

    assert task_config("translate").sampler_options() == {"augment": True, "align": 1}
    cfg = task_config("translate", crop_align=4, pair_aug=False)
    assert cfg.sampler_options() == {"augment": False, "align": 4}
    assert cfg.to_dict()["crop_align"] == 4
    assert "crop_align" not in task_config("translate").to_dict()  # older run directories keep matching
    with pytest.raises(UserError, match="--crop-align"):
        validate_options(task_config("translate", crop_align=0))


def test_patch_sampler_determinism_and_ranks():
    pairs = [_nearest_pair(30, 30, 2, 0)]
    a = PatchSampler(pairs, 8, 2, 4, seed=1).next_batch()
    b = PatchSampler(pairs, 8, 2, 4, seed=1).next_batch()
    c = PatchSampler(pairs, 8, 2, 4, seed=1, rank=1, world_size=2).next_batch()
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_patch_sampler_too_small_names_image():
    pairs = [_nearest_pair(30, 30, 2, 0), _nearest_pair(6, 30, 2, 1)]
    with pytest.raises(UserError, match="tiny.png"):
        PatchSampler(pairs, 8, 2, 4, seed=0, names=["ok.png", "tiny.png"])


def test_split_pairs_disjoint():
    pairs = [_nearest_pair(10, 10, 2, i) for i in range(5)]
    a, b = split_pairs(pairs, seed=3)
    assert len(a) + len(b) == 5 and len(a) == 3
    ids_a, ids_b = {id(p[0]) for p in a}, {id(p[0]) for p in b}
    assert not ids_a & ids_b and len(ids_a | ids_b) == 5
    a2, b2 = split_pairs(pairs, seed=3)
    assert [id(p[0]) for p in a2] == [id(p[0]) for p in a]


def test_split_pairs_single_image_spatial():
    lr, target = _nearest_pair(10, 15, 2)
    (la, ta), = split_pairs([(lr, target)], seed=0)[0]
    (lb, tb), = split_pairs([(lr, target)], seed=0)[1]
    assert la.shape[-1] == 7 and lb.shape[-1] == 8
    assert ta.shape[-1] == 14 and tb.shape[-1] == 16
    assert torch.equal(torch.cat([la, lb], dim=-1), lr)
    assert torch.equal(torch.cat([ta, tb], dim=-1), target)
    _, _, na, nb = split_pairs([(lr, target)], seed=0, names=["x.png"])
    assert na == ["x.png (left half)"] and nb == ["x.png (right half)"]


def test_split_pairs_keeps_the_views_of_a_photo_together():
    pairs = [_nearest_pair(10, 10, 2, i) for i in range(12)]
    names = [f"p{i // 3}.png@view{i % 3}" for i in range(12)]  # 4 photos x 3 views
    _, _, na, nb = split_pairs(pairs, seed=1, names=names)
    src = lambda ns: {n.split("@view")[0] for n in ns}  # noqa: E731
    assert len(na) == len(nb) == 6 and not src(na) & src(nb)
    # one photo's views only: the views themselves are split
    _, _, na, nb = split_pairs(pairs[:3], seed=1, names=names[:3])
    assert len(na) == 2 and len(nb) == 1


def test_training_views_cover_scales_and_are_deterministic():
    from gancompress.data.translate import source_of, square, training_views

    g = torch.Generator().manual_seed(0)
    img = torch.rand(3, 300, 500, generator=g)
    v = training_views([("a.png", img)], 128, 5, seed=3)
    assert [n for n, _ in v] == [f"a.png@view{i}" for i in range(5)] and {source_of(n) for n, _ in v} == {"a.png"}
    assert all(t.shape == (3, 128, 128) for _, t in v)
    assert torch.equal(v[0][1], square(img, 128))  # view 0 is the usual whole-photo square
    assert all(not torch.equal(v[0][1], t) for _, t in v[1:])
    again = training_views([("a.png", img)], 128, 5, seed=3)
    assert all(torch.equal(x, y) for (_, x), (_, y) in zip(v, again))
    jit = training_views([("a.png", img)], 128, 5, seed=3, colour=True)
    assert torch.equal(jit[0][1], v[0][1]) and not torch.equal(jit[1][1], v[1][1])
    assert all(0 <= t.min() and t.max() <= 1 for _, t in jit)
    assert training_views([("a.png", img)], 128, 1, seed=3)[0][0] == "a.png"  # one view: the name unchanged
