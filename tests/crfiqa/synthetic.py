"""Shared pieces of the wrapper's tests: small in-memory datasets, a calibrated backbone, a fixture."""

import torch


class PrototypeDataset(torch.utils.data.Dataset):
    """``count`` images of ``classes`` identities: a fixed random prototype per class plus noise."""

    def __init__(self, count=256, classes=8, size=32, noise=0.5, seed=0):
        generator = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(count) % classes
        prototypes = torch.randn(classes, 3, size, size, generator=generator)
        self.images = prototypes[self.labels] + noise * torch.randn(count, 3, size, size, generator=generator)
        self.num_identities = classes

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return self.images[index], int(self.labels[index])


def calibrated_backbone(seed=0, input_size=16, num_features=16):
    """A small iResNet in eval mode whose BatchNorm statistics come from one seeded batch, so that
    eval-mode outputs are well scaled (fresh running statistics would blow activations up)."""
    from crfiqa.models import IResNet

    torch.manual_seed(seed)
    model = IResNet([1, 1, 1, 1], num_features=num_features, widths=[8, 16, 16, 32], input_size=input_size, dropout=0.0)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.momentum = None
    with torch.no_grad():
        model.train()(torch.randn(8, 3, input_size, input_size))
    return model.eval()


def write_images(folder, count, size=16, seed=0, ext="png"):
    """``count`` random RGB images ``img_XX.<ext>`` in ``folder``; returns their paths."""
    import os

    import numpy as np
    from PIL import Image

    os.makedirs(folder, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        path = os.path.join(folder, f"img_{index:02d}.{ext}")
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths
