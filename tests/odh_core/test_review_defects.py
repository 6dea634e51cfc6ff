"""Issue 11 part 6: the defects found in review, each pinned by a test that failed before."""

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from odh_core.centres import hadamard
from odh_core.layers import LAYER_CONFIGS, BasicBlock
from odh_core.metrics import evaluate_codes
from odh_core.models import create_encoder, model_stats
from odh_core.packing import pack_bits, unpack_bits
from odh_core.stages import LoopContext, _split_data, fit
from odh_core.train import TrainConfig

BandImages = Callable[..., tuple[np.ndarray, np.ndarray]]  # the band_images fixture
StateDigest = Callable[[dict[str, torch.Tensor]], str]  # the state_digest fixture


def _pairwise_hamming_brute(c: np.ndarray) -> list[int]:
    """Hamming distances of every pair of ±1 rows, by counting differing entries."""
    return [int((c[i] != c[j]).sum()) for i in range(len(c)) for j in range(i + 1, len(c))]


# ---------------------------------------------------------------- 1: faithful xnor not affine


def _affinity_gap(model: torch.nn.Module, seed: int) -> float:
    """max |f(a·x + b·y) − (a·f(x) + b·f(y))| / max |f| with a + b = 1 (0 for an affine f)."""
    gen = torch.Generator().manual_seed(seed)
    x = 3.0 * torch.randn(4, 1, 28, 28, generator=gen)
    y = 3.0 * torch.randn(4, 1, 28, 28, generator=gen)
    a, b = 0.3, 0.7
    with torch.no_grad():
        fx, fy, fxy = model(x), model(y), model(a * x + b * y)
    return float((fxy - (a * fx + b * fy)).abs().max() / fxy.abs().max())


def test_faithful_xnor_network_is_not_affine() -> None:
    torch.manual_seed(0)
    model = create_encoder("resnet_small", n_bits=16, layer="xnor_weight_only").eval()
    # an affine network has gap ~1e-7 (float rounding); the reference's Hardtanh clips
    assert _affinity_gap(model, 1) > 0.05
    assert any(isinstance(m, torch.nn.Hardtanh) for m in model.stem)
    block = BasicBlock(4, 4, 1, binary=True, cfg=LAYER_CONFIGS["xnor_weight_only"]).eval()
    with torch.no_grad():
        out = block(10.0 * torch.randn(2, 4, 6, 6, generator=torch.Generator().manual_seed(2)))
    assert out.abs().max() <= 1.0  # Hardtanh after the residual add
    assert isinstance(block.bn_act, torch.nn.Hardtanh)


def test_other_layers_keep_their_blocks() -> None:
    """Only the faithful layer gains the Hardtanh after BN (state dicts of the others unchanged)."""
    for layer in ("xnor", "bireal", "reactnet", "irnet"):
        block = BasicBlock(4, 4, 1, binary=True, cfg=LAYER_CONFIGS[layer])
        assert isinstance(block.bn_act, torch.nn.Identity), layer
        model = create_encoder("resnet_small", n_bits=16, layer=layer)
        assert not any(isinstance(m, torch.nn.Hardtanh) for m in model.stem), layer


# ---------------------------------------------------------------- 2: stage-2 pools


@pytest.mark.parametrize("mode", ["spec", "faithful"])
def test_stage2_pools_hold_training_rows_only(mode: str, band_images: BandImages) -> None:
    images, labels = band_images(40, seed=3)
    cfg = TrainConfig(n_bits=16, val_fraction=0.25, batch_size=8, mode=mode)
    _, train, val, _, pool = _split_data(images, labels, cfg, LoopContext())
    assert val is not None and len(val) == 10
    rows = lambda data: {r.numpy().tobytes() for r in data.images}  # noqa: E731
    assert rows(pool) == rows(train) and len(pool) == len(train) == 30
    assert not rows(pool) & rows(val)  # no validation image is ever trained on


# ---------------------------------------------------------------- 3: metrics at ≥ 256 bits


def _ap(rel_sorted: np.ndarray) -> float:
    if rel_sorted.sum() == 0:
        return 0.0
    cum = np.cumsum(rel_sorted)
    return float(sum(cum[j] / (j + 1) for j in range(len(rel_sorted)) if rel_sorted[j]) / cum[-1])


@pytest.mark.parametrize("n_bits", [256, 512])
def test_shuffled_map_at_long_codes_matches_brute_force(n_bits: int) -> None:
    rng = np.random.default_rng(n_bits)
    n_q, n_db, seed = 6, 80, 4
    q_bits = rng.random((n_q, n_bits)) < 0.5
    db_bits = rng.random((n_db, n_bits)) < 0.5
    db_bits[:20] = q_bits[rng.integers(0, n_q, 20)] ^ (rng.random((20, n_bits)) < 0.05)  # near
    db_bits[20:40] = ~q_bits[np.arange(20) % n_q]  # complements: distance K (wrapped to 0)
    db_bits[30:40] ^= rng.random((10, n_bits)) < 0.02  # nearly complements: ≥ 240
    ql, dl = rng.integers(0, 3, n_q), rng.integers(0, 3, n_db)
    m = evaluate_codes(pack_bits(q_bits), ql, pack_bits(db_bits), dl, n_bits=n_bits, seed=seed)
    # oracle: the documented seeded shuffle, then a stable sort by the true distance
    perm = np.random.default_rng(seed).permutation(n_db)
    aps = []
    for i in range(n_q):
        dist = (q_bits[i][None] != db_bits[perm]).sum(axis=1)
        assert dist.max() >= 256  # the range a uint8 wraps is exercised
        order = np.argsort(dist, kind="stable")
        aps.append(_ap(dl[perm][order] == ql[i]))
    assert m["map_all_shuffled"] == pytest.approx(np.mean(aps), abs=1e-12)


@pytest.mark.parametrize("n_bits", [256, 512])
def test_tie_free_long_codes_both_maps_equal_sorted_order(n_bits: int) -> None:
    """Distinct distances (no ties), many ≥ 256: tie-aware = shuffled = AP of the sorted order."""
    rng = np.random.default_rng(1)
    n_db = 60
    dists = rng.choice(np.arange(1, n_bits), size=n_db, replace=False)
    dists[:3] = (n_bits, n_bits - 1, 255) if n_bits == 256 else (n_bits, 300, 256)
    dists = np.unique(dists)  # distinct (the forced ones may repeat a drawn one)
    n_db = len(dists)
    db_bits = np.zeros((n_db, n_bits), bool)
    for j, d in enumerate(dists):
        db_bits[j, :d] = True  # query is all zeros: distance d exactly
    dl = rng.integers(0, 2, n_db)
    assert (unpack_bits(pack_bits(db_bits), n_bits).sum(axis=1) == dists).all()
    m = evaluate_codes(
        pack_bits(np.zeros((1, n_bits), bool)), np.array([1]), pack_bits(db_bits), dl,
        n_bits=n_bits,
    )  # fmt: skip
    expected = _ap(dl[np.argsort(dists)] == 1)
    assert m["map_all_tie_aware"] == pytest.approx(expected, abs=1e-12)
    assert m["map_all_shuffled"] == pytest.approx(expected, abs=1e-12)


# ---------------------------------------------------------------- 4: xnor_weight_only MACs


def test_weight_only_xnor_macs_are_not_binary_macs() -> None:
    wo = model_stats(create_encoder("resnet_small", n_bits=16, layer="xnor_weight_only"), 28)
    true_1bit = model_stats(create_encoder("resnet_small", n_bits=16, layer="xnor"), 28)
    assert wo["binary_macs"] == 0 and wo["binary_mac_fraction"] == 0.0
    # the same convolutions: what xnor counts as XNOR/popcount MACs are real MACs here
    assert wo["binary_weight_only_macs"] == true_1bit["binary_macs"] > 0
    assert wo["macs"] == true_1bit["macs"]
    assert true_1bit["binary_weight_only_macs"] == 0
    with pytest.raises(ValueError, match=r"TrainConfig\.layer"):
        TrainConfig(layer="xnor_weight_only")  # never chosen directly, in any mode
    with pytest.raises(ValueError, match=r"TrainConfig\.layer"):
        TrainConfig(layer="xnor_weight_only", mode="faithful")


# ---------------------------------------------------------------- 6: CSQ centre distances


def test_csq_centre_distances_are_recorded(band_images: BandImages) -> None:
    images, labels = band_images(32, seed=3)
    cfg = TrainConfig(
        n_bits=16, method="csq", transition_epoch=1, stage2_epochs=0, batch_size=8,
        val_fraction=0.25,
    )  # fmt: skip
    info = fit(images, labels, cfg, LoopContext()).method_info["centres"]
    h = hadamard(16)
    dists = _pairwise_hamming_brute(np.concatenate([h, -h])[:4])
    assert info == {"kind": "hadamard", "min_distance": min(dists), "mean_distance": np.mean(dists)}


# ---------------------------------------------------------------- 5 + 6: run records (Ray)


def test_run_records_carry_split_seeds_and_centres(
    ray_local: None, tmp_path: Path, state_digest: StateDigest
) -> None:
    from indexer.converters.synthetic import make_synthetic
    from indexer.training import train_encoder

    image_set = tmp_path / "images"
    make_synthetic(str(image_set), n_classes=4, per_class=12, image_size=28, seed=5)
    cfg = TrainConfig(
        n_bits=16, method="csq", transition_epoch=1, stage2_epochs=0, batch_size=8, seed=3,
        val_fraction=0.25,
    )  # fmt: skip
    out = tmp_path / "out"
    train_encoder(str(image_set), cfg, str(out))
    prov = json.loads((out / "checkpoint" / "config.json").read_text())["provenance"]
    summary = json.loads((out / "train_result.json").read_text())
    h = hadamard(16)
    dists = _pairwise_hamming_brute(np.concatenate([h, -h])[:4])
    for rec in (prov, summary):
        split = {"protocol": "synthetic-1", "seed": 5, "train_splits": ["train"]}
        assert rec["data_split"] == split
        assert rec["val_split"] == {"seed": 3, "fraction": 0.25, "db_max": 2000}
        assert rec["method_info"]["centres"]["min_distance"] == min(dists)
        assert rec["method_info"]["centres"]["mean_distance"] == pytest.approx(np.mean(dists))
        assert rec["determinism"]["num_threads"] == cfg.num_threads
        assert rec["determinism"]["deterministic_algorithms"] is True
    assert summary["seed"] == 3 and summary["image_set"] == str(image_set)
    # seeded: the Ray Train worker's weights equal an in-process fit's, bit for bit
    from indexer.training import load_train_split
    from odh_core.checkpoint import load_checkpoint

    model, _ = load_checkpoint(str(out / "checkpoint"))
    direct = fit(*load_train_split(str(image_set)), cfg, LoopContext())
    assert state_digest(model.state_dict()) == state_digest(direct.state_dict)


# ---------------------------------------------------------------- 9: reproducible CPU training


def test_two_seeded_short_runs_give_identical_weights(
    band_images: BandImages, state_digest: StateDigest
) -> None:
    images, labels = band_images(48, seed=3)
    cfg = TrainConfig(
        n_bits=16, warmup_epochs=1, transition_epoch=1, stage2_epochs=1, batch_size=8,
        val_fraction=0.25, seed=7, num_threads=1,
    )  # fmt: skip
    before = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    a = fit(images, labels, cfg, LoopContext())
    b = fit(images, labels, cfg, LoopContext())
    assert state_digest(a.state_dict) == state_digest(b.state_dict)
    assert [h["loss"] for h in a.history] == [h["loss"] for h in b.history]
    assert a.determinism["num_threads"] == 1 and a.determinism["deterministic_algorithms"]
    # fit restores the caller's torch settings
    assert (torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()) == before
    c = fit(images, labels, TrainConfig(**{**cfg.to_dict(), "seed": 8}), LoopContext())
    assert state_digest(c.state_dict) != state_digest(a.state_dict)  # the seed matters
