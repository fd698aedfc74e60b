// Throwaway timing driver for the CPU backend (the CLI's `longctx bench attention` is the real one):
//   bench_attention_kernels [N H D w1,w2,.. r1,r2,.. iters causal(0|1) backward(0|1) batch]
// Prints best and median seconds and GFLOP/s by the spec's FLOP counts.
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "attention/attention.hpp"

using namespace longctx;

namespace {
std::vector<int64_t> parse_list(const std::string& text) {
  std::vector<int64_t> out;
  std::stringstream in(text);
  for (std::string item; std::getline(in, item, ',');) out.push_back(std::stoll(item));
  return out;
}
Tensor random(const Shape& shape, uint64_t seed) {
  Tensor t(shape);
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  for (int64_t i = 0; i < t.size(); ++i) t[i] = normal(rng);
  return t;
}
double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }
}  // namespace

int main(int argc, char** argv) {
  const int64_t N = argc > 1 ? std::stoll(argv[1]) : 65536;
  const int64_t H = argc > 2 ? std::stoll(argv[2]) : 4;
  const int64_t D = argc > 3 ? std::stoll(argv[3]) : 64;
  const auto w = parse_list(argc > 4 ? argv[4] : "2048,4096,8192");
  const auto r = parse_list(argc > 5 ? argv[5] : "1,2,4");
  const int iters = argc > 6 ? std::atoi(argv[6]) : 5;
  const bool causal = argc > 7 && std::atoi(argv[7]) != 0;
  const bool backward = argc > 8 && std::atoi(argv[8]) != 0;
  const int64_t B = argc > 9 ? std::stoll(argv[9]) : 1;

  AttentionParams params;
  params.schedule = make_schedule(w, r, true);
  params.causal = causal;
  const Shape shape{B, N, H, D};
  const Tensor q = random(shape, 1), k = random(shape, 2), v = random(shape, 3);
  Tensor o, lse, dq, dk, dv;
  auto backend = make_attention_backend("cpu");
  const double pairs = static_cast<double>(B) * count_pairs(params.schedule, N, H, causal, params.offsets);
  std::printf("N=%lld H=%lld D=%lld B=%lld causal=%d threads=%d pairs=%lld\n", static_cast<long long>(N),
              static_cast<long long>(H), static_cast<long long>(D), static_cast<long long>(B), causal ? 1 : 0,
              omp_get_max_threads(), static_cast<long long>(pairs));

  backend->forward(params, q, k, v, o, lse);  // warm-up
  std::vector<double> fwd, bwd;
  Tensor dout = backward ? random(shape, 4) : Tensor();
  if (backward) backend->backward(params, q, k, v, o, lse, dout, dq, dk, dv);
  for (int i = 0; i < iters; ++i) {
    double t0 = now();
    backend->forward(params, q, k, v, o, lse);
    fwd.push_back(now() - t0);
    if (backward) {
      t0 = now();
      backend->backward(params, q, k, v, o, lse, dout, dq, dk, dv);
      bwd.push_back(now() - t0);
    }
  }
  auto report = [&](const char* what, std::vector<double> t, double flops) {
    std::sort(t.begin(), t.end());
    const double best = t.front(), median = t[t.size() / 2];
    std::printf("%s: best %.4f s (%.1f GFLOP/s), median %.4f s (%.1f GFLOP/s)\n", what, best,
                static_cast<double>(flops) / best * 1e-9, median, static_cast<double>(flops) / median * 1e-9);
  };
  report("forward ", fwd, flops_forward(pairs, D));
  if (backward) report("backward", bwd, flops_backward(pairs, D));
  return 0;
}
