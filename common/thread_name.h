// SetThreadName: names the calling thread (Linux: 15 characters at most, longer names are cut),
// so that top -H, perf and a debugger show which of the server's threads is busy: vlm-engine (the
// scheduler and model steps), vlm-prep (frame decoding, preprocessing, tokenization), vlm-cpu
// (the CPU ops' helpers, kernels/cpu/parallel.h), grpc's own threads.
#pragma once

#include <pthread.h>

#include <string>

namespace vlmserve {

inline void SetThreadName(const std::string& name) {
#ifdef __linux__
  pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
#else
  (void)name;
#endif
}

}  // namespace vlmserve
