"""The encode job: Ray Data reads image-set parts, an actor pool of encoders hashes them, tasks
write code parts and reject parts. Every input row ends in exactly one of ``codes/`` or
``rejects/``: a row whose values are out of range (a negative id, a label that overflows int32 or
is not a class of the image set, an unknown split — :func:`indexer.imageset.row_problems`), that
does not decode or that the encoder fails on becomes a reject row with its stage and reason; it
never fails the job.

The job is atomic: it writes into a fresh staging directory next to ``output`` and swaps it in
only when everything succeeded, so a failed job leaves the previous output as it was."""

from __future__ import annotations

import hashlib
import io
import logging
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from indexer import storage
from indexer.codes import (
    CODES_DIR,
    ENCODE_INFO_FILE,
    REJECT_SCHEMA,
    REJECTS_DIR,
    SUMMARY_FILE,
    code_schema,
)
from indexer.imageset import (
    INT64_MAX,
    ImageSetError,
    check_part_schema,
    list_parts,
    read_info,
    row_problems,
)
from indexer.job_metrics import JobMetrics
from odh_core.options import option

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
PASSTHROUGH = (("key", pa.string()), ("label", pa.list_(pa.int32())), ("split", pa.string()))


@dataclass(frozen=True)
class EncodeConfig:
    """One encode job: Ray Data reads an image set, an actor pool hashes it (``_encode.json``)."""

    image_set: str = option(help="image set directory or s3:// prefix", flag="--images")
    checkpoint: str = option(help="encoder checkpoint directory")
    output: str = option(help="codes directory or s3:// prefix")
    batch_size: int = option(256, help="images per encoder batch")
    concurrency: int = option(1, help="encoder actors")
    num_cpus: float = option(1.0, help="CPUs per encoder actor", flag="--actor-cpus")
    writer_num_cpus: float = option(0.25, help="CPUs per code-writing task")
    torch_threads: int = option(1, help="torch threads per encoder actor")
    num_gpus: float = option(0.0, help="GPUs per encoder actor (0: CPU)", flag="--gpus-per-actor")
    inference: str = option(
        "packed",
        help="CPU inference of binary models: packed (XNOR/popcount kernels, identical codes) "
        "or float (torch); GPUs and full-precision models always use float",
        choices=("packed", "float"),
    )

    def __post_init__(self) -> None:
        if self.inference not in ("packed", "float"):
            raise ValueError(
                f"EncodeConfig.inference must be 'packed' or 'float', got {self.inference!r}"
            )
        for name in ("image_set", "checkpoint", "output"):
            if not getattr(self, name):
                raise ValueError(f"EncodeConfig.{name} is required")
        if self.batch_size < 1:
            raise ValueError(f"EncodeConfig.batch_size must be >= 1, got {self.batch_size}")
        if self.concurrency < 1:
            raise ValueError(f"EncodeConfig.concurrency must be >= 1, got {self.concurrency}")
        if not self.num_cpus > 0:
            raise ValueError(f"EncodeConfig.num_cpus must be > 0, got {self.num_cpus}")
        if self.num_gpus < 0:
            raise ValueError(f"EncodeConfig.num_gpus must be >= 0, got {self.num_gpus}")
        if not self.writer_num_cpus > 0:
            raise ValueError(
                f"EncodeConfig.writer_num_cpus must be > 0, got {self.writer_num_cpus}"
            )
        if self.torch_threads < 1:
            raise ValueError(f"EncodeConfig.torch_threads must be >= 1, got {self.torch_threads}")


@dataclass(frozen=True)
class EncodeSummary:
    """Counts and throughput of an encode job (``_summary.json``)."""

    read: int
    encoded: int
    rejected: int
    seconds: float
    images_per_s: float
    output: str
    rejected_by_stage: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:1000]


class EncodeBatch:
    """Ray Data actor UDF: loads the encoder once, turns image rows into code or reject rows."""

    def __init__(
        self,
        checkpoint: str,
        torch_threads: int = 1,
        device: str = "cpu",
        inference: str = "packed",
        n_classes: int | None = None,
    ) -> None:
        from odh_core.encoder import Encoder

        self.n_classes = n_classes
        self.encoder = Encoder.from_checkpoint(
            checkpoint, device=device, num_threads=torch_threads, inference=inference
        )
        self.width = self.encoder.n_bits // 8

    def _encode_rows(self, arrays: np.ndarray) -> tuple[np.ndarray, list[str | None]]:
        """Encode the normalised rows; if the batch fails, retry row by row to isolate errors."""
        try:
            return self.encoder.encode_arrays(arrays), [None] * len(arrays)
        except Exception:
            codes = np.zeros((len(arrays), self.width), dtype=np.uint8)
            errors: list[str | None] = []
            for j, arr in enumerate(arrays):
                try:
                    codes[j] = self.encoder.encode_arrays(arr[None])[0]
                    errors.append(None)
                except Exception as exc:
                    errors.append(_error_text(exc))
            return codes, errors

    def __call__(self, batch: pa.Table) -> pa.Table:
        n = batch.num_rows
        images = batch.column("image").to_pylist()
        problems = row_problems(batch, self.n_classes)
        stage: list[str | None] = ["validate" if p else None for p in problems]
        error: list[str | None] = list(problems)
        ok_rows: list[int] = []
        decoded: list[np.ndarray] = []
        for row, data in enumerate(images):
            if stage[row] is not None:
                continue
            if not data:
                stage[row], error[row] = "decode", "ImageDecodeError: image data is empty"
                continue
            try:
                decoded.append(self.encoder.decode(data))
                ok_rows.append(row)
            except Exception as exc:
                stage[row], error[row] = "decode", _error_text(exc)
        codes = np.zeros((n, self.width), dtype=np.uint8)
        if ok_rows:  # normalise the batch in one pass, not image by image
            encoded, errors = self._encode_rows(self.encoder.normalise(np.stack(decoded)))
            for j, row in enumerate(ok_rows):
                if errors[j] is None:
                    codes[row] = encoded[j]
                else:
                    stage[row], error[row] = "encode", errors[j]
        valid = pa.array([s is None for s in stage])
        code_col = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(self.width), n, [None, pa.py_buffer(codes.tobytes())]
        )
        code_col = pc.if_else(valid, code_col, pa.scalar(None, pa.binary(self.width)))
        cols = {"id": _ids_int64(batch.column("id")), "code": code_col}
        fits = pa.array([s != "validate" for s in stage])
        for name, typ in PASSTHROUGH:
            if name in batch.column_names:
                # a row rejected by validation may hold values that do not fit the type (a label
                # over int32): null them; every remaining value is in range, the cast cannot fail
                col = pc.if_else(fits, batch.column(name), pa.scalar(None, batch.column(name).type))
                cols[name] = col.cast(typ, safe=False)
            else:
                cols[name] = pa.nulls(n, typ)
        cols["stage"] = pa.array(stage, pa.string())
        cols["error"] = pa.array(error, pa.string())
        cols["image_bytes"] = pc.fill_null(pc.binary_length(batch.column("image")), 0).cast(
            pa.int64()
        )
        return pa.table(cols)


def _ids_int64(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """The ``id`` column as int64; values that do not fit (uint64 above int64) become null (their
    rows are rejected by ``row_problems``, which names the value)."""
    if pa.types.is_unsigned_integer(col.type):
        col = pc.if_else(pc.greater(col, INT64_MAX), pa.scalar(None, col.type), col)
    return col.cast(pa.int64())


def _part_name(ids: np.ndarray) -> str:
    """A deterministic file name for a batch: its smallest id and a digest of its sorted ids."""
    ids = np.sort(ids.astype(np.int64))
    digest = hashlib.sha1(ids.tobytes()).hexdigest()[:10]
    return f"part-{int(ids[0]):012d}-{digest}.parquet"


def write_batch(
    batch: pa.Table, output: str, n_bits: int, storage_options: dict[str, Any] | None
) -> pa.Table:
    """Ray Data task: write a batch's code rows and reject rows; returns a one-row summary."""
    ok = pc.is_null(batch.column("stage"))
    codes = batch.filter(ok)
    rejects = batch.filter(pc.invert(ok))
    written = 0
    if batch.num_rows:
        name = _part_name(pc.fill_null(batch.column("id"), -1).to_numpy())
        for rows, sub, schema in (
            (codes, CODES_DIR, code_schema(n_bits)),
            (rejects, REJECTS_DIR, REJECT_SCHEMA),
        ):
            if rows.num_rows:
                buf = io.BytesIO()
                pq.write_table(rows.select(schema.names).cast(schema), buf)
                storage.write_bytes_atomic(
                    storage.join(output, sub, name), buf.getvalue(), storage_options
                )
                written += buf.tell()
    stages = rejects.column("stage").to_pylist()
    return pa.table(
        {
            "encoded": [codes.num_rows],
            "rejected": [rejects.num_rows],
            "rejected_validate": [stages.count("validate")],
            "rejected_decode": [stages.count("decode")],
            "rejected_encode": [stages.count("encode")],
            "image_bytes": [int(pc.sum(batch.column("image_bytes")).as_py() or 0)],
            "written_bytes": [written],
        },
    )


def _pyarrow_fs(uri: str, storage_options: dict[str, Any] | None) -> tuple[Any, str]:
    """A pyarrow filesystem Ray Data can read with, and the path inside it (None fs for local)."""
    import pyarrow.fs as pafs

    fs, path = storage.url_to_fs(uri, storage_options)
    if storage.is_local(fs):
        return None, path
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def _check_ids(parts: list[str], storage_options: dict[str, Any] | None) -> int:
    """Read only the ``id`` columns: nulls and duplicates fail here, naming the file, before
    anything is written (negative ids become reject rows). Returns the row count."""
    seen: list[np.ndarray] = []
    for uri in parts:
        fs, p = storage.url_to_fs(uri, storage_options)
        col = pq.read_table(p, filesystem=fs, columns=["id"]).column("id")
        if col.null_count:
            raise ImageSetError(f"{uri}: column 'id' has {col.null_count} null values")
        seen.append(col.to_numpy())
    if seen:
        all_ids = np.concatenate([ids.astype(np.int64, copy=False) for ids in seen])
        uniq, counts = np.unique(all_ids, return_counts=True)
        if len(uniq) != len(all_ids):
            dup = int(uniq[counts > 1][0])
            owners = sorted({parts[i] for i, ids in enumerate(seen) if (ids == dup).any()})
            raise ImageSetError(f"{' and '.join(owners)}: column 'id' has duplicate id {dup}")
    return sum(len(ids) for ids in seen)


def encode(
    config: EncodeConfig,
    *,
    pushgateway: str | None = None,
    progress: bool = True,
    storage_options: dict[str, Any] | None = None,
) -> EncodeSummary:
    """Encode every image of ``config.image_set`` with the checkpoint's encoder into
    ``config.output``.

    Ray must be initialised by the caller. ``num_gpus`` > 0 gives every encoder actor that many
    GPUs (and runs the model on ``cuda``). Writes ``codes/part-*.parquet``,
    ``rejects/part-*.parquet``, ``_encode.json``, ``metrics.prom`` and ``_summary.json`` (last);
    pushes the metrics to ``pushgateway`` when given.
    """

    from odh_core.encoder import Encoder

    if not isinstance(config, EncodeConfig):
        raise TypeError(f"encode: config must be an EncodeConfig, got {type(config).__name__}")
    cfg = replace(
        config,
        image_set=storage.normalize(config.image_set),
        checkpoint=storage.normalize(config.checkpoint),
        output=storage.normalize(config.output),
    )
    metrics = JobMetrics("odh_encode")
    t0 = time.perf_counter()
    dataset_info = read_info(cfg.image_set, storage_options)
    parts = list_parts(cfg.image_set, storage_options)
    if not parts:
        raise ValueError(f"{cfg.image_set}: no part-*.parquet files")
    columns: list[str] = []
    for uri in parts:
        schema = check_part_schema(uri, storage_options)
        columns = [c for c in ("id", "image", "key", "label", "split") if c in schema.names]
    n_rows = _check_ids(parts, storage_options)
    n_bits = Encoder.from_checkpoint(cfg.checkpoint, inference="float").n_bits
    logger.info(
        "encode: %s (%d rows in %d parts) with %s (%d bits), %d actor(s), batch %d",
        cfg.image_set, n_rows, len(parts), cfg.checkpoint, n_bits, cfg.concurrency, cfg.batch_size,
    )  # fmt: skip
    staging = storage.staging_dir(cfg.output)
    storage.makedirs(staging, storage_options)
    metrics.set_seconds("validate", time.perf_counter() - t0)
    try:
        summary = _run(cfg, staging, parts, columns, n_rows, n_bits, dataset_info, metrics,
                       t0, progress, storage_options)  # fmt: skip
        storage.swap_dir(staging, cfg.output, storage_options)
    except BaseException:
        logger.error("encode failed: %s is unchanged; removing %s", cfg.output, staging)
        try:
            storage.remove_tree(staging, storage_options)
        except OSError as exc:  # pragma: no cover - best effort
            logger.warning("could not remove %s: %r", staging, exc)
        raise
    if pushgateway:
        metrics.push(pushgateway)
    logger.info(
        "encode: %d read, %d encoded, %d rejected in %.1f s (%.0f images/s)",
        n_rows, summary.encoded, summary.rejected, summary.seconds, summary.images_per_s,
    )  # fmt: skip
    return summary


def _run(
    cfg: EncodeConfig,
    staging: str,
    parts: list[str],
    columns: list[str],
    n_rows: int,
    n_bits: int,
    dataset_info: Any,
    metrics: JobMetrics,
    t0: float,
    progress: bool,
    storage_options: dict[str, Any] | None,
) -> EncodeSummary:
    """The pipeline, writing everything into ``staging``; returns the summary."""
    import ray

    from odh_core.checkpoint import checkpoint_sha256
    from odh_core.progress import progress_bar

    pa_fs, _ = _pyarrow_fs(cfg.image_set, storage_options)
    paths = [storage.url_to_fs(u, storage_options)[1] for u in parts]
    ds = ray.data.read_parquet(paths, filesystem=pa_fs, columns=columns)
    ds = ds.map_batches(
        EncodeBatch,
        fn_constructor_kwargs={
            "checkpoint": cfg.checkpoint,
            "torch_threads": cfg.torch_threads,
            "device": "cuda" if cfg.num_gpus > 0 else "cpu",
            "inference": cfg.inference,
            "n_classes": dataset_info.n_classes or None,
        },
        compute=ray.data.ActorPoolStrategy(size=cfg.concurrency),
        num_cpus=cfg.num_cpus,
        num_gpus=cfg.num_gpus or None,
        batch_size=cfg.batch_size,
        batch_format="pyarrow",
    )
    ds = ds.map_batches(
        write_batch,
        fn_kwargs={"output": staging, "n_bits": n_bits, "storage_options": storage_options},
        num_cpus=cfg.writer_num_cpus,
        batch_size=None,
        batch_format="pyarrow",
    )
    logger.info("encode: running the Ray Data pipeline")
    t_run = time.perf_counter()
    totals = dict.fromkeys(
        ("encoded", "rejected", "rejected_validate", "rejected_decode", "rejected_encode",
         "image_bytes",
         "written_bytes"), 0,
    )  # fmt: skip
    with progress_bar(n_rows, desc="encode", unit="img", disable=not progress) as bar:
        for batch in ds.iter_batches(batch_size=None, batch_format="pyarrow"):
            for name in totals:
                totals[name] += int(pc.sum(batch.column(name)).as_py() or 0)
            bar.update(int(pc.sum(batch.column("encoded")).as_py() or 0)
                       + int(pc.sum(batch.column("rejected")).as_py() or 0))  # fmt: skip
    encoded, rejected = totals["encoded"], totals["rejected"]
    if encoded + rejected != n_rows:
        raise RuntimeError(
            f"encode: {encoded} codes + {rejected} rejects != "
            f"{n_rows} input rows of {cfg.image_set}"
        )
    seconds = time.perf_counter() - t0
    metrics.set_seconds("encode", time.perf_counter() - t_run)
    metrics.set_seconds("total", seconds)
    metrics.add_rows("encode", "read", n_rows)
    metrics.add_rows("encode", "encoded", encoded)
    by_stage = {
        "validate": totals["rejected_validate"],
        "decode": totals["rejected_decode"],
        "encode": totals["rejected_encode"],
    }
    for stage, n in by_stage.items():
        metrics.add_rows(stage, "rejected", n)
    metrics.add_bytes("read", totals["image_bytes"])
    metrics.add_bytes("write", totals["written_bytes"])
    storage.write_json_atomic(
        storage.join(staging, ENCODE_INFO_FILE),
        {
            "format_version": FORMAT_VERSION,
            **asdict(cfg),
            "checkpoint_sha256": checkpoint_sha256(cfg.checkpoint),
            "n_bits": n_bits,
            "dataset": dataset_info.name,
        },
        storage_options,
    )
    summary = EncodeSummary(
        read=n_rows,
        encoded=encoded,
        rejected=rejected,
        seconds=round(seconds, 3),
        images_per_s=round(n_rows / seconds, 1) if seconds > 0 else 0.0,
        output=cfg.output,
        rejected_by_stage={k: v for k, v in by_stage.items() if v},
    )
    metrics.write(staging, storage_options)
    storage.write_json_atomic(
        storage.join(staging, SUMMARY_FILE), summary.to_json(), storage_options
    )
    return summary
