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

    def classifier(tta):
        return Classifier(model=net, transform=None, loader=None, class_names=["a", "b"],
                          args=vars(argparse.Namespace(tta_flip=tta)), device=torch.device("cpu"))
    assert abs(classifier(True).predict_tensor(x) - expected).max() < 1e-6
    assert abs(classifier(False).predict_tensor(x) - plain["probs"]).max() < 1e-6
