"""Latent, text-conditioned diffusers pipelines (Stable-Diffusion-like: ``model_index.json`` with
``vae``, ``unet`` = UNet2DConditionModel, ``text_encoder`` = CLIPTextModel, ``tokenizer``,
``scheduler``) -> a :class:`LatentPipeline`: a latent :class:`~biaskit.Denoiser` whose network
carries the conditions, the VAE, and the text encoder.

Every component is built from its ``config.json`` and its weights are read by
:mod:`biaskit.safeload` (no ``from_pretrained`` of networks, no remote code); the tokenizer is read
from its local files only. The latent of an image x in [-1, 1] is

    z = scaling_factor * (mean(q(z | x)) - shift_factor)

(the mean of the VAE's diagonal Gaussian, not a draw from it), and decode(z) = D(z /
scaling_factor + shift_factor), as diffusers' pipelines do (shift_factor 0 when the config has
none). Classifier-free guidance (Ho & Salimans 2022) at scale w:

    out_w = out(x, null) + w (out(x, c) - out(x, null)),

computed as exactly out(x, c) at w = 1 and out(x, null) at w = 0 (one forward); the null
condition is the text encoder's embedding of the empty prompt, as diffusers' pipelines use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .. import safeload
from ..denoiser import Denoiser
from .build import file_source, read_json, resolve_schedule
from .diffusers import _state_dict

__all__ = ["LatentPipeline", "GuidedNet", "ConditionedDenoiser", "is_latent_pipeline",
           "load_latent_pipeline", "LATENT_MEAN"]

LATENT_MEAN = "mean of the VAE's posterior q(z | x), (mean - shift_factor) * scaling_factor"
_UNETS = ("UNet2DConditionModel",)
_CLASS_TRANSFORMERS = ("DiTTransformer2DModel",)


def is_latent_pipeline(path) -> bool:
    """Whether ``path`` is a diffusers pipeline folder with a VAE (``model_index.json`` has ``vae``)."""
    index = Path(str(path)).expanduser() / "model_index.json"
    return index.is_file() and "vae" in read_json(index)


class GuidedNet(nn.Module):
    """A conditional network (UNet2DConditionModel, DiTTransformer2DModel) called as
    ``net(x, t, rows=None)``: row i of the batch is conditioned on ``cond[prompt_of[rows[i]]]``
    (rows default 0..B-1), mixed with the null condition at guidance scale ``scale`` (module
    docstring). ``cond``: (P, ...) the distinct conditions (text embeddings (P, L, D) or class
    labels (P,)), passed as keyword ``keyword``; ``null``: (1, ...). With a learned variance (2C
    outputs for C channels) only the mean half is guided and the variance is the conditional one,
    as diffusers' DiT pipeline does."""

    def __init__(self, unet: nn.Module, cond: torch.Tensor, null: torch.Tensor,
                 prompt_of: torch.Tensor, scale: float = 1.0, keyword: str = "encoder_hidden_states",
                 channels: int | None = None):
        super().__init__()
        self.unet, self.scale, self.keyword, self.channels = unet, float(scale), keyword, channels
        self.register_buffer("cond", cond, persistent=False)
        self.register_buffer("null", null, persistent=False)
        self.register_buffer("prompt_of", prompt_of.long(), persistent=False)

    def _out(self, x, t, c):
        t = t.expand(x.shape[0]) if t.ndim == 0 else t
        return self.unet(x, timestep=t, **{self.keyword: c}).sample

    def forward(self, x, t, rows=None):
        B = x.shape[0]
        rows = torch.arange(B, device=x.device) if rows is None else rows.to(x.device)
        null = self.null.expand(B, *self.null.shape[1:])
        if self.scale == 0:
            return self._out(x, t, null)
        c = self.cond[self.prompt_of[rows]]
        if self.scale == 1:
            return self._out(x, t, c)
        t2 = t.expand(B) if t.ndim == 0 else t
        u, c = self._out(torch.cat([x, x]), torch.cat([t2, t2]), torch.cat([null, c])).chunk(2)
        C = self.channels or x.shape[1]
        guided = u[:, :C] + self.scale * (c[:, :C] - u[:, :C])
        return torch.cat([guided, c[:, C:]], 1) if c.shape[1] > C else guided


class ConditionedDenoiser(Denoiser):
    """A latent Denoiser whose network takes per-sample conditions: ``rows`` (B,) name each
    sample's row of the condition table (the probe passes its sample indices; None: 0..B-1)."""

    takes_rows = True

    def forward(self, x_t, t, rows=None):
        saved = self.net_kwargs
        self.net_kwargs = {**saved, "rows": rows}
        try:
            return super().forward(x_t, t)
        finally:
            self.net_kwargs = saved


@dataclass
class LatentPipeline:
    """A latent pipeline: ``denoiser`` (on latents, its ``net`` a :class:`GuidedNet`), the ``vae``
    (AutoencoderKL), ``scaling_factor`` / ``shift_factor``, the ``tokenizer`` and ``text_encoder``,
    the scheduler config, and identity (folder, sha256 of every weights file)."""

    denoiser: ConditionedDenoiser
    vae: nn.Module
    scaling_factor: float
    shift_factor: float
    tokenizer: object
    text_encoder: nn.Module
    scheduler_config: dict
    folder: Path
    sha256: dict = field(default_factory=dict)
    _embeddings: dict = field(default_factory=dict, repr=False)

    @property
    def net(self) -> GuidedNet:
        return self.denoiser.net

    @property
    def device(self) -> torch.device:
        return self.denoiser.device

    @property
    def vae_scale(self) -> int:
        """Pixels per latent pixel: 2^(number of VAE blocks - 1)."""
        return 2 ** (len(self.vae.config.block_out_channels) - 1)

    @property
    def image_size(self) -> int:
        """The pipeline's default image side: the UNet's sample_size times :attr:`vae_scale`."""
        size = self.net.unet.config.sample_size
        return int(size if isinstance(size, int) else size[0]) * self.vae_scale

    @torch.no_grad()
    def encode(self, x: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
        """Images (N, 3, H, W) in [-1, 1] -> latents (N, c, H/s, W/s): the posterior mean, shifted
        and scaled (module docstring)."""
        out = []
        for i in range(0, x.shape[0], batch_size):
            xb = x[i:i + batch_size].to(self.device, next(self.vae.parameters()).dtype)
            mean = self.vae.encode(xb).latent_dist.mean
            out.append(((mean - self.shift_factor) * self.scaling_factor).float().cpu())
        return torch.cat(out)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, batch_size: int = 8) -> torch.Tensor:
        """Latents (N, c, h, w) -> images (N, 3, h s, w s) in the VAE's range (about [-1, 1])."""
        out = []
        for i in range(0, z.shape[0], batch_size):
            zb = z[i:i + batch_size].to(self.device, next(self.vae.parameters()).dtype)
            out.append(self.vae.decode(zb / self.scaling_factor + self.shift_factor).sample.float())
        return torch.cat(out).to(z.device)

    @torch.no_grad()
    def embed(self, prompts: list[str]) -> torch.Tensor:
        """(P, L, D) text embeddings of ``prompts``, each distinct prompt encoded once (and kept for
        later calls): the last hidden state of the text encoder on the padded token ids, as
        diffusers' Stable Diffusion pipelines compute prompt_embeds."""
        new = sorted({p for p in prompts if p not in self._embeddings})
        if new:
            tok = self.tokenizer(new, padding="max_length", max_length=self.tokenizer.model_max_length,
                                 truncation=True, return_tensors="pt")
            mask = tok.attention_mask.to(self.device) if getattr(
                self.text_encoder.config, "use_attention_mask", False) else None
            h = self.text_encoder(tok.input_ids.to(self.device), attention_mask=mask)[0]
            self._embeddings.update({p: h[i].float() for i, p in enumerate(new)})
        return torch.stack([self._embeddings[p] for p in prompts])

    @property
    def class_conditional(self) -> bool:
        """A class-conditional pipeline (DiT): conditions are labels 0..num_classes-1, no text."""
        return self.text_encoder is None

    @property
    def num_classes(self) -> int | None:
        """Classes of a class-conditional network; its null class is this number (DiT's 1000)."""
        return self.net.unet.config.num_embeds_ada_norm if self.class_conditional else None

    def _conditions(self, distinct: list) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.class_conditional:
            return self.embed([str(p) for p in distinct]), self.embed([""])
        K = self.num_classes
        labels = []
        for c in distinct:
            try:
                label = int(c)
            except (TypeError, ValueError):
                label = -1
            if not 0 <= label < K or str(c).strip() != str(label):
                raise ValueError(f"class label {c!r} of a class-conditional pipeline must be an "
                                 f"integer in 0..{K - 1}")
            labels.append(label)
        return torch.tensor(labels), torch.tensor([K])

    def condition(self, prompts: list, guidance_scale: float = 1.0) -> "LatentPipeline":
        """Condition row i on ``prompts[i]`` (a text, or a class label for a class-conditional
        pipeline) at ``guidance_scale`` (text embedded once per distinct prompt); returns self."""
        w = float(guidance_scale)
        if not w == w or w < 0:
            raise ValueError(f"--guidance-scale must be >= 0 (1: conditional, 0: unconditional), got {w}")
        distinct = list(dict.fromkeys(prompts))
        index = {p: i for i, p in enumerate(distinct)}
        cond, null = self._conditions(distinct)
        net = self.net
        net.cond, net.null = cond.to(self.device), null.to(self.device)
        net.prompt_of = torch.tensor([index[p] for p in prompts], device=self.device)
        net.scale = w
        return self

    def at_scale(self, guidance_scale: float) -> ConditionedDenoiser:
        """A denoiser sharing this one's network and conditions at another guidance scale
        (several scales compared on the same draws, :func:`biaskit.probe.compare`)."""
        d, net = self.denoiser, self.net
        w = float(guidance_scale)
        guided = GuidedNet(net.unet, net.cond, net.null, net.prompt_of, w, net.keyword, net.channels)
        return ConditionedDenoiser(guided, d.schedule, d.parameterization, data_range=d.data_range,
                                   channels=d.channels, name=f"w={w:g}", source=d.source,
                                   any_size=True)

    def describe(self) -> dict:
        """JSON-able identity and settings of the latent space (for metadata files)."""
        return {"folder": str(self.folder), "sha256": dict(self.sha256),
                "scaling_factor": self.scaling_factor, "shift_factor": self.shift_factor,
                "latent": LATENT_MEAN, "guidance_scale": self.net.scale,
                "null_condition": f"class {self.num_classes}" if self.class_conditional else
                "text embedding of the empty prompt",
                "scheduler": self.scheduler_config.get("_class_name")}


def _component(folder: Path, name: str, cls_names, variant=None, map_location="cpu"):
    """(module built from folder/name/config.json, its weights files) for a diffusers component."""
    import diffusers
    config = read_json(folder / name / "config.json")
    cls = config.get("_class_name")
    if cls not in cls_names:
        raise ValueError(f"{folder / name} holds a {cls!r}; biaskit loads {' or '.join(cls_names)} there")
    module = getattr(diffusers, cls).from_config(config)
    sd, files = _state_dict(folder / name, variant, map_location)
    safeload.load_into(module, sd, what=f"weights in {files[0].name}")
    return module.eval().requires_grad_(False), files


def _text_encoder(folder: Path, map_location="cpu"):
    try:
        import transformers
    except ImportError:
        raise ValueError(f"{folder} has a text encoder: install transformers (pip install "
                         "'biaskit[latent]')") from None
    config = read_json(folder / "text_encoder" / "config.json")
    arch = (config.get("architectures") or ["CLIPTextModel"])[0]
    if arch not in ("CLIPTextModel", "CLIPTextModelWithProjection"):
        raise ValueError(f"{folder / 'text_encoder'} holds a {arch!r}; biaskit loads CLIPTextModel text encoders")
    model = getattr(transformers, arch)(transformers.CLIPTextConfig(**{
        k: v for k, v in config.items() if k not in ("architectures", "transformers_version")}))
    weights = [folder / "text_encoder" / n for n in ("model.safetensors", "pytorch_model.bin")]
    found = [w for w in weights if w.is_file()]
    if not found:
        raise FileNotFoundError(f"no text encoder weights in {folder / 'text_encoder'}: expected "
                                f"{' or '.join(w.name for w in weights)}")
    sd = safeload.read_state_dict(found[0], map_location)
    sd = {k: v for k, v in sd.items() if not k.endswith("position_ids")}
    safeload.load_into(model, sd, strict=False, what=f"weights in {found[0].name}")
    tokenizer = transformers.CLIPTokenizer.from_pretrained(str(folder / "tokenizer"), local_files_only=True)
    return model.eval().requires_grad_(False), tokenizer, found


def load_latent_pipeline(path, *, device="cpu", guidance_scale: float = 1.0) -> LatentPipeline:
    """A latent pipeline folder as a :class:`LatentPipeline` on ``device``: Stable-Diffusion-like
    (``unet`` UNet2DConditionModel, ``text_encoder``, ``tokenizer``), conditioned on the empty
    prompt, or DiT-like (``transformer`` DiTTransformer2DModel, class-conditional, learned sigma),
    conditioned on class 0, until :meth:`LatentPipeline.condition` says otherwise.
    Parameterization and schedule from ``scheduler/scheduler_config.json``."""
    folder = Path(path).expanduser()
    index = read_json(folder / "model_index.json")
    text = "unet" in index
    need = ("vae", "unet", "scheduler", "text_encoder", "tokenizer") if text else \
        ("vae", "transformer", "scheduler")
    missing = [c for c in need if c not in index]
    if missing:
        parts = sorted(k for k in index if not k.startswith("_"))
        raise ValueError(f"{folder}: a latent pipeline needs {', '.join(need)} (Stable-Diffusion-like) "
                         "or vae, transformer, scheduler (DiT-like); it has "
                         f"{', '.join(parts)} (missing {', '.join(missing)})")
    vae, vae_files = _component(folder, "vae", ("AutoencoderKL",))
    if text:
        unet, unet_files = _component(folder, "unet", _UNETS)
        encoder, tokenizer, text_files = _text_encoder(folder)
    else:
        unet, unet_files = _component(folder, "transformer", _CLASS_TRANSFORMERS)
        encoder, tokenizer, text_files = None, None, []
    sched_cfg = read_json(folder / "scheduler" / "scheduler_config.json")
    schedule, _ = resolve_schedule(scheduler_config=sched_cfg)
    files = unet_files + vae_files + text_files
    sha = {str(f.relative_to(folder)): safeload.file_sha256(f) for f in files}
    C = unet.config.in_channels
    size = unet.config.sample_size
    shape = (C, size, size) if isinstance(size, int) else (C, *size)
    source = file_source(folder, "diffusers", shape=shape, sha256=sha,
                         extras=dict(latent=True, scheduler=sched_cfg.get("_class_name")))
    empty = torch.zeros(1, 1, 1)
    net = GuidedNet(unet, empty, empty, torch.zeros(1, dtype=torch.long),
                    keyword="encoder_hidden_states" if text else "class_labels", channels=C)
    den = ConditionedDenoiser(net, schedule, sched_cfg.get("prediction_type", "epsilon"),
                              data_range=(-float("inf"), float("inf")), channels=C,
                              name=folder.name, source=source, any_size=text)
    cfg = vae.config
    pipe = LatentPipeline(den.to(device), vae.to(device), float(cfg.scaling_factor),
                          float(getattr(cfg, "shift_factor", None) or 0.0), tokenizer,
                          encoder.to(device) if encoder is not None else None, sched_cfg, folder, sha)
    return pipe.condition(["" if text else "0"], guidance_scale)
