"""`odh train`: train a hashing encoder on an image set's training split with Ray Train."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cluster.runtime import RuntimeConfig
    from indexer.training import TrainJobConfig
    from odh_core.config import TrainConfig, TrainRunConfig

logger = logging.getLogger("odh")


def cmd_train(
    job: TrainJobConfig, config: TrainConfig, run: TrainRunConfig, runtime: RuntimeConfig
) -> int:
    from cluster.runtime import ray_runtime
    from indexer.training import train_encoder

    with ray_runtime(runtime):
        checkpoint = train_encoder(job.image_set, config, job.output, run)
    logger.info("encoder checkpoint: %s", checkpoint)
    return 0
