"""Generation engines behind one protocol (`base.Generator`): transformers (`hf`), vLLM in-process
(`vllm_engine`, its batch planning `vllm_plan`, data-parallel replicas `vllm_data_parallel`) and any
OpenAI-compatible server (`openai_engine`)."""
