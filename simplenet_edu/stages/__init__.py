"""The stages that both models share: the frozen ImageNet backbones and the Perlin noise of fake defects."""
