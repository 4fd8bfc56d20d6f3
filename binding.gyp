{
  "targets": [
    {
      "target_name": "pg25",
      "sources": [
        "native/core/json.cc",
        "native/core/config.cc",
        "native/io/safetensors.cc",
        "native/io/weights.cc",
        "native/backend/tensor.cc",
        "native/backend/op_call.cc",
        "native/backend/profiling.cc",
        "native/cpu/threadpool.cc",
        "native/cpu/isa.cc",
        "native/cpu/half.cc",
        "native/cpu/gemm.cc",
        "native/cpu/conv_pack_bf16.cc",
        "native/cpu/gemm_kernels.cc",
        "native/cpu/cpu_buffer.cc",
        "native/cpu/vec_math.cc",
        "native/cpu/cpu_backend.cc",
        "native/models/params.cc",
        "native/models/blocks.cc",
        "native/models/clip.cc",
        "native/models/unet.cc",
        "native/models/vae.cc",
        "native/models/lora.cc",
        "native/models/registry.cc",
        "native/platform/file.cc",
        "native/platform/library.cc",
        "native/platform/memory.cc",
        "native/cuda/loader.cc",
        "native/cuda/runtime_info.cc",
        "native/binding/binding.cc",
        "native/binding/engine.cc",
        "native/binding/engine_tensors.cc",
        "native/addon.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++1y", "-std=gnu++17"],
      "cflags_cc": ["-std=c++17", "-O3", "-fexceptions"],
      "libraries": ["-ldl", "-lpthread"]
    }
  ]
}
