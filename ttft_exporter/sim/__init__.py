"""Built-in simulators used by the demo command, the tests and the benchmarks."""

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
    "LLM_SIM_STATE",
    "LLMSimConfig",
    "LLMSimState",
    "ModelBehaviour",
    "RecordedRequest",
    "create_llm_app",
    "run_llm_sim",
]
