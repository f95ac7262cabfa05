"""Hardware profiling of candidate networks: ONNX export, latency, energy, resumable campaigns.

The only package of the project that imports onnx, onnxruntime or pynvml. Modules: ``export`` (ONNX bytes),
``latency`` (device configs, runtimes, timing), ``energy`` (NVML / RAPL), ``config`` (campaign config, cheap
to import), ``campaign`` (architectures x device configs -> resumable table, ``read_table``).
"""
