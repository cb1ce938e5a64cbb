"""Serving-engine prediction: what vLLM / SGLang / TensorRT-LLM deliver for one layout and load (no torch).

    from accelcal.planner.serving.predict import predict_serving
    res = predict_serving(profile, "llama3-8b", engine="vllm", tp=1, concurrency=16, isl=1024, osl=128)
    print(res.ttft_mean_s, res.tpot_mean_s, res.output_tokens_per_s_per_device)

Modules, one job each: ``engine`` (presets as data), ``workload`` (closed/open-loop clients),
``metrics`` (TTFT/TPOT/ITL as the benchmark tools define them), ``kv`` (memory and KV capacity),
``step_cost`` (the one adapter onto the planner's DAG costing), ``simulate`` (step-level reference),
``steady`` (analytic steady state), ``predict`` (composition), ``search`` (layout x concurrency),
``cli`` (``accelcal predict``).
"""
