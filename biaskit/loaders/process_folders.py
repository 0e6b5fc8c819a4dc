"""diffusers folders whose scheduler is a flow-matching or EDM scheduler: the network read as a
:class:`~biaskit.formulations.ProcessDenoiser` of the process the scheduler describes.

What diffusers feeds such a model (and so what it was trained on), from the scheduler config:

- ``FlowMatchEulerDiscreteScheduler`` / ``FlowMatchHeunDiscreteScheduler``: x = (1 - s) x0 + s eps,
  the network predicts the velocity u = eps - x0 and is called at timestep s * num_train_timesteps
  (the scheduler's ``timesteps`` are its sigmas s times N). Process: :class:`~biaskit.processes.Flow`
  with the config's ``shift`` (only the sampling grid depends on it: the network's time input is
  s * N whatever the shift); ``use_dynamic_shifting`` (a resolution-dependent shift) is recorded,
  and the process keeps shift 1 then.
- ``EDMEulerScheduler`` / ``EDMDPMSolverMultistepScheduler``: x = x0 + sigma eps, the network F
  is called on c_in x at timestep c_noise = ln(sigma) / 4 and D = c_skip x + c_out F (Karras et al.
  2022, Table 1) with the config's sigma_data; under ``prediction_type="v_prediction"`` diffusers
  uses -c_out, i.e. the network outputs -F (read with ``target_sign=-1``). Process: :class:`~biaskit.processes.VE` with the
  config's sigma_min, sigma_max, rho; target ``edm``, time input ``c_noise``.
"""

from __future__ import annotations

from torch import nn

from .build import model_under

__all__ = ["FLOW_SCHEDULERS", "EDM_SCHEDULERS", "is_process_scheduler_config", "process_denoiser"]

FLOW_SCHEDULERS = ("FlowMatchEulerDiscreteScheduler", "FlowMatchHeunDiscreteScheduler")
EDM_SCHEDULERS = ("EDMEulerScheduler", "EDMDPMSolverMultistepScheduler")


def is_process_scheduler_config(cfg: dict) -> bool:
    return cfg.get("_class_name") in FLOW_SCHEDULERS + EDM_SCHEDULERS


class ScaledSigma:
    """Time input sigma(t) * scale: what diffusers feeds a flow-matching model (s * N)."""

    def __init__(self, scale: float):
        self.scale = float(scale)
        self.__name__ = f"sigma*{self.scale:g}"

    def __call__(self, process, t):
        return process.sigma(t) * self.scale


# the process is the scheduler config's (Process.from_scheduler_config, the inverse of its
# scheduler_defaults); how the network is read (target, time input, sign) is diffusers' own
# convention for the scheduler family, not the process's (VE's own default target is x0)
def _flow(cfg: dict, o):
    from ..processes import Flow
    time_input = o.time_input or ScaledSigma(int(cfg.get("num_train_timesteps", 1000)))
    return Flow.from_scheduler_config(cfg), o.parameterization or "flow", time_input, {}


def _edm(cfg: dict, o):
    from ..processes import VE
    kind = cfg.get("prediction_type", "epsilon")
    if kind not in ("epsilon", "v_prediction"):
        raise ValueError(f"{cfg['_class_name']} with prediction_type={kind!r}: diffusers' EDM "
                         "preconditioning defines epsilon and v_prediction only")
    return VE.from_scheduler_config(cfg), o.parameterization or "edm", o.time_input or "c_noise", \
        {"sigma_data": float(cfg.get("sigma_data", 0.5)),
         "target_sign": -1 if kind == "v_prediction" else 1}


def process_denoiser(net: nn.Module, cfg: dict, o, source, channels: int, conditioning=None,
                      freeze: bool = True):
    """The folder's network under the process of scheduler config ``cfg`` (options ``o`` of the
    diffusers loader: parameterization and time_input override the defaults above), built by
    :func:`~biaskit.loaders.build.model_under` as every loader's."""
    cls = cfg["_class_name"]
    if o.trained_timesteps is not None:
        raise ValueError(f"trained_timesteps applies to discrete VP schedulers, not {cls}")
    process, target, time_input, extra = (_flow if cls in FLOW_SCHEDULERS else _edm)(cfg, o)
    source = source.with_extras(process=process.describe(), target=target,
                                dynamic_shifting=bool(cfg.get("use_dynamic_shifting", False)))
    return model_under(process, net, target, time_input=time_input, time_scale=o.time_scale,
                       data_range=o.data_range, channels=channels, source=source, any_size=True,
                       freeze=freeze, conditioning=conditioning, **extra)
