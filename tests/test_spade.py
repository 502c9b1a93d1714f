"""GauGAN / SPADE teachers (issue 17, first part): the public release's checkpoint layout, spectral
norm folded at load, label-map input, MACs and params."""

import pytest
import torch
from torch import nn

from gancompress.errors import UserError


def _release_like(path, label_nc=5, ngf=4, hidden=8, ups="normal", norm="batch", seed=0):
    """A random SPADE generator saved as the public release saves one: spectral norm on the blocks'
    convs (weight_orig / weight_u / weight_v after a few training-mode power iterations), batch-norm
    running statistics moved off their defaults. Returns (model in eval mode, a label map)."""
    from gancompress.teachers.zoo_spade import SPADEGenerator

    torch.manual_seed(seed)
    g = SPADEGenerator(label_nc, ngf, ups, hidden, 3, norm)
    for name, m in list(g.named_modules()):
        if isinstance(m, nn.Conv2d) and ("conv_0" in name or "conv_1" in name or "conv_s" in name):
            nn.utils.spectral_norm(m)
    k = 2 ** g.n_up
    seg = torch.nn.functional.one_hot(torch.randint(0, label_nc, (2, k, 2 * k)), label_nc).permute(0, 3, 1, 2).float()
    g.train()
    with torch.no_grad():
        for _ in range(3):  # power iterations move u, v; batch norm gathers statistics
            g(seg)
    g.eval()
    torch.save(g.state_dict(), path)
    return g, seg


def test_release_checkpoint_round_trips_with_spectral_norm_folded(tmp_path):
    from gancompress.teachers import load_teacher

    g, seg = _release_like(tmp_path / "latest_net_G.pth")
    sd = torch.load(tmp_path / "latest_net_G.pth", weights_only=True)
    assert "head_0.conv_0.weight_orig" in sd and "head_0.conv_0.weight_u" in sd  # the release's layout
    assert "head_0.norm_0.mlp_shared.0.weight" in sd and "up_0.conv_s.weight_orig" in sd
    t = load_teacher(f"spade:{tmp_path / 'latest_net_G.pth'}")
    assert t.info["ngf"] == 4 and t.info["label_nc"] == 5 and t.info["norm"] == "batch"
    assert t.in_channels == 5 and not t.map_input  # a label map is never moved into [-1, 1]
    with torch.no_grad():
        ref = (g(seg) + 1) / 2  # the teacher speaks [0, 1]
        got = t(seg)
    assert (got - ref).abs().max() < 1e-5
    assert not any(k.endswith("weight_orig") for k in t.model.state_dict())  # a plain network


def test_fold_matches_pytorch_eval_weight():
    from gancompress.teachers.zoo_spade import fold_spectral_norm

    torch.manual_seed(0)
    conv = nn.utils.spectral_norm(nn.Conv2d(6, 5, 3))
    conv.train()
    for _ in range(4):
        conv(torch.randn(1, 6, 8, 8))
    conv.eval()
    conv(torch.randn(1, 6, 8, 8))  # eval: weight recomputed from the stored u, v
    folded = fold_spectral_norm({k: v for k, v in conv.state_dict().items()})
    assert torch.allclose(folded["weight"], conv.weight, atol=1e-6)


@pytest.mark.parametrize("ups, norm", [("most", "instance"), ("normal", "instance")])
def test_variants_are_read_off_the_file(tmp_path, ups, norm):
    from gancompress.teachers import load_teacher

    g, seg = _release_like(tmp_path / "g.pth", ups=ups, norm=norm)
    t = load_teacher(f"spade:{tmp_path / 'g.pth'}")
    assert t.info["num_upsampling"] == ups and t.info["norm"] == norm
    with torch.no_grad():
        assert (t(seg) - (g(seg) + 1) / 2).abs().max() < 1e-5


def test_gaugan_proportions_macs_and_params():
    """GauGAN on Cityscapes (ngf 64, 35 labels + instance edges, 256x512): GAN Compression reports
    93.0 M params and 281 GMACs (its own counter); FlopCounterMode counts 292.7 G."""
    from gancompress.arch.cost import measure_macs
    from gancompress.teachers.zoo_spade import SPADEGenerator

    with torch.device("meta"):
        g = SPADEGenerator(36, 64)
    assert round(sum(p.numel() for p in g.parameters()) / 1e6, 1) == 93.0
    macs = measure_macs(g.to_empty(device="cpu").eval(), (256, 512), channels=36)
    assert 0.95 * 292.7e9 < macs < 1.05 * 292.7e9


def test_profile_and_refusals(tmp_path, capsys):
    from gancompress.api import profile
    from gancompress.cli import main
    from gancompress.teachers import load_teacher

    _release_like(tmp_path / "g.pth")
    p = profile(f"spade:{tmp_path / 'g.pth'}", size=64, repeats=1)
    assert p["input"] == "1x5x64x64" and p["macs"] > 0
    torch.save({"model.1.weight": torch.zeros(4, 3, 7, 7)}, tmp_path / "not.pth")
    with pytest.raises(UserError, match="not a SPADE/GauGAN generator"):
        load_teacher(f"spade:{tmp_path / 'not.pth'}")
    assert main(["compress", "--teacher", f"spade:{tmp_path / 'g.pth'}", "--out", str(tmp_path / "r")]) == 2
    assert "use --task label2image" in capsys.readouterr().err
    t = load_teacher(f"spade:{tmp_path / 'g.pth'}")
    with pytest.raises(UserError, match="multiples of 32"):
        t(torch.zeros(1, 5, 40, 64))


# ---- label maps ------------------------------------------------------------------------------
def _save(a, path, mode=None):
    import numpy as np
    from PIL import Image

    Image.fromarray(np.asarray(a, dtype=np.uint8), mode=mode).save(path)
    return path


def test_label_maps_as_ids_indexed_and_coloured(tmp_path):
    import json

    import numpy as np
    from PIL import Image

    from gancompress.data.label_maps import load_label_map, load_palette, one_hot, resize_labels

    ids = np.array([[0, 1, 2], [2, 1, 0]], dtype=np.uint8)
    assert load_label_map(_save(ids, tmp_path / "grey.png"), 3).tolist() == ids.tolist()
    p = Image.fromarray(ids, mode="P")
    p.putpalette([0, 0, 0, 200, 0, 0, 0, 200, 0] + [0] * 759)
    p.save(tmp_path / "indexed.png")
    assert load_label_map(tmp_path / "indexed.png", 3).tolist() == ids.tolist()  # the index is the id
    colours = {0: [128, 64, 128], 1: [70, 70, 70], 2: [220, 20, 60]}
    rgb = np.array([[colours[int(i)] for i in row] for row in ids])
    (tmp_path / "pal.json").write_text(json.dumps({str(k): v for k, v in colours.items()}))
    pal = load_palette(tmp_path / "pal.json")
    assert load_label_map(_save(rgb, tmp_path / "rgb.png"), 3, pal).tolist() == ids.tolist()
    (tmp_path / "pal.txt").write_text("128 64 128\n70 70 70\n220 20 60\n")
    assert load_palette(tmp_path / "pal.txt") == pal
    x = one_hot(load_label_map(tmp_path / "grey.png", 3), 3, instance=torch.tensor([[1, 1, 2], [1, 1, 2]]))
    assert x.shape == (4, 2, 3) and x[:3].sum(0).eq(1).all() and x[3].tolist() == [[0, 1, 1], [0, 1, 1]]
    assert resize_labels(torch.tensor([[0, 2], [1, 2]]), (4, 4)).unique().tolist() == [0, 1, 2]  # never blended


@pytest.mark.parametrize("case, match", [
    ("out_of_range", "has class id 7 .* --classes is 3; give --classes 8"),
    ("rgb_for_ids", "colour image where class ids are expected"),
    ("unknown_colour", r"colour \[1, 2, 3\] \(6 pixels\) that the palette does not name"),
    ("bad_palette", "each colour must name one class"),
    ("not_image", "cannot be read as an image"),
])
def test_bad_label_maps_are_one_line_errors(tmp_path, case, match):
    import json

    import numpy as np

    from gancompress.data.label_maps import load_label_map, load_palette

    pal = None
    if case == "out_of_range":
        f = _save(np.full((2, 3), 7), tmp_path / "m.png")
    elif case == "rgb_for_ids":
        f = _save(np.dstack([np.zeros((2, 3)), np.ones((2, 3)), np.zeros((2, 3))]) * 200, tmp_path / "m.png")
    elif case == "unknown_colour":
        f = _save(np.tile([1, 2, 3], (2, 3, 1)), tmp_path / "m.png")
        pal = {(0, 0, 0): 0}
    elif case == "bad_palette":
        (tmp_path / "p.json").write_text(json.dumps([[1, 2, 3], [1, 2, 3]]))
        with pytest.raises(UserError, match=match):
            load_palette(tmp_path / "p.json")
        return
    else:
        f = tmp_path / "m.png"
        f.write_text("not a png")
    with pytest.raises(UserError, match=match):
        load_label_map(f, 3, pal)
