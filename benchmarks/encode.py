"""Encoding benchmark: the full-precision twin, the BNN float path and the bit-packed path.

``odh bench encode`` (or ``python -m benchmarks.encode``), in one run:

1. images/s of ``Encoder.encode_arrays`` (normalised Fashion-MNIST test images in, packed codes
   out) at batch 1, 32 and 256 with 1 and 2 threads, for the FP twin (``fp``), the BNN's torch
   path (``bnn-float``) and its bit-packed XOR/popcount path (``packed``); forms interleaved per
   repeat, median of the repeats. Codes of the packed and float paths are compared bit for bit.
2. The popcount limit of this CPU: XOR + popcount + add over L1-resident uint64 words on one
   thread (what the packed path's inner loop does), × 64 bits ÷ the network's binary MACs.
3. The whole ``odh encode`` job (``indexer.encode.encode``: Ray Data read, decode, encode, write)
   over the 70,000 Fashion-MNIST images with the float path (before) and the packed path (after),
   plus an in-process breakdown (decode / encode / write) on a subset.
4. The model bytes of each form, and Larq Compute Engine where it installs.

Weights are untrained (BN statistics from a few batches of real images): speed does not depend on
their values. Writes ``encode.json``, ``encode.md`` and ``encode.png`` under ``--output``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

if __package__ in (None, ""):  # `python3 benchmarks/encode.py`
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks._encode_report import markdown, plot_png, ratios
from benchmarks._machine import command_line, machine_info
from odh_core.options import option

logger = logging.getLogger(__name__)

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


@dataclass(frozen=True)
class Config:
    """Settings of ``odh bench encode``."""

    batches: tuple[int, ...] = option((1, 32, 256), help="batch sizes of the encoder rows")
    threads: tuple[int, ...] = option((1, 2), help="thread counts of the encoder rows")
    images: int = option(2048, help="images per measurement (batch 1: a tenth)")
    repeats: int = option(3, help="repeats per row (median)")
    job_images: int = option(70_000, help="images of the odh encode job (0: skip the job)")
    breakdown_images: int = option(5_000, help="images of the in-process stage breakdown")
    layer: str = option("reactnet", help="binary layer config of the BNN")
    n_bits: int = option(64, help="code length", flag="--bits")
    output: str = option(RESULTS_DIR, help="directory for encode.json / .md / .png")
    quick: bool = option(False, help="tiny sizes: a smoke run of every code path")

    def __post_init__(self) -> None:
        if not self.batches or min(self.batches) < 1:
            raise ValueError(f"batches must be positive, got {self.batches}")
        if not self.threads or min(self.threads) < 1:
            raise ValueError(f"threads must be positive, got {self.threads}")
        for name in ("images", "repeats"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.job_images < 0 or self.breakdown_images < 0:
            raise ValueError("job_images and breakdown_images must be >= 0")

    def effective(self) -> Config:
        """The settings actually used (``quick`` shrinks every size)."""
        if not self.quick:
            return self
        return dataclasses.replace(
            self, batches=(1, 8), threads=(1,), images=16, repeats=1,
            job_images=min(self.job_images, 300), breakdown_images=min(self.breakdown_images, 100),
        )  # fmt: skip


def _fmnist(n: int) -> np.ndarray:
    """The first ``n`` of Fashion-MNIST's 70,000 images (train then test), uint8[n, 28, 28]."""
    from indexer.converters.fashion_mnist import _find, fashion_mnist_source, read_idx

    source = fashion_mnist_source(None)
    test = read_idx(_find(source, "t10k-images-idx3-ubyte"))
    if n <= len(test):
        return test[:n]
    return np.concatenate([test, read_idx(_find(source, "train-images-idx3-ubyte"))])[:n]


def _models(cfg: Config, calib: np.ndarray) -> dict[str, Any]:
    import torch

    from odh_core.models import create_encoder

    x = torch.from_numpy(calib)
    out = {}
    for name, binary in (("fp", False), ("bnn", True)):
        torch.manual_seed(0)
        model = create_encoder("resnet_small", n_bits=cfg.n_bits, binary=binary, layer=cfg.layer,
                               n_classes=10)  # fmt: skip
        model.train()
        with torch.no_grad():
            for i in range(0, len(x), 128):
                model(x[i : i + 128])
        out[name] = model.eval()
    return out


def popcount_limit(binary_macs: int, words: int = 4096, reps: int = 20_000) -> dict[str, Any]:
    """One thread's XOR+popcount+add throughput over L1-resident words → images/s bound."""
    import numba

    from odh_core.packed.kernels import popcount64

    @numba.njit(cache=False)
    def probe(a: np.ndarray, b: np.ndarray, reps: int) -> int:
        total = 0
        for r in range(reps):
            acc = 0
            for i in range(a.shape[0]):
                acc += popcount64(a[i] ^ b[i])
            total += acc + r
        return total

    rng = np.random.default_rng(0)
    a = rng.integers(0, 2**63, words, dtype=np.uint64)
    b = rng.integers(0, 2**63, words, dtype=np.uint64)
    probe(a, b, 1)
    numba.set_num_threads(1)
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        probe(a, b, reps)
        best = max(best, words * reps / (time.perf_counter() - t0))
    flags: list[str] = []
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as fh:
            flags = fh.read().split()
    macs_per_s = best * 64
    return {
        "words_per_s": round(best),
        "binary_macs_per_s": round(macs_per_s),
        "network_binary_macs": int(binary_macs),
        "images_per_s_limit": round(macs_per_s / binary_macs, 1),
        "isa": [f for f in ("popcnt", "avx512_vpopcntdq", "avx512_bitalg") if f in flags],
    }


def encoder_rows(cfg: Config, models: dict[str, Any], arrays: np.ndarray) -> list[dict[str, Any]]:
    """images/s per form × batch × threads, forms interleaved within each repeat."""
    import torch

    from odh_core.checkpoint import EncoderConfig
    from odh_core.encoder import Encoder

    rows = []
    for threads in cfg.threads:
        for batch in cfg.batches:
            n = max(batch, cfg.images // 10 if batch == 1 else cfg.images)
            n = n - n % batch
            x = arrays[:n]
            encoders = {}
            for form, key, inference in (("fp", "fp", "float"), ("bnn-float", "bnn", "float"),
                                         ("packed", "bnn", "packed")):  # fmt: skip
                ec = EncoderConfig(name="resnet_small", n_bits=cfg.n_bits, layer=cfg.layer,
                                   binary=key == "bnn", n_classes=10)  # fmt: skip
                encoders[form] = Encoder(models[key], ec, num_threads=threads, batch_size=batch,
                                         inference=inference)  # fmt: skip
                encoders[form].encode_arrays(x[:batch])  # warm-up
            times: dict[str, list[float]] = {f: [] for f in encoders}
            for _ in range(cfg.repeats):
                for form, enc in encoders.items():
                    torch.set_num_threads(threads)
                    t0 = time.perf_counter()
                    for s in range(0, n, batch):
                        enc.encode_arrays(x[s : s + batch])
                    times[form].append(time.perf_counter() - t0)
            for form, ts in times.items():
                med = statistics.median(ts)
                rows.append({"form": form, "batch": batch, "threads": threads, "images": n,
                             "images_per_s": round(n / med, 1),
                             "ms_per_image": round(1000 * med / n, 4)})  # fmt: skip
            logger.info("threads %d batch %d: %s", threads, batch, rows[-3:])
    return rows


def _image_set(images: np.ndarray, path: str) -> None:
    import pyarrow as pa

    from indexer.converters.fashion_mnist import CLASS_NAMES
    from indexer.converters.png import encode_pngs
    from indexer.imageset import IMAGE_SET_SCHEMA, DatasetInfo, write_image_set

    table = pa.table({"id": pa.array(np.arange(len(images), dtype=np.int64)),
                      "image": pa.array(encode_pngs(images), pa.binary())})  # fmt: skip
    table = table.cast(pa.schema([IMAGE_SET_SCHEMA.field("id"), IMAGE_SET_SCHEMA.field("image")]))
    info = DatasetInfo(name="fmnist-70k", class_names=CLASS_NAMES, image_size=(28, 28),
                       channels=1)  # fmt: skip
    write_image_set(table, path, info, rows_per_part=5_000)


def breakdown(ckpt: str, images: np.ndarray, workdir: str) -> dict[str, dict[str, float]]:
    """In-process seconds per stage of the encode actor + writer, per inference path."""
    import pyarrow as pa

    from indexer.converters.png import encode_pngs
    from indexer.encode import EncodeBatch, write_batch

    pngs = encode_pngs(images)
    table = pa.table({"id": pa.array(np.arange(len(pngs), dtype=np.int64)),
                      "image": pa.array(pngs, pa.binary())})  # fmt: skip
    out: dict[str, dict[str, float]] = {}
    for inference in ("float", "packed"):
        actor = EncodeBatch(ckpt, torch_threads=1, inference=inference)
        enc = actor.encoder
        t0 = time.perf_counter()
        arrays = enc.normalise(np.stack([enc.decode(p) for p in pngs]))
        t_decode = time.perf_counter() - t0
        t0 = time.perf_counter()
        enc.encode_arrays(arrays)
        t_encode = time.perf_counter() - t0
        coded = [actor(table.slice(s, 256)) for s in range(0, len(pngs), 256)]
        target = os.path.join(workdir, f"breakdown-{inference}")
        t0 = time.perf_counter()
        for b in coded:
            write_batch(b, target, enc.n_bits, None)
        t_write = time.perf_counter() - t0
        total = t_decode + t_encode + t_write
        out[inference] = {"images": len(pngs), "decode_s": round(t_decode, 3),
                          "encode_s": round(t_encode, 3), "write_s": round(t_write, 3),
                          "images_per_s": round(len(pngs) / total, 1)}  # fmt: skip
    return out


def job(cfg: Config, models: dict[str, Any], workdir: str) -> dict[str, Any]:
    """The whole encode job on ``job_images`` Fashion-MNIST images, float path then packed."""
    import ray

    from indexer.encode import EncodeConfig, encode
    from odh_core.checkpoint import EncoderConfig, save_checkpoint

    ckpt = os.path.join(workdir, "ckpt")
    save_checkpoint(models["bnn"], EncoderConfig(name="resnet_small", n_bits=cfg.n_bits,
                    layer=cfg.layer, n_classes=10), ckpt)  # fmt: skip
    images = _fmnist(cfg.job_images)
    result: dict[str, Any] = {"images": len(images), "concurrency": 1, "num_cpus": 1.0,
                              "torch_threads": 1}  # fmt: skip
    if cfg.breakdown_images:
        result["breakdown"] = breakdown(ckpt, images[: cfg.breakdown_images], workdir)
    image_set = os.path.join(workdir, "fmnist")
    _image_set(images, image_set)
    started = not ray.is_initialized()
    if started:  # a fresh local instance: never join another Ray cluster on this machine
        ray.init(address="local", include_dashboard=False, logging_level=logging.WARNING)
    try:
        for key, inference in (("before", "float"), ("after", "packed")):
            config = EncodeConfig(image_set=image_set, checkpoint=ckpt,
                                  output=os.path.join(workdir, f"codes-{inference}"),
                                  concurrency=1, num_cpus=1.0, inference=inference)  # fmt: skip
            summary = encode(config, progress=False)
            result[key] = {"inference": inference, **summary.to_json()}
            result[f"images_per_s_{key}"] = summary.images_per_s
    finally:
        if started:
            ray.shutdown()
    from indexer.codes import code_arrays, read_codes

    same = [code_arrays(read_codes(os.path.join(workdir, f"codes-{i}")), cfg.n_bits)
            for i in ("float", "packed")]  # fmt: skip
    order = [np.argsort(ids) for ids, _ in same]
    result["codes_identical"] = bool(
        np.array_equal(same[0][0][order[0]], same[1][0][order[1]])
        and np.array_equal(same[0][1][order[0]], same[1][1][order[1]])
    )
    result["speedup"] = round(result["images_per_s_after"] / result["images_per_s_before"], 2)
    return result


def model_bytes(models: dict[str, Any], cfg: Config, workdir: str) -> dict[str, Any]:
    from odh_core.checkpoint import EncoderConfig, save_checkpoint
    from odh_core.export import export_packed
    from odh_core.models import model_stats

    sizes: dict[str, Any] = {}
    for key, model in models.items():
        path = os.path.join(workdir, f"ckpt-{key}")
        save_checkpoint(model, EncoderConfig(name="resnet_small", n_bits=cfg.n_bits,
                        binary=key == "bnn", layer=cfg.layer, n_classes=10), path)  # fmt: skip
        sizes[f"{key}_checkpoint_file"] = os.path.getsize(os.path.join(path, "model.safetensors"))
    ec = EncoderConfig(name="resnet_small", n_bits=cfg.n_bits, layer=cfg.layer, n_classes=10)
    info = export_packed(models["bnn"], ec, os.path.join(workdir, "export"))
    stats = model_stats(models["bnn"], 28)
    sizes.update({
        "packed_export_file": info["file_bytes"],
        "packed_export_binary_weights": info["binary_weight_bytes"],
        "packed_runtime": stats["packed_bytes"],
        "packed_runtime_binary_words": stats["packed_binary_bytes"],
        "packed_runtime_fp": stats["packed_fp_bytes"],
        "packed_runtime_border_table": stats["packed_corr_bytes"],
        "bnn_fp32_params": stats["fp32_bytes"],
        "fp_twin_fp32_params": model_stats(models["fp"], 28)["fp32_bytes"],
    })  # fmt: skip
    return {"bytes": sizes, "stats": stats}


def lce_status() -> dict[str, Any]:
    """Whether Larq Compute Engine can run here (it needs TensorFlow to import and to convert)."""
    try:
        import larq_compute_engine  # noqa: F401
    except Exception as exc:  # ImportError, or its own import of tensorflow failing
        return {
            "available": False,
            "reason": (
                f"larq_compute_engine does not import ({type(exc).__name__}: {exc}). The "
                "0.16.0 wheel for CPython 3.11 x86_64 does download, but the package imports "
                "TensorFlow at import time (even for its TFLite interpreter) and converting the "
                "network needs TensorFlow + larq to re-express it in Keras; TensorFlow (~600 MB) "
                "is not a project dependency and was not installed on this shared machine, so "
                "no lce rows were measured"
            ),
        }
    return {"available": False, "reason": "larq_compute_engine imports, but this benchmark has "
            "no Keras port of the network yet: no lce rows"}  # fmt: skip


def _command() -> str:
    cmd = command_line()
    for prefix in (sys.argv[0] if sys.argv else "",):
        if prefix.endswith(os.path.join("benchmarks", "encode.py")):
            return cmd.replace(prefix, "python -m benchmarks.encode", 1)
    return cmd


def run(config: Config) -> int:
    """Run the benchmark and write encode.json / encode.md / encode.png; returns 0."""
    import torch

    cfg = config.effective()
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    imgs = _fmnist(max(cfg.images, 512))
    arrays = ((imgs.astype(np.float32) / 255.0 - 0.5) / 0.5)[:, None]
    models = _models(cfg, arrays[:512])
    result: dict[str, Any] = {
        "benchmark": "encode",
        "command": _command(),
        "machine": machine_info(),
        # the output directory as given relative to the project, not this machine's absolute path
        "settings": {
            **dataclasses.asdict(cfg),
            "output": os.path.relpath(cfg.output, os.path.dirname(os.path.dirname(RESULTS_DIR))),
        },
        "load_average_start": round(os.getloadavg()[0], 2),
    }
    with tempfile.TemporaryDirectory(prefix="odh-bench-encode-") as workdir:
        result.update(model_bytes(models, cfg, workdir))
        result["popcount"] = popcount_limit(result["stats"]["binary_macs"],
                                            reps=200 if cfg.quick else 20_000)  # fmt: skip
        from benchmarks.encode_profile import profile_packed

        result["profile"] = profile_packed(models["bnn"], arrays, repeats=cfg.repeats + 2)
        result["rows"] = encoder_rows(cfg, models, arrays)
        from odh_core.checkpoint import EncoderConfig
        from odh_core.encoder import Encoder

        ec = EncoderConfig(name="resnet_small", n_bits=cfg.n_bits, layer=cfg.layer, n_classes=10)
        a = Encoder(models["bnn"], ec, inference="float").encode_arrays(arrays)
        b = Encoder(models["bnn"], ec, inference="packed").encode_arrays(arrays)
        result["codes_identical"] = {"images": len(arrays), "identical": bool(np.array_equal(a, b))}
        result["lce"] = lce_status()
        if cfg.job_images:
            result["job"] = job(cfg, models, workdir)
    result["load_average_end"] = round(os.getloadavg()[0], 2)
    result["ratios"] = ratios(result)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "encode.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "encode.md").write_text(markdown(result))
    plot_png(result["rows"], out / "encode.png")
    logger.info("wrote %s", out / "encode.json")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.encode [--quick] ...`` (flags generated from :class:`Config`)."""
    from cluster.cli_config import parse_config

    argv = sys.argv[1:] if argv is None else list(argv)
    cfg = parse_config(Config, argv, prog="python -m benchmarks.encode", description=__doc__)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return run(cfg)


if __name__ == "__main__":
    sys.exit(main())
