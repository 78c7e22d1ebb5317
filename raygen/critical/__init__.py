"""Critical states (seed 002): which frames of a demonstration are bottlenecks, marked in a new dataset.

``methods`` holds the per-episode annotation methods and their parameters; ``annotate_dataset`` writes an
annotated copy of a dataset (an int8 ``augment_states`` column); ``critical_states`` lists its marked frames
for a source that restarts episodes from them.
"""

from raygen.critical.annotate import ANNOTATION_KEY, COLUMN, annotate_dataset, annotation_of, critical_states
from raygen.critical.methods import (
    COMBINED_DEFAULT,
    METHODS,
    AnnotationError,
    Method,
    action_variance,
    combined,
    gripper_changes,
    pose_changes,
    resolve_params,
    reward_threshold,
    subtask_signals,
)

__all__ = [
    "ANNOTATION_KEY",
    "COLUMN",
    "COMBINED_DEFAULT",
    "METHODS",
    "AnnotationError",
    "Method",
    "action_variance",
    "annotate_dataset",
    "annotation_of",
    "combined",
    "critical_states",
    "gripper_changes",
    "pose_changes",
    "resolve_params",
    "reward_threshold",
    "subtask_signals",
]
