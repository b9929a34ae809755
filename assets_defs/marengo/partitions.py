"""Partitions: one per Marengo model version, so a model migration is a backfill of one partition."""

import dagster as dg

from resources.providers.marengo_models import MARENGO_MODELS

marengo_model_partitions = dg.StaticPartitionsDefinition(list(MARENGO_MODELS))
