"""Built-in simulators used by the demo command, the tests and the benchmarks."""

from ttft_exporter.sim.flux import (
    FLUX_SIM,
    FluxPublishError,
    FluxSim,
    FluxSimConfig,
    create_flux_app,
    run_flux_sim,
)
from ttft_exporter.sim.llm import (
    DEFAULT_MODEL,
    LLM_SIM_STATE,
    LLMSimConfig,
    LLMSimState,
    ModelBehaviour,
    RecordedRequest,
    create_llm_app,
    run_llm_sim,
)

__all__ = [
    "DEFAULT_MODEL",
    "FLUX_SIM",
    "LLM_SIM_STATE",
    "FluxPublishError",
    "FluxSim",
    "FluxSimConfig",
    "LLMSimConfig",
    "LLMSimState",
    "ModelBehaviour",
    "RecordedRequest",
    "create_flux_app",
    "create_llm_app",
    "run_flux_sim",
    "run_llm_sim",
]
