"""A process's facts are read from its class: each constructor keyword is a loader flag with no
loader edit (a keyword of a process defined here included), a diffusers scheduler config gives
back the process that made it (Process.from_scheduler_config, checked against diffusers' own
config), and a discrete config or run is its schedule's DiscreteVP, built by denoiser_under."""

import argparse
from types import SimpleNamespace

import pytest
import torch

import biaskit
from biaskit.config import get_preset
from biaskit.denoiser import Denoiser
from biaskit.formulations import denoiser_under
from biaskit.loaders.options import BY_NAME, add_loader_arguments, loader_kwargs_from_args
from biaskit.loaders.process_options import PROCESS_OPTIONS, process_kwargs
from biaskit.processes import EDM, PROCESSES, VE, DiscreteVP, Flow, VPCosine
from biaskit.schedules import get_schedule
from biaskit.train.process_objective import build_process


class Zero(torch.nn.Module):
    def forward(self, x, t):
        return torch.zeros_like(x)


class DampedVE(VE):
    """VE with two keywords biaskit's loaders have never seen."""

    key = "damped_ve"

    def __init__(self, sigma_min: float = 0.002, sigma_max: float = 80.0, rho: float = 7.0,
                 damping: float = 0.5, clipped: bool = False):
        super().__init__(sigma_min, sigma_max, rho)
        self.damping, self.clipped = damping, clipped


def test_every_keyword_of_every_named_process_is_a_loader_option():
    for name, cls in PROCESSES.items():
        for key in cls.keys():
            options = [k for k, (kw, _) in PROCESS_OPTIONS.items() if kw == key]
            assert options and all(k in BY_NAME for k in options), (name, key)


def test_rho_is_a_flag_and_sets_ves_karras_exponent():
    parser = argparse.ArgumentParser()
    add_loader_arguments(parser)
    kw = loader_kwargs_from_args(parser.parse_args(["--process", "ve", "--rho", "3",
                                                    "--sigma-min", "0.01", "--sigma-max", "8"]))
    assert kw == {"process": "ve", "rho": 3.0, "sigma_min": 0.01, "sigma_max": 8.0}
    den = biaskit.load(Zero(), **kw)
    # Karras et al. 2022, Eq. 5 at rho 3 on [0.01, 8], 4 steps, then 0
    a, b = 8 ** (1 / 3), 0.01 ** (1 / 3)
    want = [(a + i / 3 * (b - a)) ** 3 for i in range(4)] + [0.0]
    assert den.process.grid(4).tolist() == pytest.approx(want, rel=1e-12)
    with pytest.raises(ValueError, match=r"--rho do\(es\) not apply to --process flow; it takes "
                                         r"--flow-shift, --flow-time, --t-min, --t-max$"):
        biaskit.load(Zero(), process="flow", rho=3.0)


def test_the_old_flags_keep_their_names_and_help():
    assert biaskit.load(Zero(), process="vp_cosine", cosine_s=0.008).process.s == 0.008
    assert biaskit.load(Zero(), process="flow", flow_time="reversed").process.reverse is True
    assert BY_NAME["sigma_min"].help.startswith("with --process ve / edm / vesde: the smallest sigma")
    assert "shift" not in BY_NAME and "reverse" not in BY_NAME and "s" not in BY_NAME


def test_a_new_process_keyword_is_a_flag_without_a_loader_edit():
    from biaskit.loaders.options import process_keyword_flags
    processes = {**PROCESSES, DampedVE.key: DampedVE}
    flags = {o.name: o for o in process_keyword_flags(processes)}
    assert flags["damping"].help == "with --process damped_ve: the process's damping (default 0.5)"
    assert flags["damping"].type is float and flags["clipped"].kind == "bool"
    assert flags["clipped"].check("--clipped", "yes") is True
    assert "with --process ve / edm / damped_ve: the process's rho (default 7)" == flags["rho"].help
    o = SimpleNamespace(process="damped_ve", damping=0.25, rho=3.0)
    assert process_kwargs(o, processes) == {"rho": 3.0, "damping": 0.25}
    with pytest.raises(ValueError, match=r"--damping do\(es\) not apply to --process ve; it takes "
                                         r"--sigma-min, --sigma-max, --rho$"):
        process_kwargs(SimpleNamespace(process="ve", damping=0.25), processes)


def test_a_scheduler_config_gives_back_its_process():
    diffusers = pytest.importorskip("diffusers")
    flow = diffusers.FlowMatchEulerDiscreteScheduler(**Flow(shift=3.0).scheduler_defaults())
    assert Flow.from_scheduler_config(dict(flow.config)).shift == 3.0
    assert Flow.from_scheduler_config({"shift": 3.0, "use_dynamic_shifting": True}).shift == 1.0
    ve = VE(0.01, 50.0, 5.0)
    edm = diffusers.EDMEulerScheduler(**ve.scheduler_defaults(sigma_data=0.7))
    back = EDM.from_scheduler_config(dict(edm.config))
    assert type(back) is EDM and (back.t_min, back.t_max, back.rho) == pytest.approx((0.01, 50.0, 5.0))
    assert VE.from_scheduler_config({}).describe() == VE().describe()  # diffusers' defaults are VE's
    with pytest.raises(ValueError, match="process 'vp_cosine' has no diffusers scheduler"):
        VPCosine.from_scheduler_config({"_class_name": "EDMEulerScheduler"})


def test_a_discrete_config_and_view_are_its_schedules():
    cfg = get_preset("gmm-debias")
    process = build_process(cfg)
    assert isinstance(process, DiscreteVP)
    assert process.schedule.same_as(get_schedule(cfg.schedule.name, cfg.schedule.T))
    schedule = get_schedule("linear", 50)
    den = denoiser_under(DiscreteVP(schedule), Zero(), "eps", view=schedule)
    assert type(den) is Denoiser and den.schedule is schedule
    with pytest.raises(ValueError, match="is read on that schedule; view= applies to a continuous"):
        denoiser_under(DiscreteVP(schedule), Zero(), view=get_schedule("cosine", 50))
