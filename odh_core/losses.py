"""Loss functions: ODH hash-centre (L_hc), code aggregation (L_agg), classification,
distillation, CSQ."""

from __future__ import annotations

import logging
import math
from itertools import combinations

import torch
import torch.nn.functional as F

logger = logging.getLogger(__name__)


def _as_targets(targets: torch.Tensor, n_classes: int) -> torch.Tensor:
    """int[n] class ids or multi-hot [n, C] → float [n, C]."""
    if targets.dim() == 1:
        return F.one_hot(targets.long(), n_classes).float()
    if targets.dim() == 2 and targets.shape[1] == n_classes:
        return targets.float()
    raise ValueError(
        f"targets must be int[n] or multi-hot [n, {n_classes}], got {tuple(targets.shape)}"
    )


def hash_centre_loss(
    h: torch.Tensor, centres: torch.Tensor, targets: torch.Tensor, *, tau: float = 0.2
) -> torch.Tensor:
    """L_hc = mean_i Σ_k −Y_ik · log softmax_k(⟨h_i/‖h_i‖, c_k/√K⟩ / τ)."""
    if tau <= 0:
        raise ValueError(f"tau must be positive, got {tau}")
    y = _as_targets(targets, centres.shape[0])
    h_hat = F.normalize(h, dim=1, eps=1e-8)
    c_hat = centres / math.sqrt(centres.shape[1])
    logp = F.log_softmax(h_hat @ c_hat.T / tau, dim=1)
    return -(y * logp).sum(dim=1).mean()


def aggregation_loss(
    student: torch.Tensor,
    teacher: torch.Tensor,
    *,
    n_pos: int = 2,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """L_agg: −mean over groups of the mean pairwise cosine of the 2·n_pos expanded group codes.

    Rows ``g·n_pos … (g+1)·n_pos − 1`` of ``student`` (strong views) and ``teacher`` (weak views,
    detached here) form group g. With m the group mean and a_j ~ U[1, 2), z_j = m + a_j (v_j − m).
    """
    if student.shape != teacher.shape:
        raise ValueError(
            f"student {tuple(student.shape)} and teacher {tuple(teacher.shape)} differ"
        )
    n, k = student.shape
    if n_pos < 1 or n % n_pos:
        raise ValueError(f"batch of {n} rows is not a whole number of groups of n_pos={n_pos}")
    g = n // n_pos
    v = torch.cat([student.view(g, n_pos, k), teacher.detach().view(g, n_pos, k)], dim=1)
    m = v.mean(dim=1, keepdim=True)
    a = torch.rand(g, 2 * n_pos, 1, generator=generator).to(v) + 1.0
    z = F.normalize(m + a * (v - m), dim=2, eps=1e-8)
    pairs = list(combinations(range(2 * n_pos), 2))
    i = torch.tensor([p[0] for p in pairs], device=v.device)
    j = torch.tensor([p[1] for p in pairs], device=v.device)
    cos = (z[:, i] * z[:, j]).sum(dim=2)
    return -cos.mean()


def classification_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Cross-entropy; multi-hot targets use the normalised soft target y / Σy."""
    if targets.dim() == 1:
        return F.cross_entropy(logits, targets.long())
    y = _as_targets(targets, logits.shape[1])
    y = y / y.sum(dim=1, keepdim=True).clamp_min(1.0)
    return -(y * F.log_softmax(logits, dim=1)).sum(dim=1).mean()


def distillation_loss(
    h: torch.Tensor,
    centres: torch.Tensor,
    teacher_logits: torch.Tensor,
    *,
    tau: float = 0.2,
    temperature: float = 1.0,
) -> torch.Tensor:
    """KL(p ‖ q) averaged over the batch: p = softmax(teacher_logits / T) (the full-precision
    classifier), q = softmax_k(⟨h_i/‖h_i‖, c_k/√K⟩ / τ) (the codes' softmax over the class
    centres, as in L_hc). Gradients flow into ``h`` (and whatever the caller does not detach)."""
    if tau <= 0 or temperature <= 0:
        raise ValueError(f"tau and temperature must be positive, got {tau}, {temperature}")
    if teacher_logits.shape != (h.shape[0], centres.shape[0]):
        raise ValueError(
            f"teacher_logits must be [{h.shape[0]}, {centres.shape[0]}], "
            f"got {tuple(teacher_logits.shape)}"
        )
    h_hat = F.normalize(h, dim=1, eps=1e-8)
    c_hat = centres / math.sqrt(centres.shape[1])
    log_q = F.log_softmax(h_hat @ c_hat.T / tau, dim=1)
    log_p = F.log_softmax(teacher_logits / temperature, dim=1)
    return (log_p.exp() * (log_p - log_q)).sum(dim=1).mean()


def csq_loss(h: torch.Tensor, sample_centres: torch.Tensor, *, lam: float = 1e-4) -> torch.Tensor:
    """CSQ: BCE((h+1)/2, (c+1)/2) + λ·mean((|h| − 1)²), with c the per-sample ±1 centre."""
    p = ((h + 1) / 2).clamp(1e-7, 1 - 1e-7)
    t = (sample_centres + 1) / 2
    bce = F.binary_cross_entropy(p, t)
    quant = ((h.abs() - 1) ** 2).mean()
    return bce + lam * quant
