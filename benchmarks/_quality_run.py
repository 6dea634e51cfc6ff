"""One quality-benchmark run (train, encode query + database, evaluate) and the run pool.

With ``args.no_ray`` training calls ``odh_core.stages.fit`` in-process and nothing here imports
Ray or FAISS; otherwise it goes through Ray Train (``train_encoder``).
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from collections.abc import Iterator
from typing import Any

import numpy as np

from benchmarks._quality_data import load_fmnist1, to_model_input, upsample_uint8
from benchmarks._quality_grid import FP_TWIN, PROTOCOL, RunSpec

logger = logging.getLogger("odh.bench.quality")


def _config(spec: RunSpec, args: argparse.Namespace) -> Any:
    from odh_core.train import TrainConfig

    warm, s1, s2 = args.epochs
    over = dict(spec.overrides)
    if not over.pop("stage2", True):
        s1, s2 = s1 + s2, 0
    return TrainConfig(
        model=over.pop("model", args.model),
        n_bits=spec.n_bits,
        layer=spec.layer,
        binary=spec.binary,
        method=spec.method,
        warmup_epochs=warm,
        transition_epoch=s1,
        stage2_epochs=s2,
        batch_size=args.batch_size,
        seed=spec.seed,
        num_threads=args.threads,
        **over,
    )


def fmnist_label_distances() -> np.ndarray:
    """Tree distances of the Fashion-MNIST class hierarchy the converter writes."""
    from indexer.converters.fashion_mnist import CLASS_NAMES, HIERARCHY
    from odh_core.hierarchy import hierarchy_distances

    return hierarchy_distances(HIERARCHY, CLASS_NAMES)


# Knobs added after run records were first keyed, left out of ``run_config_key`` while at these
# (their default, behaviour-neutral) values: a default run keeps the key that the records already
# hold, so ``--append`` still finds it. TrainConfig fields, then the method config's (per method).
KEY_OMIT_AT_DEFAULT: dict[str, Any] = {"two_step": False, "init_from": ""}
METHOD_KEY_OMIT_AT_DEFAULT: dict[str, dict[str, Any]] = {
    "odh": {"w_distill": 0.0, "distill_temperature": 1.0},
}


def run_config_key(cfg: Any, args: argparse.Namespace) -> str:
    """The full run configuration as one string (plots and tables are keyed by it): every
    TrainConfig field but the seed, the method's full config, the protocol and the device
    (the knobs of :data:`KEY_OMIT_AT_DEFAULT` only when set away from their default)."""
    import json

    def kept(items: dict[str, Any], omit: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in items.items() if k not in omit or v != omit[k]}

    fields = {k: v for k, v in cfg.to_dict().items() if k not in ("seed", "method_config")}
    fields = kept(fields, KEY_OMIT_AT_DEFAULT)
    fields["method_config"] = kept(
        cfg.full_method_config(), METHOD_KEY_OMIT_AT_DEFAULT.get(cfg.method, {})
    )
    return json.dumps({"protocol": PROTOCOL, "device": args.device_name, **fields}, sort_keys=True)


def spec_key(spec: RunSpec, args: argparse.Namespace) -> str:
    """``run_config_key`` of the configuration ``spec`` trains (what a run record's
    ``config_key`` holds)."""
    return run_config_key(_config(spec, args), args)


def _train(
    spec: RunSpec, cfg: Any, train: tuple[np.ndarray, np.ndarray], args: argparse.Namespace
) -> tuple[Any, dict[str, Any]]:
    """Train one run; returns (eval-mode encoder, info). A method that needs no labels gets
    none (so no validation: its last epoch is kept)."""
    import torch

    from odh_core.models import create_encoder

    images, labels = train
    if not cfg.create_method().needs_labels:
        labels = None
    if args.no_ray:
        from odh_core.stages import LoopContext, fit

        result = fit(
            images,
            labels,
            cfg,
            LoopContext(device=torch.device(args.device)),
            label_distance=fmnist_label_distances(),
        )
        model = create_encoder(
            cfg.model,
            n_bits=cfg.n_bits,
            binary=cfg.binary,
            layer=cfg.effective_layer,
            in_channels=result.channels,
        )
        model.load_state_dict(result.state_dict)
        info = {
            "best_val_map": result.best_val_map,
            "best_epoch": result.best_epoch,
            "method_info": result.method_info,
            "determinism": result.determinism,
        }
        mean, std = result.mean, result.std
    else:
        from odh_core.checkpoint import load_checkpoint
        from odh_core.train import train_encoder

        with tempfile.TemporaryDirectory() as tmp:
            path = train_encoder(
                images,
                labels,
                cfg,
                tmp,
                use_gpu=args.device == "cuda",
                label_distance=fmnist_label_distances(),
            )
            model, enc_cfg = load_checkpoint(path)
        prov = enc_cfg.provenance
        info = {
            "best_val_map": prov.get("best_val_map_all_tie_aware"),
            "best_epoch": prov.get("best_epoch"),
            "method_info": prov.get("method_info", {}),
            "determinism": prov.get("determinism", {}),
        }
        mean, std = enc_cfg.mean, enc_cfg.std
    model = model.to(args.device).eval()
    model.norm = (
        torch.tensor(mean).view(1, -1, 1, 1).to(args.device),
        torch.tensor(std).view(1, -1, 1, 1).to(args.device),
    )
    return model, info


def _forward(model: Any, size: int, device: str) -> Any:
    """The function that maps a normalised float batch to head outputs: on CPU a binary model
    runs through the bit-packed kernels (``odh_core.packed``, the codes ``odh encode`` writes:
    bit-identical to the float model in eval mode, about 5x faster), anything else through
    torch."""
    import torch

    if device == "cpu" and getattr(getattr(model, "module", model), "binary", False):
        import numba

        from odh_core.packed import PackedNet, PackedUnsupportedError

        numba.set_num_threads(max(1, min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS)))
        try:
            packed = PackedNet.from_model(model, verify_size=size)
        except PackedUnsupportedError as exc:
            logger.info("encode: float path (%s)", exc)
        else:
            return lambda x: torch.from_numpy(packed(x))
    return model


def encode(model: Any, images: np.ndarray, size: int, channels: int, device: str) -> np.ndarray:
    """Packed codes of uint8 [n, 28, 28, 1] images (upsampled on the fly for larger backbones)."""
    import torch

    from odh_core.packing import pack_bits

    mean, std = model.norm
    forward = _forward(model, size, device)
    out = []
    with torch.inference_mode():
        for s in range(0, len(images), 1024):
            x = torch.from_numpy(images[s : s + 1024]).to(device).permute(0, 3, 1, 2).float()
            x = to_model_input(x, size, channels).round().clamp(0, 255) / 255.0
            out.append(pack_bits((forward((x - mean) / std) >= 0).cpu().numpy()))
    return np.concatenate(out)


def _train_from_fp_twin(
    spec: RunSpec, cfg: Any, data: dict[str, Any], args: argparse.Namespace
) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """``init_from`` = :data:`FP_TWIN`: train ODH-FP with the same bits and seed (the methods
    grid's ODH-FP run), save it to a temporary checkpoint, train ``cfg`` from it. Returns
    (model, info, what the record says of the twin)."""
    import dataclasses

    from odh_core.checkpoint import EncoderConfig, save_checkpoint

    fp_spec = RunSpec("ODH-FP", spec.method, False, spec.n_bits, spec.seed)
    fp_cfg = _config(fp_spec, args)
    t0 = time.perf_counter()
    fp_model, fp_info = _train(fp_spec, fp_cfg, data["train_model"], args)
    twin = {
        "kind": "fp-twin",
        "label": fp_spec.label,
        "seed": fp_spec.seed,
        "config_key": run_config_key(fp_cfg, args),
        "best_val_map": fp_info.get("best_val_map"),
        "train_s": round(time.perf_counter() - t0, 2),
    }
    with tempfile.TemporaryDirectory() as tmp:
        enc_cfg = EncoderConfig(
            name=fp_cfg.model,
            n_bits=fp_cfg.n_bits,
            channels=args.channels,
            mean=tuple(float(v) for v in fp_model.norm[0].flatten().cpu()),
            std=tuple(float(v) for v in fp_model.norm[1].flatten().cpu()),
            image_size=args.size,
            method=fp_cfg.method,
            binary=False,
        )
        path = save_checkpoint(fp_model.cpu(), enc_cfg, f"{tmp}/fp-twin")
        model, info = _train(
            spec, dataclasses.replace(cfg, init_from=path), data["train_model"], args
        )
    logger.info(
        "%s %s seed=%d: initialised from its FP twin (%s)",
        spec.label,
        spec.variant,
        spec.seed,
        twin,
    )
    return model, info, twin


def run_one(spec: RunSpec, data: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """Train, encode query + database, evaluate; returns the run record. A run whose
    ``init_from`` is :data:`FP_TWIN` trains its full-precision twin first (``train_s`` and
    ``wall_s`` include it; ``init_from_run`` describes it)."""
    from odh_core.metrics import (
        evaluate_codes,
        mean_average_hierarchical_precision,
        precision_recall_curves,
    )

    cfg = _config(spec, args)
    t0 = time.perf_counter()
    twin: dict[str, Any] | None = None
    if cfg.init_from == FP_TWIN:
        model, info, twin = _train_from_fp_twin(spec, cfg, data, args)
    else:
        model, info = _train(spec, cfg, data["train_model"], args)
    train_s = time.perf_counter() - t0
    q = encode(model, data["query"][0], args.size, args.channels, args.device)
    db = encode(model, data["database"][0], args.size, args.channels, args.device)
    ql, dl = data["query"][1], data["database"][1]
    metrics = evaluate_codes(q, ql, db, dl, n_bits=spec.n_bits, seed=spec.seed)
    curves = precision_recall_curves(q, ql, db, dl, n_bits=spec.n_bits)
    mahp = mean_average_hierarchical_precision(
        q, ql, db, dl, 1.0 - fmnist_label_distances(), n_bits=spec.n_bits, k=250
    )
    wall = time.perf_counter() - t0
    keys = (
        "map_all_tie_aware",
        "map_all_shuffled",
        "map_1000_tie_aware",
        "map_100_tie_aware",
        "p_h2",
    )
    rec = {
        "method": spec.method,
        "label": spec.label,
        "variant": spec.variant,
        "backbone": cfg.model,
        "base_backbone": args.model,  # the grid's backbone (a variant may change it)
        "layer": cfg.effective_layer if spec.binary else "fp",
        "binary": spec.binary,
        "n_bits": spec.n_bits,
        "protocol": PROTOCOL,
        "seed": spec.seed,
        # the fmnist-1 query / train / database split and the train / validation split
        "data_split": {"protocol": PROTOCOL, "seed": data.get("split_seed", 0)},
        "val_split": {"seed": cfg.seed, "fraction": cfg.val_fraction, "db_max": cfg.val_db_max},
        # fixed centres (CSQ, SHC, ODH with hadamard centres): kind, min and mean distance
        "centres": info["method_info"].get("centres"),
        "determinism": info.pop("determinism", {}),
        "epochs": cfg.n_epochs,
        "epochs_detail": list(args.epochs),
        "mode": cfg.mode,
        "wall_s": round(wall, 2),
        "train_s": round(train_s, 2),
        "device": args.device_name,
        "runner": "in-process" if args.no_ray else "ray-train",
        "concurrent_runs": args.parallel,
        "command": args.command,
        "method_config": cfg.full_method_config(),
        "config_key": run_config_key(cfg, args),
        "train_config": {k: v for k, v in cfg.to_dict().items() if k != "method_config"},
        "init_from_run": twin,
        "metrics": {k: metrics[k] for k in keys},
        "metrics_hierarchical": {"mahp_250": mahp},
        "validation": info,
        "n_query": len(ql),
        "n_database": len(dl),
        "n_train": len(data["train"][1]),
        "curves": curves,
    }
    logger.info(
        "%s %s K=%d seed=%d: %s (%.1f s)",
        spec.label,
        spec.variant,
        spec.n_bits,
        spec.seed,
        rec["metrics"],
        wall,
    )
    return rec


# ------------------------------------------------------------------------------- pool

_WORKER: dict[str, Any] = {}


def _init_worker(args: argparse.Namespace) -> None:
    """Per process: load the protocol's data once (upsampled for large backbones)."""
    import torch

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)
    if args.device == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    split_seed = int(getattr(args, "split_seed", 0))
    data: dict[str, Any] = load_fmnist1(
        args.source,
        seed=split_seed,
        query_per_class=args.query_per_class,
        train_per_class=args.train_per_class,
    )
    data["split_seed"] = split_seed
    x, y = data["train"]
    if args.size != 28:
        x = upsample_uint8(x, args.size, args.channels, args.device)
    data["train_model"] = (x, y)
    _WORKER.update(data=data, args=args)


def _worker_run(spec: RunSpec) -> dict[str, Any]:
    return run_one(spec, _WORKER["data"], _WORKER["args"])


def run_all(specs: list[RunSpec], args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """Yield run records (in completion order when parallel)."""
    if args.parallel <= 1:
        _init_worker(args)
        for spec in specs:
            yield _worker_run(spec)
        return
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(
        max_workers=min(args.parallel, len(specs)),
        mp_context=mp.get_context("spawn"),
        initializer=_init_worker,
        initargs=(args,),
    ) as pool:
        futures = [pool.submit(_worker_run, spec) for spec in specs]
        for fut in as_completed(futures):
            yield fut.result()
