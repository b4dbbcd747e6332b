"""Does a classifier decide from the diffraction pattern, and do its heat maps show where?

For every labelled frame of a folder the pattern is found as the pixels whose (3x3-smoothed) brightness lies
more than --pattern_level of the way from the frame's median (the dark screen) to its peak, widened by 2 px;
on RHEED frames this takes in the faint spots and streak tails, not only the bright ones. Then, per checkpoint:

- the predicted class's log-odds (log p - log(1 - p)) on the frame as it is, with everything but the pattern
  set to the frame's median ("pattern only"), with the pattern set to the median ("pattern hidden"), and on
  a frame of only the median ("blank"), per predicted class, with the number of frames where they fall
  below 0 (the decision flips). A model that decides from the pattern keeps its decisions on "pattern only";
- the share of each heat map's mass that lies on the pattern, for Grad-CAM (at the model's last feature map,
  or at each of --layers) and for occlusion (absolute values), next to the share of the frame the pattern
  covers (what a map spread evenly would score).

    python benchmarks/pattern_reliance.py --checkpoint RUN/checkpoint-best.pth [--checkpoint RUN2/...]
        --data SPLIT/test [--stride 8] [--max_frames 0] [--layers stages.3 stages.2] [--edits_only]

With true classes (folder names that are the checkpoint's class names) it also counts the wrong decisions per
true class on each edit, and how many decisions each edit changes; --edits_only skips the heat maps.

Occlusion costs one forward pass per patch position and frame: at 128 px, patch 12 and stride 8 that is
256 passes per frame (about 2 s on 2 CPU cores for convnextv2_atto).
"""
import argparse
import sys
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import timm_compat  # noqa: E402,F401
from rheed.gradcam import DEFAULT_LAYER, class_maps, displayable  # noqa: E402
from rheed.inference import load_classifier  # noqa: E402
from rheed.compare import mean_std  # noqa: E402
from rheed.imageio import list_images  # noqa: E402
from rheed.occlusion import background_level, class_log_odds, default_patch, occlusion_maps  # noqa: E402


def pattern_masks(frames: np.ndarray, level: float) -> torch.Tensor:
    """(N, H, W) grayscale in [0, 1] -> bool (N, H, W): the pattern, widened by 2 px."""
    smooth = F.avg_pool2d(torch.as_tensor(frames)[:, None], 3, 1, 1)
    floor = smooth.flatten(1).median(dim=1).values[:, None, None, None]
    peak = smooth.amax(dim=(2, 3), keepdim=True)
    above = (smooth - floor) > level * (peak - floor).clamp(min=1e-6)
    return F.max_pool2d(above.float(), 5, 1, 2)[:, 0] > 0


def mass_on(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Share of each map's (absolute) mass inside its mask; 0 for an all-zero map."""
    weight = np.abs(maps)
    return (weight * masks).sum(axis=(1, 2)) / np.maximum(weight.sum(axis=(1, 2)), 1e-12)


def image_paths(folder: Path, max_frames: int) -> list[Path]:
    """The frames of folder's class sub-folders (hidden files and folders skipped), sorted."""
    if not folder.is_dir():
        raise SystemExit(f"error: folder not found: {folder}")
    paths = [Path(p) for d in sorted(folder.iterdir()) if d.is_dir() and not d.name.startswith(".")
             for p in list_images(d, recursive=False)]
    if not paths:
        raise SystemExit(f"error: no frames in class folders under {folder}")
    if max_frames and len(paths) > max_frames:  # evenly spread, so every class and run keeps its share
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, max_frames).round().astype(int)]
    return paths


def check(checkpoint: Path, paths: list[Path], level: float, stride: int, layers: list[str] | None,
          maps: bool) -> dict:
    classifier = load_classifier(checkpoint)
    model = classifier.model
    x = classifier.main_view(classifier.preprocess([classifier.loader(str(p)) for p in paths]))
    # the mask on linear brightness: undo --pattern_gamma, so models trained with and without it are
    # scored on the same pixels of the same frames
    gamma = float(classifier.args.get("pattern_gamma") or 1.0)
    masks = pattern_masks(displayable(x, classifier.transform) ** (1.0 / gamma), level)
    inside = masks[:, None]
    fill = background_level(x)
    with torch.no_grad():
        logits = model(x).float()
        pred = logits.argmax(dim=1)

        edits = {"as is": x, "pattern only": torch.where(inside, x, fill),
                 "pattern hidden": torch.where(inside, fill, x), "blank": fill.expand_as(x).contiguous()}
        edited = {name: model(z).float() for name, z in edits.items()}
    result = {"odds": {name: class_log_odds(out, pred).numpy() for name, out in edited.items()},
              "decisions": {name: out.argmax(dim=1).numpy() for name, out in edited.items()},
              "pred": pred.numpy(), "names": classifier.class_names, "area": float(masks.float().mean())}
    if maps:
        masks = masks.numpy()
        patch = default_patch(x.shape[-1])[0]
        occlusion, _ = occlusion_maps(model, x, pred.tolist(), patch, stride)
        probs = torch.softmax(logits, dim=1).numpy()
        result["gradcam"] = {layer: mass_on(class_maps(model, x, layer, top=1, probs=probs)[0][:, 0], masks).mean()
                             for layer in layers or [getattr(model, "gradcam_layer", DEFAULT_LAYER)]}
        result.update(occlusion=mass_on(occlusion, masks).mean(), patch=patch)
    return result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, action="append", required=True,
                        help="fine-tuned checkpoint (repeatable)")
    parser.add_argument("--data", type=Path, required=True, help="folder with one sub-folder of frames per class")
    parser.add_argument("--pattern_level", type=float, default=0.03,
                        help="pattern threshold as a fraction of the way from the frame's median to its peak")
    parser.add_argument("--stride", type=int, default=8,
                        help="occlusion stride in input pixels (patch: a tenth of the input)")
    parser.add_argument("--layers", nargs="+", default=None,
                        help="Grad-CAM layers to score (default: the model's last feature map, e.g. stages.3)")
    parser.add_argument("--max_frames", type=int, default=0,
                        help="use at most this many frames, evenly spread (0: all)")
    parser.add_argument("--edits_only", action="store_true", help="skip the heat maps (fast: four forward passes)")
    args = parser.parse_args(argv)
    paths = image_paths(args.data, args.max_frames)
    results = [check(c, paths, args.pattern_level, args.stride, args.layers, not args.edits_only)
               for c in args.checkpoint]
    true = np.array([p.parent.name for p in paths])

    def mean_std_text(values, digits: int = 3) -> str:
        """mean +- sample std (ddof 1) over the checkpoints, as compare_runs.py reports seeds."""
        mean, std = mean_std([float(v) for v in values])
        return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} +- {std:.{digits}f}"

    area = mean_std_text([r["area"] for r in results])
    print(f"{len(paths)} frames, {len(results)} checkpoint(s); pattern covers {area} of the frame "
          f"(level {args.pattern_level})")
    print("log-odds of the predicted class, median over the frames predicted as that class "
          "(frames where they fall below 0: the decision flips)")
    for k, class_name in enumerate(results[0]["names"]):
        counts = [int((r["pred"] == k).sum()) for r in results]
        if not all(counts):
            continue
        print(f"  predicted {class_name} ({mean_std_text(counts, 1)} frames)")
        for name in results[0]["odds"]:
            medians = [np.median(r["odds"][name][r["pred"] == k]) for r in results]
            flips = [int((r["odds"][name][r["pred"] == k] < 0).sum()) for r in results]
            print(f"    {name:15s} {mean_std_text(medians)}   below 0: {mean_std_text(flips, 1)}")
    labelled = [c for c in results[0]["names"] if (true == c).any()]
    if labelled:
        print("wrong decisions per true class (the class folder), and decisions that differ from the frame as is:")
        def wrong(r: dict, edit: str, c: str) -> int:
            return int((np.asarray(r["names"])[r["decisions"][edit][true == c]] != c).sum())

        for name in results[0]["decisions"]:
            counts = "  ".join(f"{c} {mean_std_text([wrong(r, name, c) for r in results], 1)}" for c in labelled)
            changed = mean_std_text([int((r["decisions"][name] != r["pred"]).sum()) for r in results], 1)
            print(f"  {name:15s} wrong: {counts}   changed: {changed}")
    if args.edits_only:
        return
    print("share of the heat map on the pattern:")
    for layer in results[0]["gradcam"]:
        print(f"  Grad-CAM {layer:9s} {mean_std_text([r['gradcam'][layer] for r in results])}")
    print(f"  occlusion {results[0]['patch']}/{args.stride} px  {mean_std_text([r['occlusion'] for r in results])}")


if __name__ == "__main__":
    main()
