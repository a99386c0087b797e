"""Datasets: discovery, splitting, decoding and augmentation."""

from cnnkit.data.datasets import (
    DecodedImages,
    DecodedSplits,
    SkippedFilesWarning,
    TensorImageDataset,
    decode_images,
    decode_splits,
    load_dataset,
    warn_skipped,
)
from cnnkit.data.decode import (
    DEFAULT_MAX_PIXELS,
    ImageTooLarge,
    NotAnImage,
    UndecodableImage,
    check_signature,
    decode_bytes,
    decode_file,
)
from cnnkit.data.folders import DatasetSplits, ImageList, expand_image_paths, scan_folder
from cnnkit.data.prepare import prepare_file, prepare_images
from cnnkit.data.transforms import eval_transform, train_transform

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DatasetSplits",
    "DecodedImages",
    "DecodedSplits",
    "ImageList",
    "ImageTooLarge",
    "NotAnImage",
    "SkippedFilesWarning",
    "TensorImageDataset",
    "UndecodableImage",
    "check_signature",
    "decode_bytes",
    "decode_file",
    "decode_images",
    "decode_splits",
    "eval_transform",
    "expand_image_paths",
    "load_dataset",
    "prepare_file",
    "prepare_images",
    "scan_folder",
    "train_transform",
    "warn_skipped",
]
