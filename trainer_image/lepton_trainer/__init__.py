"""Lepton trainer: elastic PyTorch training, checkpoints, progress reporting and serving."""
