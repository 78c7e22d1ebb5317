"""Run configuration: typed, frozen, strict pydantic models loaded from YAML, with ``--set`` overrides.

Every field is documented where it is declared; that text is the CLI help. An unknown key is an
error that names it and lists the keys that are allowed there; a bad value names the file, the field
and the value.
"""

from __future__ import annotations

import datetime as _dt
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = ["ConfigError", "RunConfig", "load_config", "parse_overrides"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


RECORDING_BACKENDS = ("droid", "zed")
"""Backends that read recorded episodes from ``source.root`` instead of simulating them."""
SIM_DEFAULT_SIZE = 128


class DroidConfig(_Strict):
    """Which DROID episodes to read and how (backends droid and zed)."""

    mode: Literal["full", "metadata"] = Field(
        "full", description="full: RGB videos, depth and every feature; metadata: no frames at all (state, action, "
                            "calibration, tracks3d, tracks2d per camera, flow).")
    outcome: Literal["success", "failure", "all"] = Field(
        "success", description="Episodes from the success/ or failure/ folders, or both.")
    labs: list[str] | None = Field(None, description="Only these labs (the tree's first level, e.g. AUTOLab).")
    date_from: _dt.date | None = Field(None, description="Only episodes recorded on or after this day (YYYY-MM-DD).")
    date_to: _dt.date | None = Field(None, description="Only episodes recorded on or before this day (YYYY-MM-DD).")
    episode_ids_file: str | None = Field(
        None, description="Only the episode ids (uuids, e.g. AUTOLab+5d05c5aa+2023-07-07-10h-11m-56s) listed in "
                          "this file: one per line, or a JSON list.")
    limit: int | None = Field(None, ge=1, description="At most this many episodes (after the filters, in path order).")
    calibration_cache: str | None = Field(
        None, description="Intrinsics cache written by `raygen droid calibrate` (first source of intrinsics).")
    intrinsics_file: str | None = Field(
        None, description="Intrinsics in the DROID team's published form {episode_id: {serial: {cameraMatrix: "
                          "[fx, cx, fy, cy], width, height}}} (third source, after trajectory_im128.h5).")
    missing_intrinsics: Literal["reject", "nominal"] = Field(
        "reject", description="A camera without intrinsics: reject the episode, or use the camera model's nominal "
                              "intrinsics (recorded as such; 2D tracks are then approximate).")
    depth: bool = Field(True, description="full mode: store depth (droid: a stereo estimate from the side-by-side "
                                          "MP4; zed: the ZED SDK's depth). Ignored in metadata mode.")
    zed_depth_mode: str = Field("NEURAL", description="ZED SDK depth mode (zed backend): NEURAL_LIGHT, NEURAL, "
                                                      "NEURAL_PLUS, ...")
    stereo_min_depth_m: float = Field(0.3, gt=0, description="droid backend: nearest depth the stereo matcher "
                                                             "searches for in the exterior cameras (sets its "
                                                             "disparity range, and so its cost).")
    stereo_min_depth_wrist_m: float = Field(0.08, gt=0, description="droid backend: the same for the wrist camera, "
                                                                    "which sees the fingers up close.")
    timestamp_tolerance_ms: float = Field(
        5.0, ge=0, description="A frame whose timestamp differs from trajectory.h5's <serial>_frame_received by "
                               "more than this does not belong to that step (the episode is rejected).")

    @model_validator(mode="after")
    def _dates(self) -> DroidConfig:
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValueError(f"date_from {self.date_from} is after date_to {self.date_to}")
        return self


class BottleneckConfig(_Strict):
    """Bottleneck-focused generation (seed 002): episodes that start from a spherical perturbation around a
    critical state of an annotated dataset, recover to it and finish the demo (simulators, pick_place)."""

    dataset: str = Field(description="An annotated raygen pick-and-place dataset (`raygen annotate`, or an HDF5 "
                                     "file imported with `raygen import hdf5` and annotated): the critical "
                                     "states are its frames with augment_states = 1.")
    radius_m: tuple[float, float] = Field((0.2, 0.5), description="Perturbation distance r of the TCP, metres "
                                                                  "(uniform in [lo, hi]).")
    elevation_deg: tuple[float, float] = Field((5.0, 80.0), description="Perturbation direction's angle from the "
                                                                        "vertical, degrees (uniform).")
    azimuth_deg: tuple[float, float] = Field((0.0, 360.0), description="Perturbation direction's azimuth, degrees "
                                                                       "(uniform).")
    rotation_deg: tuple[float, float] = Field((-180.0, 180.0), description="Roll, pitch and yaw of the hand about "
                                                                           "the TCP (world axes), degrees, each "
                                                                           "uniform.")
    recovery_steps: int = Field(20, ge=2, description="Frames to ease back from the perturbed pose to the "
                                                      "critical state before the demo's remaining targets.")
    compare_with: str | None = Field(None, description="A regular run's dataset to compare with at the end "
                                                       "(success rate, coverage of the critical states' "
                                                       "neighbourhoods); the source demos are always compared.")

    @field_validator("radius_m", "elevation_deg", "azimuth_deg", "rotation_deg")
    @classmethod
    def _ordered(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] > v[1]:
            raise ValueError(f"[lo, hi] with lo <= hi, got {list(v)}")
        return v

    @field_validator("radius_m")
    @classmethod
    def _positive(cls, v: tuple[float, float]) -> tuple[float, float]:
        if v[0] < 0:
            raise ValueError(f"distances are >= 0, got {list(v)}")
        return v


class SourceConfig(_Strict):
    backend: Literal["bullet", "isaac", "droid", "zed"] = Field(
        "bullet", description="bullet (simulated, CPU), isaac (simulated, RTX GPU), droid (DROID recordings, CPU) "
                              "or zed (DROID recordings through the ZED SDK, CUDA GPU).")
    task: Literal["pick_place", "soft_pick_place", "two_arms"] = Field(
        "pick_place", description="Task to generate (simulators): pick_place (a rigid cube or cylinder), "
                                  "soft_pick_place (a soft block or a cloth) or two_arms (two Frankas facing each "
                                  "other, each with its own pick and place); all three on bullet and isaac.")
    episodes: int = Field(8, ge=1, description="Number of episodes in the run (specs 0..episodes-1; simulators).")
    seed: int = Field(0, ge=0, le=2**32 - 1,
                      description="Run seed; an episode is (source, seed, index) and always the same (simulators).")
    width: int | None = Field(None, ge=8, description=f"Camera image width in pixels (even); None = "
                                                      f"{SIM_DEFAULT_SIZE} for simulators, the recording's own "
                                                      "size for DROID (a smaller one downscales).")
    height: int | None = Field(None, ge=8, description="Camera image height in pixels (even); None as for width.")
    task_params: dict[str, Any] = Field(default_factory=dict,
                                        description="Task parameters (PickPlaceParams fields, e.g. steps_per_segment, "
                                                    "and scene: scene variation, raygen.actors.tasks.scene; "
                                                    "SoftParams fields for soft_pick_place, e.g. materials; "
                                                    "TwoArmParams for two_arms, e.g. min_separation_m).")
    backend_options: dict[str, Any] = Field(default_factory=dict,
                                            description="Extra backend options (bullet: renderer, robot_visual, ...).")
    python: str | None = Field(None, description="Interpreter for the backend process, e.g. Isaac Sim's python.sh.")
    root: str | None = Field(None, description="DROID raw tree (a folder or an fsspec URL) holding "
                                               "<LAB>/success|failure/<date>/<time>/ episode folders (droid, zed).")
    droid: DroidConfig = Field(default_factory=DroidConfig, description="DROID episode selection and processing.")
    bottleneck: BottleneckConfig | None = Field(None, description="Bottleneck-focused generation around the "
                                                                  "critical states of an annotated dataset "
                                                                  "(simulators); None = regular episodes.")
    render_only_kept: bool | None = Field(
        None, description="Simulate each episode without cameras first and render (a deterministic replay) only "
                          "those that succeed; failures become rejects without a frame rendered or encoded. "
                          "None = on for bottleneck runs, off otherwise (simulators).")

    @field_validator("width", "height")
    @classmethod
    def _even(cls, v: int | None) -> int | None:
        if v is not None and v % 2:
            raise ValueError(f"must be even for yuv420p video, got {v}")
        return v

    @model_validator(mode="after")
    def _fits_backend(self) -> SourceConfig:
        # compared with the defaults, not with what was written: a resolved config (raygen submit) has every key
        default = {name: f.get_default(call_default_factory=True) for name, f in type(self).model_fields.items()}
        if self.recording:
            if not self.root:
                raise ValueError(f"backend {self.backend!r} reads recordings: set source.root to a DROID raw tree "
                                 "(a folder or an fsspec URL)")
            for name in ("episodes", "seed", "task_params"):
                if getattr(self, name) != default[name]:
                    raise ValueError(f"source.{name} is for simulators; the {self.backend!r} backend takes its "
                                     "episodes from source.root (source.droid.limit caps them)")
            if (self.width is None) != (self.height is None):
                raise ValueError("give both source.width and source.height to downscale recordings, or neither")
            if self.bottleneck is not None or self.render_only_kept:
                raise ValueError(f"source.bottleneck and source.render_only_kept are for simulators, not the "
                                 f"recording backend {self.backend!r}")
        elif self.task in ("soft_pick_place", "two_arms") and self.bottleneck is not None:
            raise ValueError(f"source.task {self.task} runs without source.bottleneck (bottleneck runs are "
                             "pick_place only)")
        elif self.root is not None or self.droid != default["droid"]:
            raise ValueError(f"source.root and source.droid are for the recording backends {RECORDING_BACKENDS}, "
                             f"not {self.backend!r}")
        return self

    @property
    def recording(self) -> bool:
        """True for backends that read recorded episodes (droid, zed)."""
        return self.backend in RECORDING_BACKENDS

    @property
    def size(self) -> tuple[int, int] | None:
        """(width, height) of the stored frames; None = a recording's own size."""
        if self.width is None and self.height is None:
            return None if self.recording else (SIM_DEFAULT_SIZE, SIM_DEFAULT_SIZE)
        return (self.width or SIM_DEFAULT_SIZE, self.height or SIM_DEFAULT_SIZE)

    @property
    def name(self) -> str:
        if self.recording:
            return self.backend
        return f"{self.backend}-{self.task}" + ("-bottleneck" if self.bottleneck is not None else "")

    @property
    def renders_only_kept(self) -> bool:
        """source.render_only_kept resolved: on for bottleneck runs unless set."""
        return self.bottleneck is not None if self.render_only_kept is None else self.render_only_kept


class ResourcesConfig(_Strict):
    workers_per_gpu: float = Field(1, ge=1, description="Simulator processes per GPU (2 = two share each GPU).")
    num_gpus: Annotated[int, Field(ge=1)] | Literal["auto"] = Field(
        "auto", description="GPUs to use; auto = every GPU Ray sees (GPU backends). A number also puts bullet on GPUs.")
    max_gpus: int | None = Field(None, ge=1, description="Let the host pool grow up to this many GPUs as GPU nodes "
                                                         "join (autoscaler, or nodes added by hand); None = no "
                                                         "growth beyond num_gpus.")
    cpu_workers: int = Field(1, ge=1, description="Simulator processes when the backend runs on CPU (bullet).")
    cpus_per_worker: float = Field(0.5, gt=0, description="CPUs Ray reserves per simulator actor.")
    cpu_threads: int = Field(1, ge=1, description="Thread cap (OMP/MKL) inside each simulator process.")
    pin_cores: bool = Field(True, description="Give each simulator process whole cores of its own on its node "
                                              "(Linux) and keep raygen's CPU stages off them: a busy neighbour "
                                              "on a simulator's core slows it far beyond its CPU share. A host "
                                              "pins only while a core of its node stays free for the stages.")
    cores_per_worker: int | None = Field(None, ge=1, description="Cores each pinned simulator gets; None = "
                                                                 "cpus_per_worker rounded up.")
    episode_timeout_s: float = Field(600, gt=0,
                                     description="Kill and retry a simulator stuck this long on one episode.")
    startup_timeout_s: float = Field(180, gt=0, description="Kill and retry a simulator not ready after this long.")
    attempts: int = Field(3, ge=1, description="Tries per episode before it is recorded as rejected.")


class QualityConfig(_Strict):
    min_score: float = Field(0.7, ge=0, le=1, description="Keep episodes scoring at least this.")
    require_success: bool = Field(True, description="Reject episodes whose task failed.")


class FlowConfig(_Strict):
    step_m: float = Field(0.001, gt=0, description="Normalized flow step along the gripper path, metres.")


class DiversityConfig(_Strict):
    reject_duplicates: bool = Field(False, description="Reject near-duplicates of earlier episodes.")
    duplicate_threshold: float = Field(0.02, ge=0, description="Novelty below this counts as a near-duplicate.")


class StagesConfig(_Strict):
    quality: QualityConfig = Field(default_factory=QualityConfig)
    flow: FlowConfig = Field(default_factory=FlowConfig)
    diversity: DiversityConfig = Field(default_factory=DiversityConfig)


class OutputConfig(_Strict):
    path: str = Field("out/pick_place", description="Dataset folder (resumed when it exists).")
    shard_size: int = Field(50, ge=1, description="Episodes per shard (one data/video/depth file each); larger "
                                                 "shards mean fewer Hub files and commits.")
    video_codec: str = Field("libsvtav1", description="Colour video encoder (libsvtav1, libx264, ...).")
    crf: int = Field(30, ge=0, le=63, description="Video quality (lower is better).")
    gop: int = Field(2, ge=1, description="Keyframe interval.")
    lerobot_depth: bool = Field(False, description="Also write each camera's depth as LeRobot >= 0.6 reads depth: "
                                                   "a video feature observation.images.<cam>_depth, 12-bit "
                                                   "log-quantized codes in lossless HEVC gray12le (not bit-exact; "
                                                   "the FFV1 copy stays the source of truth).")


class UploadConfig(_Strict):
    repo: str | None = Field(None, description="Where everything goes: a Hub dataset ('org/name' or "
                                               "'hf://datasets/org/name'), a folder ('/abs/path' or "
                                               "'./rel/path'), or an fsspec URL. None = no upload.")
    metadata_repo: str | None = Field(None, description="Optional second target with data, flow and meta only "
                                                        "(no videos, no depth); same forms as repo.")
    private: bool = Field(True, description="Create missing Hub repos as private.")
    revision: str = Field("main", description="Hub branch to commit to (created from main when missing).")
    batch_interval_s: float = Field(600.0, gt=0, description="Upload committed shards at least this often.")
    batch_shards: int = Field(10, ge=1, description="... or as soon as this many shards wait; also the most "
                                                    "shards in one Hub commit.")
    skip_hub_check: bool = Field(False, description="Trust the local upload ledger instead of listing the "
                                                    "target's files once at start.")
    env_file: str | None = Field(None, description="A .env file to read HF_TOKEN from (else the HF_TOKEN "
                                                   "variable, else huggingface_hub's stored login).")
    endpoint: str | None = Field(None, description="Hub endpoint URL (None = huggingface_hub's default, "
                                                   "HF_ENDPOINT).")
    attempts: int = Field(6, ge=1, description="Tries per Hub call on 5xx, timeouts, dropped connections "
                                               "and commit conflicts (exponential backoff with jitter).")
    timeout_s: float = Field(60.0, gt=0, description="Seconds before one Hub request counts as timed out.")
    card: bool = Field(True, description="Write the dataset card (README.md) and the v3.0 tag at the end.")
    license: str = Field("other", description="License named in the dataset card.")

    @field_validator("repo", "metadata_repo")
    @classmethod
    def _target(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("empty; give 'org/name', 'hf://datasets/org/name', a folder or a URL, or leave it out")
        return v


class FeedConfig(_Strict):
    """A live feed: committed episodes above a quality bar POSTed to a trainer in batches (raygen.pipelines.feeds)."""

    name: str = Field(..., pattern=r"^[A-Za-z0-9_.-]+$", description="The feed's name (its delivery record is "
                                                                     "meta/raygen/feeds/<name>.jsonl).")
    url: str = Field(..., description="The trainer's endpoint (http:// or https://).")
    min_quality_score: float = Field(0.0, ge=0, le=1, description="Send only episodes scoring at least this.")
    batch_size: int = Field(8, ge=1, description="Episodes per POST.")
    max_wait_s: float = Field(5.0, gt=0, description="Send a partial batch once its first episode waited this long.")
    payload: Literal["episodes", "references"] = Field(
        "episodes", description="episodes: arrays (.npy) and encoded video/depth segments in the POST; "
                                "references: only where they are in the dataset.")
    api_key_env: str | None = Field(None, description="Environment variable holding the trainer's API key.")
    api_key_file: str | None = Field(None, description="File holding the trainer's API key (else api_key_env).")
    api_key_header: str = Field("Authorization", description="Header the key is sent in.")
    api_key_prefix: str = Field("Bearer ", description="Put before the key in that header.")
    timeout_s: float = Field(30.0, gt=0, description="Seconds before a POST counts as timed out.")
    attempts: int = Field(5, ge=1, description="Tries per batch on 5xx, 408/425/429, timeouts and dropped "
                                               "connections (exponential backoff with jitter); then the batch "
                                               "waits and is tried again, never dropped.")
    retry_after_s: float = Field(30.0, gt=0, description="Wait after the trainer refused a batch (other 4xx).")
    drain_timeout_s: float = Field(30.0, ge=0, description="At the end of a run, how long the feed may take to "
                                                           "deliver what is committed; the rest waits for the "
                                                           "next run.")

    @field_validator("url")
    @classmethod
    def _http(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError(f"must be an http:// or https:// URL, got {v!r}")
        return v


class CostConfig(_Strict):
    gpu_hour: float = Field(0.0, ge=0, description="Price of one GPU for one hour (the node price / its GPUs).")
    cpu_hour: float = Field(0.0, ge=0, description="Price of one CPU core for one hour.")
    currency: str = Field("USD", description="Currency the prices are in (shown beside the estimate).")

    def price(self, gpu_seconds: float, cpu_seconds: float) -> float:
        """The estimated cost of that much GPU and CPU time."""
        return (gpu_seconds * self.gpu_hour + cpu_seconds * self.cpu_hour) / 3600.0


class RunConfig(_Strict):
    source: SourceConfig = Field(default_factory=SourceConfig)
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    stages: StagesConfig = Field(default_factory=StagesConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    upload: UploadConfig = Field(default_factory=UploadConfig)
    cost: CostConfig = Field(default_factory=CostConfig)
    feeds: list[FeedConfig] = Field(default_factory=list, description="Live feeds to trainers (several allowed).")

    @model_validator(mode="after")
    def _feed_names(self) -> RunConfig:
        names = [f.name for f in self.feeds]
        if len(names) != len(set(names)):
            raise ValueError(f"feeds: names must be unique, got {names}")
        return self


class ConfigError(ValueError):
    """A config that cannot run: every problem with its field, value and what is allowed."""


def _known_keys(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    from typing import get_args

    for part in loc[:-1]:
        if isinstance(part, int):  # an item of a list section (feeds.0.url)
            continue
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field is not None else None
        args = get_args(annotation)
        if args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
            annotation = args[0]
        if not isinstance(annotation, type) or not issubclass(annotation, BaseModel):
            return []
        model = annotation
    return sorted(model.model_fields)


def _describe(exc: ValidationError, where: str) -> ConfigError:
    lines = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        path = ".".join(str(p) for p in loc)
        if err["type"] == "extra_forbidden":
            lines.append(f"{path}: unknown key; known keys here: {_known_keys(RunConfig, loc)}")
        elif isinstance(err.get("input"), dict):  # a whole section is at fault: the message says why
            lines.append(f"{path}: {err['msg'].removeprefix('Value error, ')}")
        else:
            lines.append(f"{path}: {err['msg']} (got {err.get('input')!r})")
    return ConfigError(f"{where}: invalid config ({len(lines)} problem{'s' * (len(lines) != 1)}):\n"
                       + "\n".join(f"  - {line}" for line in lines))


def parse_overrides(items: list[str]) -> dict[str, Any]:
    """``["stages.quality.min_score=0.8"]`` -> nested dict; values are YAML (numbers, bools, lists)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. stages.quality.min_score=0.8")
        key, raw = item.split("=", 1)
        node = out
        parts = key.strip().split(".")
        for i, p in enumerate(parts[:-1]):
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {'.'.join(parts[:i + 1])} was set to a value, not a section")
        node[parts[-1]] = yaml.safe_load(raw)
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for k, v in over.items():
        merged[k] = _merge(merged[k], v) if isinstance(v, dict) and isinstance(merged.get(k), dict) else v
    return merged


def load_config(path: str | Path | None = None, overrides: list[str] | None = None,
                output: str | None = None) -> RunConfig:
    """Load a YAML config (or the defaults), apply ``--set`` overrides and ``--output``, validate."""
    where = str(path) if path else "<defaults>"
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError:
            raise ConfigError(f"{where}: no such config file") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{where}: not valid YAML ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: the top level must be a mapping of sections, got {type(data).__name__}")
    data = _merge(data, parse_overrides(overrides or []))
    if output:
        data = _merge(data, {"output": {"path": output}})
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise _describe(exc, where) from None
