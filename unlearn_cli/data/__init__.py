"""Data: what a data set is and how it is read. No torch here except ``tensors``.

manifest.py      ``load_manifest``: a YAML manifest and its data file into a Dataset
dataset.py       ``Dataset``: features, labels, record IDs, split masks, ID lookups
schema.py        the manifest's keys and their checks; errors name the file and key
array_reader.py  reading .safetensors / .npz data files
csv_reader.py    reading .csv data files (one-hot categorical columns)
splits.py        train/test masks from mask arrays or {fraction, seed}
normalize.py     feature scaling with train-split statistics
ids.py           request (ids) files: reading, merging, checking, writing
synthetic.py     the deterministic 2-D toy data sets of the PUMA paper
tensors.py       rows of a data set as torch tensors
"""
