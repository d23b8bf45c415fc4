"""The stages that both models share: the frozen ImageNet backbones (and the renaming of the Lite
weights), the Perlin noise of fake defects,
and nearest-neighbour distances between patch features."""
