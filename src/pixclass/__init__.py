"""pixclass: self-hosted image classification, from a folder of images to a served model."""

__version__ = "0.1.0"
