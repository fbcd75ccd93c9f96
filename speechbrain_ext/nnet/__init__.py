"""Neural building blocks: token mixers, encoders and their shared layers."""
