"""The expanded 16-channel teacher: autoencoder + diffusion UNet, trained or loaded from local folders."""
