"""Training: the train wrapper, DMP sharding, optimizers, checkpoints and the loop."""
