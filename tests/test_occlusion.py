"""Occlusion sensitivity (rheed.occlusion, scripts/gradcam.py --method occlusion, benchmarks/pattern_reliance.py)."""
import csv
import importlib.util

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import REPO, make_image_folder, run_script_main, save_random_classifier, write_pattern_image
from rheed.errors import UserError
from rheed.occlusion import class_log_odds, default_patch, occlusion_maps, patch_starts


class BrightBox(torch.nn.Module):
    """Class 0's logit is the mean of rows/columns 8..15, class 1's its negative: the evidence sits in one box."""

    def forward(self, x):
        r = x[:, :, 8:16, 8:16].mean(dim=(1, 2, 3))
        return torch.stack([r, -r], dim=1)


def box_image(size=32):
    x = torch.zeros(1, 3, size, size)
    x[:, :, 8:16, 8:16] = 1.0
    return x


@torch.no_grad()
def reference_map(model, x, k, patch, stride):
    """Every patch position written out; each pixel gets the mean log-odds drop of the patches covering it."""
    size = x.shape[-1]
    starts = sorted(set(range(0, size - patch + 1, stride)) | {size - patch})
    fill = x[0].flatten(1).median(dim=1).values[:, None, None]

    def odds(z):
        logits = model(z)[0]
        return logits[k] - torch.logsumexp(torch.cat([logits[:k], logits[k + 1:]]), dim=0)

    total, count = torch.zeros(size, size), torch.zeros(size, size)
    for top in starts:
        for left in starts:
            z = x.clone()
            z[0, :, top:top + patch, left:left + patch] = fill
            total[top:top + patch, left:left + patch] += odds(x) - odds(z)
            count[top:top + patch, left:left + patch] += 1
    return (total / count).numpy()


def test_patch_positions_cover_the_border():
    assert patch_starts(10, 4, 4) == [0, 4, 6]
    assert patch_starts(12, 4, 4) == [0, 4, 8]
    assert patch_starts(5, 5, 1) == [0]
    assert default_patch(128) == (12, 4) and default_patch(224) == (22, 7) and default_patch(16) == (4, 1)


def test_log_odds_is_log_p_over_one_minus_p():
    logits = torch.tensor([[2.0, -1.0, 0.5], [0.0, 3.0, 1.0]])
    k = torch.tensor([0, 2])
    p = torch.softmax(logits, dim=1).gather(1, k[:, None])[:, 0]
    assert torch.allclose(class_log_odds(logits, k), torch.log(p / (1 - p)), atol=1e-6)
    assert torch.allclose(class_log_odds(logits[:, :2], torch.tensor([1, 1])), logits[:, 1] - logits[:, 0])


def test_map_is_positive_on_the_evidence_and_zero_where_no_patch_reaches_it():
    model, x = BrightBox(), box_image()
    maps, base = occlusion_maps(model, x, [0], patch=4, stride=2)
    assert maps.shape == (1, 32, 32) and base == pytest.approx([2.0])  # r = 1, log-odds 2r
    np.testing.assert_allclose(maps[0], reference_map(model, x, 0, 4, 2), atol=1e-6)
    assert maps[0, 8:16, 8:16].min() > 0
    assert np.all(maps[0, 20:, :] == 0) and np.all(maps[0, :, 20:] == 0) and np.all(maps[0, :4, :4] == 0)
    # for two classes the other class's map is the mirror image: the same box is evidence against it
    against, _ = occlusion_maps(model, x, [1], patch=4, stride=2)
    np.testing.assert_allclose(against, -maps, atol=1e-6)


def test_batching_does_not_change_the_maps_of_a_real_model():
    from models import convnextv2
    from conftest import randomize_
    model = convnextv2.convnextv2_atto(num_classes=2)
    randomize_(model)
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    a, base = occlusion_maps(model, x, [0, 1], patch=8, stride=3, batch_size=5)
    b, _ = occlusion_maps(model, x, [0, 1], patch=8, stride=3, batch_size=64)
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a[1], reference_map(model, x[1:], 1, 8, 3), atol=1e-4)
    assert np.ptp(a[0]) > 0 and np.ptp(a[1]) > 0


def test_pixels_between_sparse_patches_get_zero_not_nan():
    maps, _ = occlusion_maps(BrightBox(), box_image(), [0], patch=4, stride=10)   # patches at 0, 10, 20, 28
    assert np.isfinite(maps).all()
    assert np.all(maps[0, 4:10, :] == 0) and maps[0, 10:14, 10:14].min() > 0


def test_bad_patch_or_stride_is_refused():
    for patch, stride in ((0, 1), (33, 1), (4, 0)):
        with pytest.raises(UserError, match="occlusion patch must be 1..32 px"):
            occlusion_maps(BrightBox(), box_image(), [0], patch=patch, stride=stride)


def test_cli_writes_signed_maps_with_the_predict_probabilities(tmp_path):
    ckpt = save_random_classifier(tmp_path / "checkpoint-best.pth")
    rng = np.random.default_rng(0)
    images = []
    for kind in ("rough", "smooth"):
        images.append(tmp_path / f"{kind}.png")
        write_pattern_image(images[-1], kind, 48, rng)
    out = tmp_path / "occ"
    run_script_main("gradcam", ["--checkpoint", ckpt, "--images", *images, "--method", "occlusion",
                                "--patch", 8, "--stride", 4, "--out", out, "--dpi", 50])
    for name in ("occlusion.png", "occlusion.pdf", "occlusion.csv", "occlusion.npz"):
        assert (out / name).stat().st_size > 0
    assert not (out / "gradcam.npz").exists()
    saved = np.load(out / "occlusion.npz")
    # a 32 px checkpoint without --aug_mode rheed evaluates frames unresized (upstream: no resize up to 32 px)
    assert saved["maps"].shape == (2, 1, 48, 48) and int(saved["patch"]) == 8 and int(saved["stride"]) == 4
    assert saved["maps"].min() < 0 < saved["maps"].max()
    from rheed.inference import load_classifier
    classifier = load_classifier(ckpt)
    expected = classifier.predict_paths([str(p) for p in images])
    assert np.array_equal(saved["classes"][:, 0], expected.argmax(axis=1))
    with open(out / "occlusion.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["prob_rough"]) for r in rows] == pytest.approx(expected[:, 0].tolist(), abs=1e-6)
    x = classifier.preprocess([classifier.loader(str(p)) for p in images])
    direct, _ = occlusion_maps(classifier.model, x, expected.argmax(axis=1), 8, 4)
    np.testing.assert_allclose(saved["maps"][:, 0], direct, atol=1e-5)

    # a patch larger than the input: one line, exit status 1, earlier outputs left alone
    before = (out / "occlusion.npz").read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        run_script_main("gradcam", ["--checkpoint", ckpt, "--images", images[0], "--method", "occlusion",
                                    "--patch", 60, "--out", out])
    message = str(exit_info.value.code)
    assert message.startswith("error: occlusion patch must be 1..48 px") and "\n" not in message
    assert (out / "occlusion.npz").read_bytes() == before


def test_pattern_reliance_finds_the_pattern_and_reports_edits(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location("pattern_reliance", REPO / "benchmarks" / "pattern_reliance.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    frames = np.zeros((1, 40, 40), dtype=np.float32)
    frames[0, 10:30, 19:21] = 1.0     # a streak
    frames[0, 5, 5] = 0.02            # below 3 % of the peak: not pattern
    mask = bench.pattern_masks(frames, 0.03)[0].numpy()
    # the 3x3 smoothing reaches 1 px beyond the streak, the widening 2 px more
    assert mask[7:33, 16:24].all() and mask.sum() == 26 * 8 and not mask[5, 5]
    assert bench.mass_on(np.where(mask, 1.0, 0.0)[None], mask[None]) == pytest.approx([1.0])
    assert bench.mass_on(np.ones((1, 40, 40)), mask[None]) == pytest.approx([mask.mean()])

    data = make_image_folder(tmp_path / "test", n_per_class=(2, 2), size=48)
    ckpt = save_random_classifier(tmp_path / "checkpoint-best.pth")
    bench.main(["--checkpoint", str(ckpt), "--data", str(data), "--stride", "8", "--layers", "stages.3", "stages.2"])
    out = capsys.readouterr().out
    assert out.startswith("4 frames, 1 checkpoint(s)")
    for line in ("pattern only", "pattern hidden", "blank", "Grad-CAM stages.3", "Grad-CAM stages.2",
                 "occlusion 4/8 px", "wrong decisions per true class"):
        assert line in out
    # the counts agree with the model's own predictions on the unedited frames
    from rheed.inference import load_classifier
    probs = load_classifier(ckpt).predict_paths([str(p) for p in sorted(data.glob("*/*.png"))])
    wrong_rough = int((probs[:2].argmax(axis=1) != 0).sum())
    wrong_smooth = int((probs[2:].argmax(axis=1) != 1).sum())
    as_is = next(line for line in out.splitlines() if line.strip().startswith("as is") and "wrong:" in line)
    assert f"rough {wrong_rough}.0  smooth {wrong_smooth}.0   changed: 0.0" in as_is

    bench.main(["--checkpoint", str(ckpt), "--data", str(data), "--edits_only"])
    out = capsys.readouterr().out
    assert "wrong decisions per true class" in out and "share of the heat map" not in out
