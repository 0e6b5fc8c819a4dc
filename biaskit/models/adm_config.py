"""ADM UNet constructor arguments from what a checkpoint and its training flags say:
:func:`infer_adm_config` reads them off a state dict's key names and shapes, :func:`flags_to_config`
applies guided-diffusion's script flags (:data:`GUIDED_DIFFUSION_FLAGS`) on top."""

from __future__ import annotations

__all__ = ["infer_adm_config", "flags_to_config", "NOT_IN_STATE_DICT", "GUIDED_DIFFUSION_FLAGS",
           "DEFAULT_CHANNEL_MULT"]

# constructor arguments a state dict says nothing about (no parameter depends on them)
NOT_IN_STATE_DICT = ("image_size", "num_heads", "num_head_channels", "num_heads_upsample",
                     "use_new_attention_order", "dropout")


def _layers(state_dict: dict, prefix: str) -> dict[int, set[str]]:
    """{block index: names of the parameters under ``prefix.index.``}."""
    out: dict[int, set[str]] = {}
    for k in state_dict:
        if k.startswith(prefix + "."):
            idx, _, rest = k[len(prefix) + 1:].partition(".")
            if idx.isdigit():
                out.setdefault(int(idx), set()).add(rest)
    return out


def _has(names: set[str], start: str) -> bool:
    return any(n.startswith(start) for n in names)


def _whole(m):
    """A channel multiplier as an int when whole (1, 2, 2.5)."""
    m = float(m)
    return int(m) if m.is_integer() else m


def infer_adm_config(state_dict: dict) -> dict:
    """ADMUNet constructor arguments read off an ADM state dict's key names and shapes.

    Identifiable: in_channels, model_channels, num_res_blocks, channel_mult, attention_resolutions
    (as downsampling factors ds), learn_sigma / out_channels, num_classes (class_cond),
    use_scale_shift_norm, resblock_updown, conv_resample. Not identifiable (no weight depends on
    them; see :data:`NOT_IN_STATE_DICT`), returned at guided-diffusion's UNetModel defaults and to
    be overridden when known: image_size (None), num_heads (1), num_head_channels (-1),
    num_heads_upsample (-1), use_new_attention_order (False), dropout (0). With one level only,
    resblock_updown and conv_resample are unidentifiable too (False / True returned).
    """
    sd = state_dict
    for key in ("input_blocks.0.0.weight", "time_embed.0.weight", "out.2.weight"):
        if key not in sd:
            raise ValueError(f"not an ADM (guided-diffusion) state dict: key {key!r} is missing")
    in_channels, mc = sd["input_blocks.0.0.weight"].shape[1], sd["time_embed.0.weight"].shape[1]
    out_channels = sd["out.2.weight"].shape[0]
    inp, outp = _layers(sd, "input_blocks"), _layers(sd, "output_blocks")
    n_out = max(outp) + 1
    # the first output block holding a resampler (Upsample conv, or a second ResBlock) closes the
    # lowest level, which has num_res_blocks + 1 blocks
    up = [j for j, names in sorted(outp.items())
          if _has(names, "1.conv.") or _has(names, "2.conv.") or _has(names, "1.in_layers")
          or _has(names, "2.in_layers")]
    gaps = [i for i in range(1, max(inp) + 1) if i not in inp]  # parameter-free Downsample
    nrb = up[0] if up else (gaps[0] - 1 if gaps else n_out - 1)
    if nrb < 1 or n_out % (nrb + 1):
        raise ValueError(f"cannot read the ADM layout: {n_out} output blocks do not split into "
                         f"levels of {nrb} + 1 blocks")
    levels = n_out // (nrb + 1)
    first = [1 + level * (nrb + 1) for level in range(levels)]  # first ResBlock of each level
    channel_mult = [_whole(sd[f"input_blocks.{i}.0.in_layers.2.weight"].shape[0] / mc) for i in first]
    attention = sorted({2 ** level for level, i in enumerate(first) for r in range(nrb)
                        if _has(inp.get(i + r, set()), "1.qkv.")})
    width = sd["input_blocks.1.0.out_layers.3.weight"].shape[0]
    down = inp.get(nrb + 1, set()) if levels > 1 else set()
    updown = _has(down, "0.in_layers")
    return dict(
        in_channels=in_channels, model_channels=mc, num_res_blocks=nrb,
        attention_resolutions=attention, channel_mult=channel_mult,
        learn_sigma=out_channels == 2 * in_channels,
        num_classes=sd["label_emb.weight"].shape[0] if "label_emb.weight" in sd else None,
        num_heads=1, num_head_channels=-1, num_heads_upsample=-1,
        use_scale_shift_norm=sd["input_blocks.1.0.emb_layers.1.weight"].shape[0] == 2 * width,
        resblock_updown=updown, conv_resample=updown or levels == 1 or _has(down, "0.op."),
        use_new_attention_order=False, dropout=0.0, image_size=None, out_channels=out_channels)


def _csv(value, cast=int) -> list:
    if isinstance(value, str):
        return [cast(v) for v in value.replace(" ", "").split(",") if v]
    return [cast(v) for v in value]


# create_model's channel_mult for channel_mult="" by image size (guided-diffusion script_util;
# 32 from improved-diffusion's)
DEFAULT_CHANNEL_MULT = {512: [0.5, 1, 1, 2, 2, 4, 4], 256: [1, 1, 2, 2, 4, 4], 128: [1, 1, 2, 3, 4],
                        64: [1, 2, 3, 4], 32: [1, 2, 2, 2]}


def _default_channel_mult(config: dict, size) -> list:
    """guided-diffusion's channel_mult for ``channel_mult=""`` at this image size, checked against
    the weights' (``config``'s) multipliers."""
    if size not in DEFAULT_CHANNEL_MULT:
        raise ValueError(f'channel_mult "" derives the multipliers from the image size as '
                         f"guided-diffusion does, for sizes {sorted(DEFAULT_CHANNEL_MULT)}; image size "
                         f"{size} has none: give --channel-mult (the weights have "
                         f"{','.join(map(str, config.get('channel_mult', [])))})")
    mult = DEFAULT_CHANNEL_MULT[size]
    if config.get("channel_mult") and list(config["channel_mult"]) != mult:
        raise ValueError(f'channel_mult "" at image size {size} means {",".join(map(str, mult))} in '
                         f"guided-diffusion, but the weights have "
                         f"{','.join(map(str, config['channel_mult']))}: check --image-size")
    return mult


def flags_to_config(config: dict, flags: dict) -> dict:
    """Apply guided-diffusion script flags (their names and units) on top of a config.

    Flags: num_channels, num_res_blocks, channel_mult ("1,2,2,2"; "" derives it from image_size
    as guided-diffusion's create_model does), attention_resolutions
    (image resolutions "32,16,8", converted to ds = image_size // res, so image_size is needed),
    num_heads, num_head_channels, num_heads_upsample, learn_sigma, class_cond (1000 classes
    unless the config has a label embedding), use_scale_shift_norm, resblock_updown,
    use_new_attention_order, dropout, image_size. None values are ignored.
    """
    cfg = dict(config)
    flags = {k: v for k, v in flags.items() if v is not None}
    unknown = set(flags) - set(GUIDED_DIFFUSION_FLAGS)
    if unknown:
        raise ValueError(f"unknown ADM flag(s) {sorted(unknown)}; valid: {', '.join(GUIDED_DIFFUSION_FLAGS)}")
    rename = {"num_channels": "model_channels"}
    for k, v in flags.items():
        if k == "channel_mult":
            cfg[k] = _csv(v, _whole) if v != "" else _default_channel_mult(
                cfg, flags.get("image_size", cfg.get("image_size")))
        elif k == "attention_resolutions":
            continue
        elif k == "class_cond":
            cfg["num_classes"] = (cfg.get("num_classes") or 1000) if v else None
        elif k == "learn_sigma":
            cfg[k] = bool(v)
            cfg["out_channels"] = cfg["in_channels"] * (2 if v else 1)
        else:
            cfg[rename.get(k, k)] = v
    if "attention_resolutions" in flags:
        size = cfg.get("image_size")
        if not size:
            raise ValueError("--attention-resolutions lists image resolutions (e.g. 32,16,8); "
                             "give --image-size too so they can be turned into downsampling factors")
        cfg["attention_resolutions"] = sorted({size // r for r in _csv(flags["attention_resolutions"])})
    return cfg


GUIDED_DIFFUSION_FLAGS = ("num_channels", "num_res_blocks", "channel_mult", "attention_resolutions",
                          "num_heads", "num_head_channels", "num_heads_upsample", "learn_sigma",
                          "class_cond", "use_scale_shift_norm", "resblock_updown",
                          "use_new_attention_order", "dropout", "image_size")
