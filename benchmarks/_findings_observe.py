"""The per-epoch observer of ``odh bench findings``: a ``LoopContext.observe`` hook that encodes a
fixed subset of the training images, reads the method's centres and measures the stage-2
gradients on a fixed batch, without changing the training (it works on copies, in eval mode or
on deep copies, with its own random generators, and restores torch's global RNG state)."""

from __future__ import annotations

import copy
import logging
import time
from typing import Any

import numpy as np
import torch
from torch import nn

from benchmarks._findings_metrics import centre_movement, code_metrics
from odh_core.augment import STRONG, WEAK, augment
from odh_core.methods.base import HashMethod, StepInput
from odh_core.trainmodule import HashTrainModule

logger = logging.getLogger("odh.bench.findings")

__all__ = ["EpochObserver", "method_centres", "stage2_gradients"]


def method_centres(method: HashMethod) -> tuple[np.ndarray, np.ndarray] | None:
    """(``bool[C, K]`` centre bits, ``float[C, K]`` the real value whose sign they are) of a
    centre-based method — ODH's semantic centres (sigmoid(z) − 0.5 of the centre MLP on the
    classifier rows) or fixed centres (CSQ, ODH-hadamard) — else None."""
    with torch.no_grad():
        centre_module = getattr(method, "centre_module", None)
        classifier = getattr(method, "classifier", None)
        if centre_module is not None and classifier is not None:
            real = torch.sigmoid(centre_module.mlp(classifier.classifier.weight)) - 0.5
        elif isinstance(getattr(method, "fixed_centres", None), torch.Tensor):
            real = method.fixed_centres.float()
        else:
            return None
    real_np = real.detach().cpu().numpy().astype(np.float64)
    return real_np >= 0, real_np  # sign(0) := +1


def _flat(grads: tuple[torch.Tensor | None, ...], params: list[nn.Parameter]) -> torch.Tensor:
    return torch.cat(
        [
            (g if g is not None else torch.zeros_like(p)).reshape(-1)
            for g, p in zip(grads, params, strict=True)
        ]
    )


def stage2_gradients(
    encoder: nn.Module,
    method: HashMethod,
    images: torch.Tensor,
    targets: torch.Tensor,
    normalise: Any,
    *,
    n_pos: int,
    seed: int,
) -> dict[str, float] | None:
    """Encoder-parameter gradients of the stage-2 loss terms on one fixed batch (``images``
    float ``[n, C, H, W]`` in [0, 1], groups of ``n_pos`` consecutive same-class rows), computed
    on deep copies in training mode exactly as a stage-2 step computes them (same views, same
    single or per-view encoder pass). Returns ``agg_over_hc`` = ‖∇ w·L_agg‖ / ‖∇ L_hc‖, the
    unweighted ``agg_over_hc_unweighted`` = ‖∇ L_agg‖ / ‖∇ L_hc‖, their ``cosine`` and the norms;
    None for a method without ``loss_terms`` (no L_agg)."""
    if not hasattr(method, "loss_terms"):
        return None
    enc, meth = copy.deepcopy(encoder), copy.deepcopy(method)
    module = HashTrainModule(enc, meth).train()
    device = next(enc.parameters()).device
    images, targets = images.to(device), targets.to(device)
    gen = torch.Generator().manual_seed(seed)
    weak = normalise(augment(images, WEAK, gen))
    strong = normalise(augment(images, STRONG, gen))
    x_in = (weak, strong) if meth.separate_views else torch.cat([weak, strong])
    u, extras = module(x_in, strong)
    step = StepInput(
        u=u,
        n_views=2,
        targets=targets,
        idx=torch.arange(len(images)),
        extras=extras,
        n_pos=n_pos,
        generator=torch.Generator().manual_seed(seed + 1),
    )
    terms = meth.loss_terms(step, 2)
    params = [p for p in enc.parameters() if p.requires_grad]
    w_hc, l_hc = terms["hc"]
    w_agg, l_agg = terms["agg"]
    g_hc = _flat(
        torch.autograd.grad(w_hc * l_hc, params, retain_graph=True, allow_unused=True), params
    )
    g_agg = _flat(torch.autograd.grad(l_agg, params, allow_unused=True), params)
    n_hc, n_agg = float(g_hc.norm()), float(g_agg.norm())
    cos = float(torch.dot(g_hc, g_agg) / max(n_hc * n_agg, 1e-30))
    return {
        "w_agg": float(w_agg),
        "grad_norm_hc": n_hc,
        "grad_norm_agg_weighted": w_agg * n_agg,
        "agg_over_hc": w_agg * n_agg / max(n_hc, 1e-30),
        "agg_over_hc_unweighted": n_agg / max(n_hc, 1e-30),
        "cosine": cos,
        "l_hc": float(l_hc.detach()),
        "l_agg": float(l_agg.detach()),
    }


class EpochObserver:
    """Call it as ``LoopContext.observe``; ``records`` gets one dict per stage-1/2 epoch."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        mean: tuple[float, ...],
        std: tuple[float, ...],
        grad_batch: tuple[np.ndarray, np.ndarray, int] | None,
        *,
        n_classes: int,
        seed: int = 0,
    ) -> None:
        """``images`` uint8 ``[n, H, W, C]`` / ``labels`` int ``[n]``: the codes observed each
        epoch; ``mean``/``std``: the training run's normalisation; ``grad_batch``: (uint8
        images, labels, n_pos) of the fixed stage-2 batch (None: no gradient diagnostics)."""
        self.labels = np.asarray(labels, dtype=np.int64)
        self.x = self._to_tensor(images)
        self._mean = torch.tensor(mean).view(1, -1, 1, 1)
        self._std = torch.tensor(std).view(1, -1, 1, 1)
        self.grad_batch = None
        if grad_batch is not None:
            gx, gy, n_pos = grad_batch
            targets = torch.nn.functional.one_hot(torch.as_tensor(gy), n_classes).float()
            self.grad_batch = (self._to_tensor(gx), targets, int(n_pos))
        self.seed = seed
        self.records: list[dict[str, Any]] = []
        self._prev_centres: tuple[np.ndarray, np.ndarray] | None = None

    @staticmethod
    def _to_tensor(images: np.ndarray) -> torch.Tensor:
        arr = np.ascontiguousarray(np.asarray(images, dtype=np.uint8).transpose(0, 3, 1, 2))
        return torch.from_numpy(arr).float() / 255.0

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self._mean.to(x)) / self._std.to(x)

    def codes(self, encoder: nn.Module) -> np.ndarray:
        """``bool[n, K]`` sign bits of the observed images (eval mode, as the index encodes)."""
        was_training = encoder.training
        device = next(encoder.parameters()).device
        encoder.eval()
        out = []
        try:
            with torch.no_grad():
                for s in range(0, len(self.x), 512):
                    u = encoder(self.normalise(self.x[s : s + 512].to(device)))
                    out.append((u >= 0).cpu().numpy())
        finally:
            encoder.train(was_training)
        return np.concatenate(out)

    def __call__(self, rec: dict[str, Any], encoder: nn.Module, method: HashMethod) -> None:
        t0 = time.perf_counter()
        rng_state = torch.get_rng_state()
        try:
            bits = self.codes(encoder)
            centres = method_centres(method)
            out: dict[str, Any] = {
                k: rec[k] for k in ("stage", "epoch", "global_epoch", "loss", "val_map") if k in rec
            }
            out["hash_epoch"] = int(rec["epoch"]) + 1
            out["codes"] = code_metrics(bits, self.labels, None if centres is None else centres[0])
            if centres is not None and self._prev_centres is not None:
                out["centre_movement"] = centre_movement(
                    self._prev_centres[0], centres[0], self._prev_centres[1], centres[1]
                )
            self._prev_centres = centres
            if self.grad_batch is not None:
                gx, gy, n_pos = self.grad_batch
                out["stage2_gradients"] = stage2_gradients(
                    encoder, method, gx, gy, self.normalise, n_pos=n_pos, seed=self.seed
                )
        finally:
            torch.set_rng_state(rng_state)
        out["observe_s"] = round(time.perf_counter() - t0, 2)
        self.records.append(out)
        logger.info(
            "epoch %d (stage %s): centre distance %s, spread %.2f, between %.2f, grads %s",
            out["hash_epoch"],
            out.get("stage"),
            out["codes"].get("centre_distance_mean"),
            out["codes"]["intra_class_spread"],
            out["codes"]["inter_class"]["between_codes"],
            out.get("stage2_gradients"),
        )
