"""The stages that both models share: the frozen ImageNet backbones, the Perlin noise of fake defects,
and nearest-neighbour distances between patch features."""
