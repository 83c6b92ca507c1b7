"""data: from records to batches -- the preprocessing recipes, the input pipelines and the tf.data service.

Imports only `core` (and the top-level `datasets`)."""
