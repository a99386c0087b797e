"""Datasets: discovery, splitting, decoding and augmentation."""

from cnnkit.data.datasets import DecodedImages, SkippedFilesWarning, TensorImageDataset, decode_images, load_dataset
from cnnkit.data.decode import UndecodableImage, decode_bytes, decode_file
from cnnkit.data.folders import DatasetSplits, ImageList, scan_folder
from cnnkit.data.transforms import eval_transform, train_transform

__all__ = [
    "DatasetSplits",
    "DecodedImages",
    "ImageList",
    "SkippedFilesWarning",
    "TensorImageDataset",
    "UndecodableImage",
    "decode_bytes",
    "decode_file",
    "decode_images",
    "eval_transform",
    "load_dataset",
    "scan_folder",
    "train_transform",
]
