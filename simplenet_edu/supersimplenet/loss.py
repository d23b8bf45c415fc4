"""SuperSimpleNet's losses: focal loss and a signed truncated L1 on the anomaly map, focal loss on
the image score.

``L = focal(map, mask) + truncated_l1(map, mask) + focal(score, label)``

- **Focal loss** (Lin et al., 2017), ``gamma = 4``, no class weighting: binary cross-entropy scaled
  by ``(1 - p_t)^gamma``, where ``p_t`` is the probability given to the true class. A cell that is
  already right with ``p_t = 0.9`` weighs ``0.1^4 = 1e-4`` of its cross-entropy; the many easy normal
  cells stop drowning the few hard ones at a defect's edge.
- **Truncated L1** with margin 0.5, SimpleNet's loss with the sign flipped (the map holds anomaly
  logits): normal cells pay ``max(0, 0.5 + s)``, defective ones ``max(0, 0.5 - s)``, each group
  averaged on its own, so a small defect counts as much as the large normal background.

All inputs are logits; the focal loss works on logits too (same values as on ``sigmoid`` outputs,
without ``log(0)``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, gamma: float = 4.0) -> torch.Tensor:
    """Mean of ``BCE(sigmoid(logits), targets) * (1 - p_t)^gamma``; any shape, targets in {0, 1}."""
    targets = targets.to(logits.dtype)
    bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p = torch.sigmoid(logits)
    p_t = p * targets + (1 - p) * (1 - targets)
    return (bce * (1 - p_t) ** gamma).mean()


def signed_truncated_l1(logits: torch.Tensor, targets: torch.Tensor, margin: float = 0.5) -> torch.Tensor:
    """``mean(relu(margin + s) over normal cells) + mean(relu(margin - s) over anomalous cells)``;
    a group with no cells adds nothing."""
    anomalous = targets > 0
    normal_part, anomalous_part = logits[~anomalous], logits[anomalous]
    loss = logits.new_zeros(())
    if normal_part.numel():
        loss = loss + torch.relu(margin + normal_part).mean()
    if anomalous_part.numel():
        loss = loss + torch.relu(margin - anomalous_part).mean()
    return loss


class SuperSimpleNetLoss(nn.Module):
    """``forward(map [B, H, W], score [B], mask [B, H, W], label [B]) -> (total, parts)``, ``parts`` a
    dict of the three terms as floats (for the training history)."""

    def __init__(self, margin: float = 0.5, gamma: float = 4.0):
        super().__init__()
        self.margin, self.gamma = float(margin), float(gamma)

    def forward(self, anomaly_map, score, mask, label):
        map_focal = focal_loss(anomaly_map, mask, self.gamma)
        map_l1 = signed_truncated_l1(anomaly_map, mask, self.margin)
        score_focal = focal_loss(score, label, self.gamma)
        total = map_focal + map_l1 + score_focal
        return total, {"map_focal": map_focal.item(), "map_l1": map_l1.item(), "score_focal": score_focal.item()}
