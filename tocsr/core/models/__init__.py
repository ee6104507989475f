"""Models of the suite: the 16-channel latent autoencoder and the expanded diffusion UNet presets."""
