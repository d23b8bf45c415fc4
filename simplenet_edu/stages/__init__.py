"""The stages that both models share: the frozen ImageNet backbones (with the renaming of the Lite
weights), the Perlin noise of fake defects, and nearest-neighbour distances between patch features."""
