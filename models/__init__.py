"""The model layer: decoder-only Transformer configs (presets as data) and the layer shapes derived from them.

    from accelcal.models import ModelConfig, preset_names
    m = ModelConfig.from_name("llama3-8b")      # models/presets/llama3-8b.yaml
    print(preset_names(), m.weight_bytes() / 1e9)

Below kernels/, validate/ and planner/: every one of them reads model shapes
from here, none from another.  No torch.
"""

from .config import PRESET_DIR, AttentionShape, ModelConfig, preset_for_hf_id, preset_names
from .dims import LayerDims, ModelDims, check_tp

__all__ = ["AttentionShape", "LayerDims", "ModelConfig", "ModelDims", "PRESET_DIR", "check_tp", "preset_for_hf_id", "preset_names"]
