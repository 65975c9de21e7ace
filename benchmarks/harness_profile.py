"""Where the in-process harness spends time beyond bare vLLM: the harness's call path (`VLLMGenerator.run_batches`:
its plan, per-request params, step loop, thread control, Sample records) against bare `LLM.generate` on the SAME
in-process engine, alternating, each under cProfile with a CPU-time clock. Same engine, same thread count
(`THREADS`, default 2): what differs is only the code around vLLM, which is what the harness can fix.

    TBRM_DATA_DIR=../shared/data python benchmarks/harness_profile.py 16 64 2    # problems, new tokens, rounds

Prints per round: tokens, tokens per wall second and per CPU second, threads, load; then each side's top functions
by own CPU time. On a shared machine wall time is noise; the CPU-time profile says where the work goes.
(`benchmarks/engines.py --parts harness` measures the whole `tbrm eval` process against a bare vLLM process.)
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import sys
import time


def main(argv: list[str]) -> None:
    from evals.benchmarks import load_benchmark
    from evals.engines.base import SamplingParams
    from evals.engines.vllm_engine import VLLMGenerator, VLLMSettings
    from evals.models import load_tokenizer, resolve_model
    from evals.prompts import render_prompt

    n, new_tokens, rounds = (int(x) for x in argv[:3])
    path = resolve_model("smollm2-135m-instruct")
    tok = load_tokenizer(path)
    prompts = [render_prompt(p.problem, "qwen-math", tok) for p in load_benchmark("math500", limit=n)]
    gen = VLLMGenerator(path, tok, VLLMSettings(dtype="float32", kv_cache_gb=1.0, logprobs=False,
                                                threads=int(os.environ.get("THREADS", "2"))), batch_size=256)
    params = SamplingParams(n=1, temperature=0.0, max_new_tokens=new_tokens)
    from vllm import SamplingParams as VLLMParams  # after the engine set vLLM's environment

    def harness():
        samples = [s for _, batch in gen.run_batches(prompts, list(enumerate(gen.plan(prompts, params))), params)
                   for s in batch]
        return sum(s.num_tokens for s in samples), [s.text for s in sorted(samples, key=lambda s: s.prompt_index)]

    def bare():
        outs = gen.llm.generate(prompts, VLLMParams(temperature=0.0, max_tokens=new_tokens), use_tqdm=False)
        return sum(len(o.outputs[0].token_ids) for o in outs), [o.outputs[0].text for o in outs]

    harness(), bare()  # warm-up
    texts = {}
    for r in range(rounds):
        for name, run in (("bare", bare), ("harness", harness)) if r % 2 == 0 else (("harness", harness), ("bare", bare)):
            prof = cProfile.Profile(time.process_time)
            w0, c0 = time.perf_counter(), time.process_time()
            prof.enable()
            tokens, texts[name] = run()
            prof.disable()
            wall, cpu = time.perf_counter() - w0, time.process_time() - c0
            print(f"round {r} {name}: {tokens} tok, {tokens / wall:.1f} tok/s wall, {tokens / cpu:.1f} tok/cpu-s, "
                  f"threads {gen.last_threads}, load {os.getloadavg()[0]:.1f}", flush=True)
            out = io.StringIO()
            pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(30)
            print(f"== {name} profile\n{out.getvalue()}", flush=True)
    print("identical texts", sum(a == b for a, b in zip(texts["harness"], texts["bare"])), "/", len(prompts))


if __name__ == "__main__":
    main(sys.argv[1:])
