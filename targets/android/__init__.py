"""Android targets: `android-gpu` (TVM OpenCL: Adreno buffer/texture, Mali) and `android-cpu` (llvm
aarch64), compiled here, run on a phone over adb + TVM RPC, with on-device battery power sampling."""
