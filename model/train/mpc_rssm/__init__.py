"""mpc_rssm: the PyTorch side of mpcd's RSSM (module, model file export/import, training).

Public API for the model file: export_model(model, path, metadata) and load_model(path)
(see export.py and model/FORMAT.md).
"""
from .rssm import RSSM, RSSMConfig
from .export import export_model, load_model, FORMAT_NAME, FORMAT_VERSION, ModelFileError

__all__ = ["RSSM", "RSSMConfig", "export_model", "load_model", "FORMAT_NAME",
           "FORMAT_VERSION", "ModelFileError"]
