"""Training recipe: schedules, masked losses and metrics, callbacks, BLEU."""
