"""What a pipeline run left behind, read after the run: MLMD records, TFMA output, the pushed model."""
