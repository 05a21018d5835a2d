"""Partitions definitions shared by assets and sensors: one ``inbox_batches`` partition per inbox batch."""

import dagster as dg

inbox_batches = dg.DynamicPartitionsDefinition(name="inbox_batches")
