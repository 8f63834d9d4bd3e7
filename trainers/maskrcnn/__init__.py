"""Mask R-CNN: the hyperparameter vocabulary both backends share (`params`), and the backends
(`detectron2/`, `torchvision/`), each behind the adapter interface of `trainers.base`."""
