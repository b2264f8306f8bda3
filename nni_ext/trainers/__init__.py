"""Trainers: SPOS supernet training, BN recalibration, training a fixed architecture from scratch."""
