"""Models: architectures, checkpoint files, and predicting with them.

registry.py    architectures through the ``unlearn.architectures`` plugins; build, specs
mlp.py         linear (logistic regression) and FlexibleFCN, the paper's Listing 1
cnn.py         a small convolutional net for 1x28x28 images
densenet.py    DenseNet, the paper's Listing 2
resnet.py      a small ResNet with BatchNorm for 1x28x28 images
checkpoint.py  safetensors checkpoints with ``unlearn`` metadata: read, verify, write
metadata.py    the ``unlearn`` metadata checked on load: types, ranges, depth, size
sidecar.py     sidecar files beside a checkpoint (SISA slice states, update logs)
ensemble.py    SISA checkpoints: shard prefixes, their metadata, the aggregate predictor
datasets.py    the data set a checkpoint was trained on, checked against its digest
predict.py     logits, accuracy, loss, ECE; any checkpoint as one predictor
"""
