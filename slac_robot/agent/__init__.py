"""SLAC: latent model, SAC in the latent space, the update step, sequence replay."""
