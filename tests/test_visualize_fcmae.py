"""visualize_fcmae on a tiny FCMAE checkpoint saved in the project's checkpoint format."""
import csv

import numpy as np
import pytest
import torch

from conftest import write_pattern_image, run_script_main
from models import fcmae
from rheed.errors import UserError
from rheed.fcmae_viz import (build_input_transform, frame_metrics, input_normalisation, load_fcmae, random_mask,
                             reconstruct)

SIZE = 64


def visualize_cli(argv):
    run_script_main("visualize_fcmae", argv)


def tiny_fcmae(norm_pix_loss: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    model = fcmae.convnextv2_atto(decoder_embed_dim=32, norm_pix_loss=norm_pix_loss)
    with torch.no_grad():  # non-trivial prediction head so the reconstruction differs from the input
        model.pred.weight.normal_(0, 0.2)
    return model.eval()


def save_checkpoint(path, model, norm_pix_loss=True, **pipeline):
    args = {"model": "convnextv2_atto", "input_size": SIZE, "mask_ratio": 0.6, "norm_pix_loss": norm_pix_loss,
            "decoder_depth": 1, "decoder_embed_dim": 32, **pipeline}
    torch.save({"model": model.state_dict(), "args": args, "epoch": 1}, path)
    return path


def frames(tmp_path, n=2):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = tmp_path / f"seq001_{i:06d}.png"
        write_pattern_image(path, "smooth" if i % 2 else "rough", 80, rng)
        paths.append(path)
    return paths


@pytest.mark.parametrize("norm_pix_loss", [True, False])
def test_visible_patches_of_the_reconstruction_are_the_input(tmp_path, norm_pix_loss):
    model = tiny_fcmae(norm_pix_loss)
    from rheed.imageio import rheed_loader
    x = torch.stack([build_input_transform(SIZE)(rheed_loader(str(p))) for p in frames(tmp_path)])
    mask = random_mask(model, SIZE, 0.5, seed=3)
    assert mask.shape == (1, 4) and mask.sum() == 2
    assert torch.equal(mask, random_mask(model, SIZE, 0.5, seed=3))  # reproducible from the seed
    panels = reconstruct(model, x, mask)

    visible = panels.mask == 0
    assert visible.mean() == 0.5
    # the displayed original is the frame as loaded (ToTensor scale), and visible pixels are copied exactly
    resize = build_input_transform(SIZE).transforms[0]
    loaded = np.stack([np.asarray(resize(rheed_loader(str(p))), dtype=np.float32) / 255 for p in frames(tmp_path)])
    np.testing.assert_allclose(panels.original, loaded, atol=1e-5)
    assert np.array_equal(panels.reconstruction[visible], panels.original[visible])
    assert np.all(panels.masked[~visible] == 0.5) and np.array_equal(panels.masked[visible], panels.original[visible])
    assert not np.allclose(panels.reconstruction[~visible], panels.original[~visible], atol=1e-3)
    assert np.all(panels.residual[visible] == 0) and panels.residual[~visible].max() > 0

    metrics = frame_metrics(panels)
    error = panels.reconstruction[0] - panels.original[0]
    on_masked = error[panels.mask[0] == 1]
    assert metrics[0]["mae_masked"] == pytest.approx(np.abs(on_masked).mean())
    assert metrics[0]["rmse_masked"] == pytest.approx(np.sqrt((on_masked ** 2).mean()))
    assert metrics[0]["mae_frame"] == pytest.approx(0.5 * metrics[0]["mae_masked"], rel=1e-5)
    # the per-frame loss is the model's own loss for that frame alone
    loss, _, _ = model(x[:1], mask=mask)
    assert metrics[0]["loss"] == pytest.approx(loss.item(), rel=1e-5)


def test_norm_pix_prediction_is_unnormalised_with_each_patch_statistics(tmp_path):
    """A model that predicts the normalised target exactly must give back the input on masked patches."""
    model = tiny_fcmae(True)
    from rheed.imageio import rheed_loader
    x = torch.stack([build_input_transform(SIZE)(rheed_loader(str(p))) for p in frames(tmp_path, 1)])
    target = model.patchify(x)
    perfect = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** .5
    perfect = perfect.transpose(1, 2).reshape(1, -1, 2, 2)
    model.forward = lambda imgs, labels=None, mask_ratio=0.6, mask=None: (torch.tensor(0.), perfect, mask)
    panels = reconstruct(model, x, random_mask(model, SIZE, 0.75, 0))
    np.testing.assert_allclose(panels.reconstruction, np.clip(panels.original, 0, 1), atol=1e-4)


def test_cli_writes_figure_and_csv(tmp_path):
    ckpt = save_checkpoint(tmp_path / "checkpoint-1.pth", tiny_fcmae(True))
    images = frames(tmp_path)
    out = tmp_path / "viz"
    visualize_cli(["--checkpoint", ckpt, "--images", *images, "--out", out, "--dpi", 60])
    for name in ("fcmae_reconstruction.png", "fcmae_reconstruction.pdf", "fcmae_reconstruction.csv"):
        assert (out / name).stat().st_size > 0
    with open(out / "fcmae_reconstruction.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["image"] for r in rows] == [str(p) for p in images]
    assert all(float(r["masked_fraction"]) == 0.75 for r in rows)  # 4 patches at 64 px, int(4 * 0.4) = 1 kept
    assert all(0 < float(r["mae_masked"]) <= float(r["rmse_masked"]) for r in rows)


def test_rejects_a_finetune_checkpoint_and_missing_images(tmp_path):
    from models import convnextv2
    ckpt = tmp_path / "ft.pth"
    torch.save({"model": convnextv2.convnextv2_atto(num_classes=2).state_dict(), "args": {"model": "convnextv2_atto"},
                "epoch": 0, "class_names": ["rough", "smooth"]}, ckpt)
    with pytest.raises(UserError, match="not an FCMAE pre-training checkpoint"):
        load_fcmae(ckpt)
    with pytest.raises(SystemExit) as exit_info:
        visualize_cli(["--checkpoint", ckpt, "--images", tmp_path / "none.png"])
    assert exit_info.value.code == f"error: image(s) not found: {tmp_path / 'none.png'}"


def test_cli_corrupt_image_is_one_line_error(tmp_path):
    ckpt = save_checkpoint(tmp_path / "checkpoint-1.pth", tiny_fcmae(True))
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image at all")
    with pytest.raises(SystemExit) as exit_info:
        visualize_cli(["--checkpoint", ckpt, "--images", broken, "--out", tmp_path / "viz"])
    message = str(exit_info.value.code)
    assert message.startswith("error: ") and "broken.png" in message and "\n" not in message


def test_the_input_is_the_frame_as_the_launchers_pre_trained_on_it(tmp_path):
    """A checkpoint pre-trained on despeckled, background-subtracted frames is shown and fed exactly those."""
    from rheed.augment import BACKGROUND_MEAN, BACKGROUND_STD, whole_frame_steps
    from rheed.imageio import rheed_loader
    pipeline = {"despeckle": True, "subtract_background": True, "background_mode": "adaptive"}
    assert input_normalisation(pipeline) == (BACKGROUND_MEAN, BACKGROUND_STD)
    model = tiny_fcmae(True)
    paths = frames(tmp_path)
    x = torch.stack([build_input_transform(SIZE, pipeline)(rheed_loader(str(p))) for p in paths])
    panels = reconstruct(model, x, random_mask(model, SIZE, 0.5, seed=1), *input_normalisation(pipeline))
    resize = build_input_transform(SIZE).transforms[0]
    expected = []
    for p in paths:
        image = rheed_loader(str(p))
        for step in whole_frame_steps(True, True, "adaptive"):
            image = step(image)
        expected.append(np.asarray(resize(image), dtype=np.float32) / 255)
    np.testing.assert_allclose(panels.original, np.stack(expected), atol=1e-5)
    assert (panels.original == 0).mean() > 0.2  # the zero background the model was trained on, not the raw frame
    steps = build_input_transform(SIZE, dict(pipeline, pattern_gamma=2.0)).transforms
    assert [s.gamma for s in steps if type(s).__name__ == "SubtractBackground"] == [2.0]

    ckpt = save_checkpoint(tmp_path / "checkpoint-3.pth", model, **pipeline)
    out = tmp_path / "viz"
    visualize_cli(["--checkpoint", ckpt, "--images", *paths, "--out", out, "--dpi", 60, "--mask_ratio", "0.5",
                   "--seed", "1"])
    with open(out / "fcmae_reconstruction.csv") as f:
        rows = list(csv.DictReader(f))
    assert [float(r["mae_masked"]) for r in rows] == pytest.approx([m["mae_masked"] for m in frame_metrics(panels)],
                                                                   rel=1e-5)


def test_a_checkpoint_pre_trained_on_padded_frames_is_shown_them_padded(tmp_path):
    """--pad_aspect 4:3 in the checkpoint's arguments: a square frame gets zero columns left and right, as in
    rheed.augment's evaluation view, and nothing else changes."""
    from rheed.imageio import rheed_loader
    from rheed.augment import PadToAspect
    pipeline = {"subtract_background": True, "background_mode": "adaptive"}
    frame = rheed_loader(str(frames(tmp_path, 1)[0]))
    assert frame.size == (80, 80)
    plain = build_input_transform(SIZE, pipeline)(frame)
    transform = build_input_transform(SIZE, dict(pipeline, pad_aspect=4 / 3))
    assert [type(s) for s in transform.transforms].count(PadToAspect) == 1
    padded = transform(frame)
    assert padded.shape == plain.shape == (3, SIZE, SIZE)
    zero = float(padded[0, 0, 0])   # the background (0) after normalisation
    # 80 x 80 padded to 107 x 80: about 13 of 107 columns on each side, i.e. ~7 of 64 after resizing
    assert torch.all(padded[:, :, :5] == zero) and torch.all(padded[:, :, -5:] == zero)
    assert not torch.all(plain[:, :, :5] == zero)
