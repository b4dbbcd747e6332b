"""Flip test-time augmentation (rheed/tta.py) in evaluation and in predict.py's classifier."""
import torch

from rheed.tta import flip_averaged_logits


def test_flip_average_is_flip_invariant_and_exact_for_symmetric_inputs():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2))
    x = torch.randn(2, 3, 8, 10)
    with torch.no_grad():
        out = flip_averaged_logits(net, x)
        by_hand = (net(x) + net(x.flip(3)) + net(x.flip(2)) + net(x.flip(2).flip(3))) / 4
        torch.testing.assert_close(out, by_hand)
        for dims in ((3,), (2,), (2, 3)):   # the same answer for every flipped copy of a frame
            torch.testing.assert_close(flip_averaged_logits(net, x.flip(dims)), out, rtol=1e-5, atol=1e-6)
        symmetric = x + x.flip(3) + x.flip(2) + x.flip(2).flip(3)
        torch.testing.assert_close(flip_averaged_logits(net, symmetric), net(symmetric).float(), rtol=1e-5, atol=1e-5)


def test_evaluate_and_classifier_use_the_flip_average_when_asked():
    import argparse

    from engine_finetune import evaluate
    from rheed.inference import Classifier

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 5, stride=4), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    torch.manual_seed(1)
    x = torch.rand(6, 3, 32, 32)
    y = torch.tensor([0, 1, 0, 1, 0, 1])
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=4)
    plain = evaluate(loader, net, torch.device("cpu"), class_names=["a", "b"])
    flipped = evaluate(loader, net, torch.device("cpu"), class_names=["a", "b"], tta_flip=True)
    with torch.no_grad():
        expected = torch.softmax(flip_averaged_logits(net, x), dim=1).numpy()
    assert abs(flipped["probs"] - expected).max() < 1e-6 and abs(plain["probs"] - expected).max() > 1e-4
    from rheed.tta import tta_logits
    scaled = evaluate(loader, net, torch.device("cpu"), class_names=["a", "b"], tta_sizes=[24, 32])
    with torch.no_grad():
        by_views = torch.softmax(tta_logits(net, x, [24, 32]), dim=1).numpy()
    assert abs(scaled["probs"] - by_views).max() < 1e-6 and abs(scaled["probs"] - plain["probs"]).max() > 1e-4

    def classifier(tta):
        return Classifier(model=net, transform=None, loader=None, class_names=["a", "b"],
                          args=vars(argparse.Namespace(tta_flip=tta)), device=torch.device("cpu"))
    assert abs(classifier(True).predict_tensor(x) - expected).max() < 1e-6
    assert abs(classifier(False).predict_tensor(x) - plain["probs"]).max() < 1e-6


def test_scale_views_average_the_logits_of_resized_copies():
    import torch.nn.functional as F

    from rheed.tta import eval_input_size, tta_logits, view_sizes

    assert view_sizes(128, None) == [128] and view_sizes(128, [1.125, 1.0]) == [128, 144]
    assert eval_input_size(128, [1.0, 1.125]) == 144 and eval_input_size(64, None) == 64
    torch.manual_seed(2)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 2, 4, stride=4), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    x = torch.rand(3, 3, 40, 40)
    small = F.interpolate(x, size=(32, 32), mode='bilinear', align_corners=False, antialias=True)
    with torch.no_grad():
        torch.testing.assert_close(tta_logits(net, x, [32, 40]), (net(small) + net(x)) / 2)
        torch.testing.assert_close(tta_logits(net, x), net(x))
        both = tta_logits(net, x, [32, 40], flip=True)
        torch.testing.assert_close(both, (flip_averaged_logits(net, small) + flip_averaged_logits(net, x)) / 2)
    # a zero background stays exactly zero in the shrunk view (no ringing around a bright spot)
    frame = torch.zeros(1, 3, 40, 40)
    frame[..., 18:21, 18:21] = 4.0
    shrunk = F.interpolate(frame, size=(32, 32), mode='bilinear', align_corners=False, antialias=True)
    assert shrunk.min() == 0 and (shrunk[..., :10, :] == 0).all()


def test_checkpoint_with_tta_scales_predicts_on_the_views_and_maps_the_main_one(tmp_path):
    from PIL import Image

    from conftest import save_random_classifier
    from rheed.inference import load_classifier
    from rheed.tta import resized

    path = save_random_classifier(tmp_path / "ckpt.pth")
    ckpt = torch.load(path, weights_only=False)
    ckpt["args"].update(aug_mode="rheed", subtract_background=True, background_mode="adaptive", tta_scales=[1.0, 1.25])
    torch.save(ckpt, path)
    classifier = load_classifier(path)
    frame = Image.new("RGB", (80, 60))
    frame.paste((255, 255, 255), (38, 10, 41, 40))   # one streak
    x = classifier.preprocess([frame])
    assert x.shape[-2:] == (40, 40) and classifier.view_sizes == [32, 40]
    with torch.no_grad():
        by_hand = (classifier.model(resized(x, 32)) + classifier.model(x)) / 2
    assert abs(classifier.predict_images([frame]) - torch.softmax(by_hand, dim=1).numpy()).max() < 1e-5
    probs, features = classifier.probs_and_features([frame])
    with torch.no_grad():
        main = classifier.model.forward_features(resized(x, 32)).numpy()
    assert abs(features - main).max() < 1e-5 and abs(probs - torch.softmax(by_hand, dim=1).numpy()).max() < 1e-5


def test_tta_scales_need_the_rheed_transforms(tmp_path, tiny_split):
    from conftest import run_cli
    proc = run_cli(["main_finetune.py", "--data_set", "RHEED", "--data_path", tiny_split, "--device", "cpu",
                    "--output_dir", tmp_path / "out", "--tta_scales", "1", "1.25"], timeout=120)
    assert proc.returncode != 0
    assert "--tta_scales 1.0 1.25: needs --aug_mode rheed" in proc.stderr and not (tmp_path / "out").exists()
