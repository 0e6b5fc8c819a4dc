"""Latent conditional diffusers pipelines (``model_index.json`` with ``vae``) -> a
:class:`LatentPipeline`: a latent :class:`~biaskit.Denoiser` whose network carries the conditions,
the VAE, and the text encoder(s). Four kinds (:func:`load_latent_pipeline`):

- Stable-Diffusion-like: ``unet`` UNet2DConditionModel, ``text_encoder`` CLIPTextModel,
  ``tokenizer``, a VP scheduler (eps or v prediction);
- SD3-like: ``transformer`` SD3Transformer2DModel, ``text_encoder`` / ``text_encoder_2`` CLIP
  with projection, ``text_encoder_3`` T5 or none, FlowMatchEulerDiscreteScheduler (the flow
  process, x = (1 - s) x0 + s eps, network fed s N);
- DiT-like: ``transformer`` DiTTransformer2DModel, class labels, learned sigma (2C outputs);
- Flux-like: ``transformer`` FluxTransformer2DModel, CLIP + T5 (:mod:`biaskit.loaders.flux`).

Every component is built from its ``config.json`` and its weights are read by
:mod:`biaskit.safeload` (no ``from_pretrained`` of networks, no remote code); the tokenizer is read
from its local files only. The latent of an image x in [-1, 1] is

    z = scaling_factor * (mean(q(z | x)) - shift_factor)

(the mean of the VAE's diagonal Gaussian, not a draw from it), and decode(z) = D(z /
scaling_factor + shift_factor), as diffusers' pipelines do (shift_factor 0 when the config has
none). Classifier-free guidance (Ho & Salimans 2022) is :mod:`biaskit.loaders.guidance`'s; the
null condition is the text encoders' embedding of the empty prompt (DiT: the class
``num_classes``), as diffusers' pipelines use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .. import safeload
from .build import file_source, read_json, resolve_schedule
from .diffusers import _state_dict
from .embeddings import Precomputed
from .guidance import ConditionedDenoiser, ConditionedProcessDenoiser, GuidedNet
from .flux import FLUX_GUIDANCE, FLUX_T5_TOKENS, FluxNet
from .text_encoders import flux_embeddings, load_text_encoder as _text_encoder, sd3_embeddings

__all__ = ["LatentPipeline", "GuidedNet", "ConditionedDenoiser", "is_latent_pipeline",
           "load_latent_pipeline", "LATENT_MEAN"]

LATENT_MEAN = "mean of the VAE's posterior q(z | x), (mean - shift_factor) * scaling_factor"
_UNETS = ("UNet2DConditionModel",)
_CLASS_TRANSFORMERS = ("DiTTransformer2DModel",)
_SD3 = ("SD3Transformer2DModel",)
_FLUX = ("FluxTransformer2DModel",)


def is_latent_pipeline(path) -> bool:
    """Whether ``path`` is a diffusers pipeline folder with a VAE (``model_index.json`` has ``vae``)."""
    index = Path(str(path)).expanduser() / "model_index.json"
    return index.is_file() and "vae" in read_json(index)


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
    null_condition: object = ""  # the empty prompt, or a Precomputed key (biaskit.loaders.embeddings)

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
        size = getattr(self.net.unet, "sample_size", None) or self.net.unet.config.sample_size
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
    def embed(self, prompts: list[str]) -> tuple:
        """The text conditions of ``prompts``, one tensor (P, ...) per keyword of the network, each
        distinct prompt encoded once (and kept for later calls), as diffusers' pipelines compute
        them: SD, the last hidden state of the text encoder on the padded token ids; SD3,
        (prompt_embeds (P, L, D), pooled_projections (P, D')) by :func:`sd3_embeddings`."""
        new = sorted({p for p in prompts if p not in self._embeddings and isinstance(p, str)})
        if new:
            if isinstance(self.net.unet, FluxNet):
                parts = flux_embeddings(self.tokenizer, self.text_encoder, new, FLUX_T5_TOKENS, self.device)
            elif isinstance(self.text_encoder, (list, tuple)):
                parts = sd3_embeddings(self.tokenizer, self.text_encoder, new, self.net.unet.config,
                                       self.device)
            else:
                tok = self.tokenizer(new, padding="max_length", max_length=self.tokenizer.model_max_length,
                                     truncation=True, return_tensors="pt")
                mask = tok.attention_mask.to(self.device) if getattr(
                    self.text_encoder.config, "use_attention_mask", False) else None
                parts = (self.text_encoder(tok.input_ids.to(self.device), attention_mask=mask)[0],)
            self._embeddings.update({p: tuple(h[i].float() for h in parts) for i, p in enumerate(new)})
        return tuple(torch.stack([self._embeddings[p][j] for p in prompts])
                     for j in range(len(self._embeddings[prompts[0]])))

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
            conds = [p if isinstance(p, Precomputed) else str(p) for p in distinct]
            return self.embed(conds), self.embed([self.null_condition])  # tuples, one per keyword
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
        return (torch.tensor(labels),), (torch.tensor([K]),)

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
        net.set_conditions(tuple(c.to(self.device) for c in cond), tuple(u.to(self.device) for u in null),
                           torch.tensor([index[p] for p in prompts], device=self.device))
        net.scale = w
        return self

    def at_scale(self, guidance_scale: float) -> ConditionedDenoiser:
        """A denoiser sharing this one's network and conditions at another guidance scale
        (several scales compared on the same draws, :func:`biaskit.probe.compare`)."""
        d, net = self.denoiser, self.net
        w = float(guidance_scale)
        guided = GuidedNet(net.unet, net.cond, net.null, net.prompt_of, w, net.keywords, net.channels)
        return ConditionedDenoiser(guided, d.schedule, d.parameterization, data_range=d.data_range,
                                   channels=d.channels, name=f"w={w:g}", source=d.source,
                                   any_size=True)

    def describe(self) -> dict:
        """JSON-able identity and settings of the latent space (for metadata files)."""
        return {"folder": str(self.folder), "sha256": dict(self.sha256),
                "scaling_factor": self.scaling_factor, "shift_factor": self.shift_factor,
                "latent": LATENT_MEAN, "guidance_scale": self.net.scale,
                "null_condition": f"class {self.num_classes}" if self.class_conditional else
                "text embedding of the empty prompt" if self.null_condition == "" else
                str(self.null_condition),
                "scheduler": self.scheduler_config.get("_class_name"),
                "guidance_embed": getattr(self.net.unet, "guidance", None)}


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


def _kind(folder: Path, index: dict) -> str:
    """``sd`` (unet), ``sd3`` (SD3 transformer) or ``dit`` (class-conditional transformer)."""
    if "unet" in index:
        return "sd"
    if "transformer" in index:
        cls = read_json(folder / "transformer" / "config.json").get("_class_name")
        return "sd3" if cls in _SD3 else "flux" if cls in _FLUX else "dit"
    return "sd"


_NEEDS = {"sd": ("vae", "unet", "scheduler", "text_encoder", "tokenizer"),
          "sd3": ("vae", "transformer", "scheduler", "text_encoder", "tokenizer", "text_encoder_2",
                  "tokenizer_2"),
          "dit": ("vae", "transformer", "scheduler")}
_NEEDS["flux"] = _NEEDS["sd3"]


def _present(index: dict, name: str) -> bool:
    entry = index.get(name)
    return bool(entry) and not (isinstance(entry, list) and entry[0] is None)


def load_latent_pipeline(path, *, device="cpu", guidance_scale: float = 1.0,
                         guidance_embed: float | None = None) -> LatentPipeline:
    """A latent pipeline folder as a :class:`LatentPipeline` on ``device``, one of four kinds:
    Stable-Diffusion-like (``unet`` UNet2DConditionModel, ``text_encoder``, ``tokenizer``), SD3-like
    (``transformer`` SD3Transformer2DModel, two CLIP text encoders and a T5 or none, a flow-matching
    scheduler: the denoiser is a :class:`~biaskit.formulations.ProcessDenoiser` of the flow
    process, :mod:`biaskit.loaders.process_folders`), DiT-like (``transformer``
    DiTTransformer2DModel, class-conditional, learned sigma), Flux-like (``transformer``
    FluxTransformer2DModel, CLIP + T5, packed latents, :mod:`biaskit.loaders.flux`; its guidance
    embedding ``guidance_embed``, default 3.5). Conditioned on the empty prompt
    (DiT: class 0) until :meth:`LatentPipeline.condition` says otherwise. Parameterization and
    schedule from ``scheduler/scheduler_config.json``."""
    from .process_folders import ScaledSigma, is_process_scheduler_config
    folder = Path(path).expanduser()
    index = read_json(folder / "model_index.json")
    kind = _kind(folder, index)
    missing = [c for c in _NEEDS[kind] if not _present(index, c)]
    if missing:
        parts = sorted(k for k in index if not k.startswith("_") and _present(index, k))
        raise ValueError(f"{folder}: a {kind.upper()}-like latent pipeline needs "
                         f"{', '.join(_NEEDS[kind])}; it has {', '.join(parts)} (missing {', '.join(missing)})")
    vae, vae_files = _component(folder, "vae", ("AutoencoderKL",))
    if guidance_embed is not None and (kind != "flux" or not read_json(
            folder / "transformer" / "config.json").get("guidance_embeds")):
        raise ValueError(f"--guidance-embed applies to a guidance-distilled Flux (guidance_embeds); "
                         f"{folder} has none (classifier-free guidance is --guidance-scale)")
    if kind == "sd":
        unet, unet_files = _component(folder, "unet", _UNETS)
        encoder, tokenizer, text_files = _text_encoder(folder)
        keywords = ("encoder_hidden_states",)
    elif kind == "flux":  # T5 states and CLIP pooled; packed latents inside FluxNet
        transformer, unet_files = _component(folder, "transformer", _FLUX)
        unet = FluxNet(transformer, FLUX_GUIDANCE if guidance_embed is None else float(guidance_embed))
        e1, t1, f1 = _text_encoder(folder)
        e2, t2, f2 = _text_encoder(folder, name="text_encoder_2", tok_name="tokenizer_2")
        encoder, tokenizer, text_files = [e1, e2], [t1, t2], f1 + f2
        keywords = ("encoder_hidden_states", "pooled_projections")
    elif kind == "sd3":
        unet, unet_files = _component(folder, "transformer", _SD3)
        e1, t1, f1 = _text_encoder(folder)
        e2, t2, f2 = _text_encoder(folder, name="text_encoder_2", tok_name="tokenizer_2")
        encoder, tokenizer, text_files = [e1, e2], [t1, t2], f1 + f2
        if _present(index, "text_encoder_3"):  # T5 (SD3 / SD3.5); without it, zero T5 tokens
            e3, t3, f3 = _text_encoder(folder, name="text_encoder_3", tok_name="tokenizer_3")
            encoder, tokenizer, text_files = encoder + [e3], tokenizer + [t3], text_files + f3
        keywords = ("encoder_hidden_states", "pooled_projections")
    else:
        unet, unet_files = _component(folder, "transformer", _CLASS_TRANSFORMERS)
        encoder, tokenizer, text_files = None, None, []
        keywords = ("class_labels",)
    sched_cfg = read_json(folder / "scheduler" / "scheduler_config.json")
    files = unet_files + vae_files + text_files
    sha = {str(f.relative_to(folder)): safeload.file_sha256(f) for f in files}
    C = unet.config.in_channels // (4 if kind == "flux" else 1)
    size = unet.sample_size if kind == "flux" else unet.config.sample_size
    shape = (C, size, size) if isinstance(size, int) else (C, *size)
    source = file_source(folder, "diffusers", shape=shape, sha256=sha,
                         extras=dict(latent=kind, scheduler=sched_cfg.get("_class_name")))
    empty = tuple(torch.zeros(1, 1, 1) for _ in keywords)
    net = GuidedNet(unet, empty, empty, torch.zeros(1, dtype=torch.long), keywords=keywords, channels=C)
    latent_range = (-float("inf"), float("inf"))
    if is_process_scheduler_config(sched_cfg):
        if sched_cfg["_class_name"] != "FlowMatchEulerDiscreteScheduler":
            raise ValueError(f"{folder}: scheduler {sched_cfg['_class_name']}; latent pipelines take "
                             "VP (DDPM-family) schedulers or FlowMatchEulerDiscreteScheduler")
        from ..processes import Flow
        N = int(sched_cfg.get("num_train_timesteps", 1000))
        den = ConditionedProcessDenoiser(net, Flow.from_scheduler_config(sched_cfg), "flow",
                                         time_input=ScaledSigma(N),
                                         data_range=latent_range, channels=C, name=folder.name,
                                         source=source, any_size=True)
    else:
        schedule, _ = resolve_schedule(scheduler_config=sched_cfg)
        den = ConditionedDenoiser(net, schedule, sched_cfg.get("prediction_type", "epsilon"),
                                  data_range=latent_range, channels=C, name=folder.name, source=source,
                                  any_size=kind != "dit")
    cfg = vae.config
    if isinstance(encoder, list):
        encoder = [e.to(device) for e in encoder]
    elif encoder is not None:
        encoder = encoder.to(device)
    pipe = LatentPipeline(den.to(device), vae.to(device), float(cfg.scaling_factor),
                          float(getattr(cfg, "shift_factor", None) or 0.0), tokenizer, encoder,
                          sched_cfg, folder, sha)
    return pipe.condition(["0" if kind == "dit" else ""], guidance_scale)
