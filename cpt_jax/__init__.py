"""cpt_jax: continual pretraining without forgetting, in JAX/Flax."""
