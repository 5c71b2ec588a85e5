"""tf.distribute helpers and the multi-worker training path."""
