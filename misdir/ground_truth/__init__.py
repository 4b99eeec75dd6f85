"""Ground truth for the causal pipeline: rank-1 organisms, whose misalignment can only ride on a known vector.

A rank-1 LoRA adapter on one layer's `mlp.down_proj` adds `scale * B (A h)` to the residual stream at that
layer: whatever the finetune changed, it wrote along its B column. So on such an organism misdir's pipeline
can be checked against a known answer:
- does each extraction method (model-diff at and after the adapter's layer, contrast pairs, control-subtracted)
  recover B (cosine)?
- does ablating B at its layer remove the organism's shift, and by how much more than random directions?
- how much of an EM organism's shift is more than its own domain's control shows (specificity)?
- does ablating one organism's B remove another's shift (transfer), and does the aligned control's B?
- does steering the base along B induce the shift, beyond random directions at the same scales?
- what does the position of the edit (every token, all but the first, answer tokens) do to fluency?
Every causal number stands beside the same edit along `n_random` random directions (`sweep.against_null`).

Layout:
- `study.py`: `adapter_writes`, `ground_truth_study` (the sweep and its analysis);
- `planted.py`: `plant`, `positive_control` (the same checks on a direction planted without training);
- `report.py`: `plot_ground_truth`, `write_model_cards` (figures and model cards from the study's record).
"""

from misdir.ground_truth.planted import plant, positive_control
from misdir.ground_truth.report import plot_ground_truth, write_model_cards
from misdir.ground_truth.study import (
    RANK1_ORGANISMS,
    TRIGGER,
    adapter_writes,
    answer_chats,
    extract_directions,
    ground_truth_study,
)

__all__ = [
    "RANK1_ORGANISMS",
    "TRIGGER",
    "adapter_writes",
    "answer_chats",
    "extract_directions",
    "ground_truth_study",
    "plant",
    "plot_ground_truth",
    "positive_control",
    "write_model_cards",
]
