"""Datasets (insightface RecordIO, image folders, file lists), decoding and normalization."""

from ..formats import read_image_list
from .image_folder import (
    IMAGE_EXTENSIONS,
    ImageFolderDataset,
    ImageListDataset,
    find_images,
)
from .record_dataset import RecordDataset, write_record_dataset
from .recordio import (
    CorruptRecordError,
    ImageHeader,
    RecordReader,
    RecordWriter,
    pack_image_record,
    unpack_image_record,
)
from .size import dataset_size
from .skipping import Batch, SkipLog, Skipped, collate
from .transforms import (
    UnreadableImageError,
    adjustments,
    decode_image,
    encode_jpeg,
    load_image,
    normalize,
    random_horizontal_flip,
    to_input_tensor,
)

__all__ = [
    "dataset_size",
    "IMAGE_EXTENSIONS",
    "Batch",
    "CorruptRecordError",
    "ImageFolderDataset",
    "ImageHeader",
    "ImageListDataset",
    "RecordDataset",
    "RecordReader",
    "RecordWriter",
    "SkipLog",
    "Skipped",
    "UnreadableImageError",
    "adjustments",
    "collate",
    "decode_image",
    "encode_jpeg",
    "find_images",
    "load_image",
    "normalize",
    "pack_image_record",
    "random_horizontal_flip",
    "read_image_list",
    "to_input_tensor",
    "unpack_image_record",
    "write_record_dataset",
]
