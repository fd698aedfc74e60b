#!/usr/bin/env bash
# `longctx bench attention` and `longctx bench comm` end to end: JSON fields, GPU options refused clearly
# where there is no GPU (exit 2), bad values refused (exit 2).
LONGCTX=$1
source "$(dirname "$0")/lib.sh"
have_gpu=0
grep -qE "CUDA: .* [1-9][0-9]* device" <<<"$("$LONGCTX" --version)" && have_gpu=1

expect_exit 0 "bench attention (cpu, json)" -- "$LONGCTX" bench attention --seq-len 4096 --heads 2 --head-dim 16 \
  --segment-lengths 1024,4096 --dilation-rates 1,4 --iters 1 --backward --json --quiet
expect_in "$OUT/stdout" '"gflops_fwd": [0-9.e+]+.*"seconds_bwd": [0-9.e+-]+.*"gflops_bwd"' "bench attention prints the spec's fields"
# Progress on stderr with --json too (before: none), stdout only the JSON.
expect_in "$OUT/stderr" "^\[longctx info r0\] bench attention: iteration 2/2: forward [0-9.]+ s, backward [0-9.]+ s$" "progress on stderr with --json"
[ "$(wc -l <"$OUT/stdout")" -eq 1 ] && pass "stdout holds the JSON alone" || fail "stdout: $(head -3 "$OUT/stdout")"
# N not divisible by the ranks names the option (before: "sequence length 4097 ...").
expect_exit 2 "bench attention --seq-len 4097 on 2 ranks" -- "${MPIRUN[@]}" -np 2 "$LONGCTX" bench attention --seq-len 4097 --quiet
expect_in "$OUT/stderr" "^longctx: error: --seq-len=4097 is not divisible by the 2 ranks" "names --seq-len"
# ... and where the value came from, when that was not the command line (before: nothing; from the bench audit).
expect_exit 2 "bench attention, LONGCTX_SEQ_LEN=4097 on 2 ranks" -- env LONGCTX_SEQ_LEN=4097 "${MPIRUN[@]}" -np 2 "$LONGCTX" \
  bench attention --quiet
expect_in "$OUT/stderr" "^longctx: error: --seq-len=4097 is not divisible by the 2 ranks: .* \(from environment variable LONGCTX_SEQ_LEN\)" \
  "... says the environment gave it"
expect_exit 2 "bench attention, LONGCTX_SEGMENT_LENGTHS=512,3072 on 2 ranks" -- env LONGCTX_SEGMENT_LENGTHS=512,3072 \
  "${MPIRUN[@]}" -np 2 "$LONGCTX" bench attention --seq-len 4096 --dilation-rates 1,2 --quiet
expect_in "$OUT/stderr" "segment length 3072 neither divides .* \(from environment variable LONGCTX_SEGMENT_LENGTHS\)" \
  "... a segment length too"
expect_exit 0 "bench attention on 2 ranks (json)" -- "${MPIRUN[@]}" -np 2 "$LONGCTX" bench attention --seq-len 2K \
  --heads 2 --head-dim 8 --segment-lengths 256,2048 --dilation-rates 1,2 --iters 1 --warmup 0 --backward --json --quiet
/usr/bin/python3 -c "
import json, sys
d = json.load(sys.stdin)
want = {'rank', 'seconds_fwd', 'gflops_fwd', 'seconds_bwd', 'gflops_bwd', 'bytes_sent_fwd', 'bytes_received_fwd',
        'comm_hidden_fwd', 'bytes_sent_bwd', 'bytes_received_bwd', 'comm_hidden_bwd', 'peak_rss_bytes', 'threads'}
# The run's settings, so that records of paper and grouped offsets (other pairs where H < r) tell apart.
assert (d['head_offsets'], d['softmax_scale'], d['seed'], d['iters'], d['warmup']) == ('paper', 0, 1, 1, 0), d
assert d['world_size'] == 2 and len(d['per_rank']) == 2 and d['non_finite'] == 0
for r in d['per_rank']:
    assert want <= set(r), want - set(r)
    assert r['bytes_received_fwd'] > 0 and r['gflops_bwd'] > 0
for way in ('fwd', 'bwd'):  # what one rank sent, the other received
    assert sum(r['bytes_sent_' + way] for r in d['per_rank']) == sum(r['bytes_received_' + way] for r in d['per_rank']) > 0, way
" <"$OUT/stdout" && pass "per-rank JSON has the forward and backward fields" || fail "per-rank JSON fields"
# A scale that overflows float32's scores: timed, but said, and counted in the JSON (before: printed as any run).
expect_exit 0 "bench attention --softmax-scale 3e38" -- "${MPIRUN[@]}" -np 2 "$LONGCTX" bench attention --seq-len 2K \
  --heads 2 --head-dim 8 --segment-lengths 256,2048 --dilation-rates 1,2 --softmax-scale 3e38 --iters 1 --warmup 0 \
  --backward --json --quiet
expect_in "$OUT/stderr" "values of o, dq, dk, dv are not finite: float32 overflowed \(scores \|q.k\| \* softmax scale, --softmax-scale 3e\+38\); these timings are of NaN arithmetic" \
  "warns that the results are not finite"
/usr/bin/python3 -c "import json, sys; sys.exit(0 if json.load(sys.stdin)['non_finite'] > 0 else 1)" <"$OUT/stdout" &&
  pass "... and the JSON counts them" || fail "non_finite: $(cat "$OUT/stdout")"
expect_exit 0 "bench attention --json with grouped offsets, a scale and a seed" -- "$LONGCTX" bench attention --seq-len 2K \
  --heads 2 --head-dim 8 --segment-lengths 256,2048 --dilation-rates 1,4 --head-offsets grouped --softmax-scale 0.125 \
  --seed 3 --iters 2 --warmup 1 --json --quiet
/usr/bin/python3 -c "
import json, sys
d = json.load(sys.stdin)
assert (d['head_offsets'], d['softmax_scale'], d['seed'], d['iters'], d['warmup']) == ('grouped', 0.125, 3, 2, 1), d
" <"$OUT/stdout" && pass "... its settings in the JSON" || fail "JSON settings: $(cat "$OUT/stdout")"
# A long pass says it is alive (every 30 s; here every 0.02 s), on rank 0 only; a bad period is warned about.
expect_exit 0 "bench attention with LONGCTX_PROGRESS_SECONDS=0.02" -- env LONGCTX_PROGRESS_SECONDS=0.02 "${MPIRUN[@]}" -np 2 \
  "$LONGCTX" bench attention --seq-len 8K --heads 2 --head-dim 32 --segment-lengths 8192 --dilation-rates 1 --iters 1 \
  --warmup 0 --backward --quiet
expect_in "$OUT/stderr" "^\[longctx info r0\] bench attention: iteration 1/1: (forward|backward) running, [0-9]+\.[0-9] s$" "says it is running, and which pass (tenths below 10 s)"
grep "running, " "$OUT/stderr" | grep -qv "info r0" && fail "a rank other than 0 said it" || pass "... from rank 0 only"
expect_exit 0 "LONGCTX_PROGRESS_SECONDS=soon" -- env LONGCTX_PROGRESS_SECONDS=soon "$LONGCTX" bench attention --seq-len 1K \
  --heads 1 --head-dim 8 --segment-lengths 1024 --dilation-rates 1 --iters 1 --warmup 0 --quiet
expect_in "$OUT/stderr" "LONGCTX_PROGRESS_SECONDS='soon' is not a positive number of seconds: progress lines come every 30 s" \
  "a bad period is warned about"
[ "$(grep -c "LONGCTX_PROGRESS_SECONDS='soon'" "$OUT/stderr")" -eq 1 ] && pass "... once" ||
  fail "the bad period was warned about $(grep -c "LONGCTX_PROGRESS_SECONDS='soon'" "$OUT/stderr") times"
# ... also by a command that does no long work (before: only once one began, minutes in for train).
expect_exit 3 "LONGCTX_PROGRESS_SECONDS=soon, data inspect of a missing file" -- env LONGCTX_PROGRESS_SECONDS=soon \
  "$LONGCTX" data inspect "$OUT/missing.h5" --quiet
expect_in "$OUT/stderr" "LONGCTX_PROGRESS_SECONDS='soon' is not a positive number of seconds" "... is warned about at the start"
# A period longer than the run says nothing (before: from about 9.2e9 s on, the wait overflowed the clock and
# the line came millions of times a second, and the pass hardly went on).
expect_exit 0 "LONGCTX_PROGRESS_SECONDS=1e10" -- timeout 120 env LONGCTX_PROGRESS_SECONDS=1e10 "$LONGCTX" bench attention --seq-len 8K \
  --heads 2 --head-dim 32 --segment-lengths 8192 --dilation-rates 1 --iters 1 --warmup 0 --quiet
grep -q "running, " "$OUT/stderr" && fail "LONGCTX_PROGRESS_SECONDS=1e10 said progress $(grep -c "running, " "$OUT/stderr") times" ||
  pass "... says no progress"
# Ranks allowed on the same CPUs (--bind-to none) share them: without OMP_NUM_THREADS each takes its part
# (before: each took them all, 2 ranks on 2 cores ran 4 threads). More threads than CPUs are warned about.
cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # (nproc counts OMP_NUM_THREADS, which ctest sets)
SMALL=(bench attention --seq-len 2K --heads 2 --head-dim 8 --segment-lengths 256,2048 --dilation-rates 1,2 --iters 1
       --warmup 0 --json --quiet)
expect_exit 0 "2 ranks on shared CPUs" -- env -u OMP_NUM_THREADS "${MPIRUN[@]}" -np 2 "$LONGCTX" "${SMALL[@]}"
/usr/bin/python3 -c "import json, sys; sys.exit(any(r['threads'] != max(1, $cpus // 2) for r in json.load(sys.stdin)['per_rank']))" \
  <"$OUT/stdout" && pass "... each runs $(( cpus / 2 > 1 ? cpus / 2 : 1 )) thread(s) of the $cpus CPU(s)" || fail "threads: $(cat "$OUT/stdout")"
if [ "$cpus" -lt 2 ]; then
  expect_in "$OUT/stderr" "2 rank\(s\) on .* run 2 OpenMP threads on 1 CPU\(s\).*run at most 1 rank\(s\) there" "... 2 ranks on 1 CPU are warned about"
else
  grep -q "OpenMP threads on" "$OUT/stderr" && fail "warned of oversubscription" || pass "... and are not warned about"
  expect_exit 0 "2 ranks with OMP_NUM_THREADS=$cpus each" -- "${MPIRUN[@]}" -x OMP_NUM_THREADS=$cpus -np 2 "$LONGCTX" "${SMALL[@]}"
  expect_in "$OUT/stderr" "^\[longctx warn r0\] 2 rank\(s\) on .* run $((2 * cpus)) OpenMP threads on $cpus CPU\(s\): they take turns on the cores.*give each rank at most $((cpus / 2 > 0 ? cpus / 2 : 1)) thread\(s\) \(--threads, OMP_NUM_THREADS\)" \
    "... are warned about, naming bench's option"
  [ "$(grep -c "OpenMP threads on" "$OUT/stderr")" -eq 1 ] && pass "... once, by rank 0" || fail "warned $(grep -c "OpenMP threads on" "$OUT/stderr") times"
fi
# The table: one rank receives nothing, so its "comm hidden" is "-" (it said 100%).
expect_exit 0 "bench attention table at 1 rank" -- "$LONGCTX" bench attention --seq-len 1K --heads 1 --head-dim 8 \
  --segment-lengths 256,1024 --dilation-rates 1,2 --iters 1 --warmup 0 --quiet
expect_in "$OUT/stdout" "^ *0 .* 0 +- +[0-9]+$" "no communication: comm hidden is '-'"
# --backward: the backward's comm hidden has a column of its own (before: --json only).
expect_exit 0 "bench attention --backward table at 2 ranks" -- "${MPIRUN[@]}" -np 2 "$LONGCTX" bench attention \
  --seq-len 2K --heads 2 --head-dim 8 --segment-lengths 256,2048 --dilation-rates 1,2 --iters 1 --warmup 0 --backward --quiet
expect_in "$OUT/stdout" "recv bytes \(fwd\)  comm hidden   recv bytes \(bwd\)  comm hidden   peak RSS MiB$" \
  "names the backward's comm hidden"
[ "$(grep -cE '^ +[01] .* [1-9][0-9]* +[0-9]+% +[1-9][0-9]* +[0-9]+% +[0-9]+$' "$OUT/stdout")" = 2 ] &&
  pass "... and gives it per rank" || fail "table: $(cat "$OUT/stdout")"
# Causal: rank 1's queries see more keys than rank 0's, and rank 1 hands some of its rows to rank 0 (the
# causal balance): each rank's GFLOP/s uses the pairs it computed (they add up to the job's, about half
# each), not those of its own rows.
expect_exit 0 "causal bench attention on 2 ranks" -- "${MPIRUN[@]}" -np 2 "$LONGCTX" bench attention --seq-len 2K \
  --heads 2 --head-dim 8 --segment-lengths 256,2048 --dilation-rates 1,2 --causal --iters 1 --warmup 0 --backward --json --quiet
/usr/bin/python3 -c "
import json, sys
d = json.load(sys.stdin)
ranks = d['per_rank']
assert sum(r['pairs'] for r in ranks) == d['pairs'], (d['pairs'], [r['pairs'] for r in ranks])
mine = [r['pairs'] for r in ranks]
assert max(mine) < 1.02 * min(mine), mine  # its own rows: 1 to 2
for r in ranks:
    for what, per_pair in (('fwd', 4), ('bwd', 10)):
        want = per_pair * d['head_dim'] * r['pairs'] / r['seconds_' + what] / 1e9
        assert abs(r['gflops_' + what] - want) <= 1e-3 * want, (what, r, want)
" <"$OUT/stdout" && pass "per-rank GFLOP/s from each rank's own pairs" || fail "per-rank pairs / GFLOP/s"
expect_exit 2 "bench attention: bf16 on the cpu" -- "$LONGCTX" bench attention --seq-len 4096 --dtype bf16 --quiet
expect_in "$OUT/stderr" "dtype bf16.*--device cuda" "names --dtype and the way out"
if [ "$have_gpu" -eq 0 ]; then
  expect_exit 2 "bench attention --device cuda without a GPU" -- "$LONGCTX" bench attention --seq-len 4096 \
    --device cuda --dtype bf16 --quiet
  expect_in "$OUT/stderr" "device cuda" "names --device cuda"
  expect_exit 2 "bench comm --comm staged without a GPU" -- "$LONGCTX" bench comm --comm staged --quiet
  expect_in "$OUT/stderr" "--comm staged times device buffers.*no CUDA device" "says why, naming --comm (not --device)"
  # In the config phase: under mpirun one message and no MPI_Abort (it was one per rank from run()).
  expect_exit 2 "bench comm --comm nccl without a GPU, 2 ranks" -- "${MPIRUN[@]}" -np 2 "$LONGCTX" bench comm --comm nccl \
    --bytes 1K --quiet
  [ "$(grep -c "error:" "$OUT/stderr")" -eq 1 ] && ! grep -q MPI_ABORT "$OUT/stderr" && pass "one message, no MPI_Abort" \
    || { fail "messages: $(grep -c "error:" "$OUT/stderr")"; head -5 "$OUT/stderr"; }
  # --comm auto uses host buffers here: the memory check applies (it ran out of memory, exit 1).
  expect_exit 2 "bench comm --comm auto larger than the node" -- "$LONGCTX" bench comm --comm auto --bytes 1000G --quiet
fi
# An error about a value names where it came from (the environment here).
expect_exit 2 "LONGCTX_BYTES=0" -- env LONGCTX_BYTES=0 "$LONGCTX" bench comm --quiet
expect_in "$OUT/stderr" "--bytes: must be >= 1, got 0 \(from environment variable LONGCTX_BYTES\)" "says where 0 came from"
expect_exit 2 "LONGCTX_DILATION_RATES=2,2,2" -- env LONGCTX_DILATION_RATES=2,2,2 "$LONGCTX" bench attention --quiet
expect_in "$OUT/stderr" "from environment variable LONGCTX_DILATION_RATES" "says where the rates came from"
# A rank that received nothing: comm_hidden is null in the JSON, as '-' in the table (it was 1).
expect_exit 0 "bench attention json at 1 rank" -- "$LONGCTX" bench attention --seq-len 1K --heads 1 --head-dim 8 \
  --segment-lengths 256,1024 --dilation-rates 1,2 --iters 1 --warmup 0 --backward --json --quiet
expect_in "$OUT/stdout" '"bytes_received_fwd": 0, "comm_hidden_fwd": null.*"comm_hidden_bwd": null' "comm_hidden is null"

expect_exit 0 "bench comm (mpi, 2 ranks, json)" -- "${MPIRUN[@]}" -np 2 "$LONGCTX" bench comm --bytes 1M --iters 3 --json --quiet
expect_in "$OUT/stdout" '"world_size": 2, "bytes_per_rank": 1048576, "iters": 3, "warmup": 2, "seconds": [0-9.e+-]+, "received_bytes_per_s": [1-9]' \
  "bench comm reports the rate received per rank"
expect_in "$OUT/stdout" '"staged_copy_bytes_per_s": null\}$' "no copy rate where nothing is staged (it was 0)"
# Small sizes in units that show them (before: "0.00 MiB per rank: 0.00 ms ... 0.00 GB/s").
expect_exit 0 "bench comm --bytes 3, 2 ranks" -- "${MPIRUN[@]}" -np 2 "$LONGCTX" bench comm --bytes 3 --iters 3 --quiet
expect_in "$OUT/stdout" "^all_gather on mpi, 2 rank\(s\), 3 B per rank: [0-9.]+ (us|ms) \(median of 3, slowest rank\), [0-9.]+ [kMG]?B/s received per rank$" \
  "bench comm: sizes, times and rates in readable units"
! grep -q " 0\.00 " "$OUT/stdout" && pass "no figure reads 0.00" || fail "a figure reads 0.00: $(cat "$OUT/stdout")"
expect_exit 2 "bench comm: unknown backend" -- "$LONGCTX" bench comm --comm gloo --quiet
expect_in "$OUT/stderr" "comm.*gloo.*mpi, staged, nccl, auto" "names the allowed backends"
# LONGCTX_COMM=auto (attention's default) serves bench comm too: host buffers where no rank has a GPU.
expect_exit 0 "bench comm with LONGCTX_COMM=auto" -- env LONGCTX_COMM=auto "${MPIRUN[@]}" -np 2 "$LONGCTX" bench comm --bytes 64K --iters 2 --json --quiet
[ "$have_gpu" -eq 0 ] && expect_in "$OUT/stdout" '"comm": "mpi"' "auto without a GPU is mpi"
expect_exit 2 "bench comm: zero bytes" -- "$LONGCTX" bench comm --bytes 0 --quiet
# What cannot fit is refused before anything is allocated, with the figure (before: OOM-killed without a
# word, or a size whose byte count wrapped to a tiny buffer: a segfault); iteration counts that overflow
# int are refused (before: 0 iterations, "gflops_fwd": inf, exit 0).
expect_exit 2 "bench attention larger than the node" -- "$LONGCTX" bench attention --seq-len 1G --heads 64 --head-dim 256 --quiet
expect_in "$OUT/stderr" "needs at least [0-9.]+ TiB per rank \(q, k, v, o of its rows in float32, 256.0 TiB, and the attention's own buffers, 256.0 GiB: lse" "names what it needs"
expect_exit 2 "bench attention of 2^57 tokens" -- "$LONGCTX" bench attention --seq-len=134217728G --heads 2 \
  --head-dim 16 --segment-lengths 512,1024 --dilation-rates 1,2 --quiet
expect_exit 2 "bench attention under ulimit -v" -- bash -c "ulimit -v 2000000; \"\$0\" bench attention --seq-len 4M --heads 4 --head-dim 64 --threads 1 --quiet" "$LONGCTX"
expect_in "$OUT/stderr" "needs at least 16.1 GiB per rank .* and 16.[0-9] GiB of address space with the libraries and 1 thread, but ulimit -v allows each process 1.9 GiB" "counts ulimit -v, per process"
# Each thread past the first reserves a 64 MiB malloc arena: with 2 threads a run the check let start under
# this limit ran out of address space (exit 1); the figures that round alike in GiB are given in MiB.
expect_exit 2 "2 threads under ulimit -v, 34 MiB short of what they reserve" -- bash -c "ulimit -v 1570000; \"\$0\" bench attention \
  --seq-len 152K --heads 4 --head-dim 64 --segment-lengths 64,128 --dilation-rates 1,2 --threads 2 --iters 1 --warmup 0 \
  --backward --quiet" "$LONGCTX"
expect_in "$OUT/stderr" "and 15[0-9][0-9] MiB of address space with the libraries and 2 threads, but ulimit -v allows each process 1534 MiB" \
  "... counts their arenas, in MiB"
# Without ulimit -v: the address space a process has (before: "ulimit -v allows 17179869184.0 GiB: raise it").
expect_exit 2 "bench comm of 2^63 bytes" -- bash -c "ulimit -v unlimited; \"\$0\" bench comm --bytes 9223372036854775807 --quiet" "$LONGCTX"
expect_in "$OUT/stderr" "more than a process can address \(128.0 TiB\): use a smaller --bytes \(more ranks need more\)$" \
  "... names what a process can address, and a smaller --bytes (more ranks hold more: before, 'use more ranks')"
expect_exit 2 "bench comm under ulimit -v" -- bash -c "ulimit -v 1500000; \"\$0\" bench comm --bytes 700M --quiet" "$LONGCTX"
expect_in "$OUT/stderr" "ulimit -v allows each process 1.4 GiB: raise it, or use a smaller --bytes \(more ranks need more\)$" \
  "... raise it or a smaller --bytes"
# A segment spanning the 2 ranks gathers its K / V rows (here 2x this rank's K and V), copies them into
# tiles: 770 MiB per rank at its peak (and about 1 GiB of address space), where the check counted 256 MiB
# (q, k, v, o): under a 976 MiB ulimit -v it let the run start, which then failed ("out of memory", exit 1).
expect_exit 2 "a spanning segment under ulimit -v, 2 ranks" -- bash -c "ulimit -v 1000000; \"\$@\"" _ "${MPIRUN[@]}" -np 2 \
  "$LONGCTX" bench attention --seq-len 8192 --heads 32 --head-dim 128 --segment-lengths 8192 --dilation-rates 1 --threads 1 \
  --iters 1 --warmup 0 --quiet
expect_in "$OUT/stderr" "needs at least 7[0-9][0-9] MiB per rank \(q, k, v, o of its rows in float32, 256 MiB, and the attention's own buffers, 5[0-9][0-9] MiB: lse, the spanning segments' gathered K / V rows.* and 1.0 GiB of address space" \
  "counts the spanning segment's buffers"
expect_exit 2 "bench attention --iters 2^31-1" -- "$LONGCTX" bench attention --iters 2147483647 --quiet
expect_exit 2 "bench comm --iters 2^31-1" -- "$LONGCTX" bench comm --bytes 1K --iters 2147483647 --quiet
expect_exit 2 "--threads 2^31-1" -- "$LONGCTX" bench attention --threads 2147483647 --quiet
expect_in "$OUT/stderr" "threads: must be in \[0, 1024\]" "names the range (was: libgomp out of memory, exit 1)"
expect_exit 2 "bench comm larger than the node" -- "$LONGCTX" bench comm --bytes 100G --quiet
# Under mpirun a bad option is one message from the config phase, not one per rank and an MPI_Abort.
expect_exit 2 "bench attention on 2 ranks, N not shardable" -- "${MPIRUN[@]}" -np 2 "$LONGCTX" bench attention --seq-len 4098 --quiet
[ "$(grep -c "error:" "$OUT/stderr")" -eq 1 ] && ! grep -q MPI_ABORT "$OUT/stderr" && pass "one message, no MPI_Abort" \
  || { fail "messages: $(grep -c "error:" "$OUT/stderr")"; head -5 "$OUT/stderr"; }
# ---- jobs/bench/scaling.sh: its arguments and settings are checked before any job, and a failed job of the
# constant-communication part says so (before: --help or a typo started the whole benchmark, REPEATS=0 ended
# in a Python traceback after the first part, and a failed 4-rank job stopped the script without a word).
SCALING="$(cd "$(dirname "$0")/../.." && pwd)/jobs/bench/scaling.sh"
expect_exit 0 "scaling.sh --help" -- bash "$SCALING" --help
expect_in "$OUT/stdout" "^usage: jobs/bench/scaling.sh" "prints its usage"
expect_exit 2 "scaling.sh with an argument" -- bash "$SCALING" 16384
expect_in "$OUT/stderr" "takes no arguments \('16384'\)" "says it takes none"
# The Python helpers beside it too, without torch (before: the torch baselines said "cannot import torch",
# exit 1, to --help; openblas_coretype.py printed nothing and took any argument).
for script in sgemm_rate.py torch_dilated.py torch_dilated_gpu.py openblas_coretype.py; do
  expect_exit 0 "$script --help" -- /usr/bin/python3 "$(dirname "$SCALING")/$script" --help
  [ -s "$OUT/stdout" ] && pass "... prints its usage" || fail "$script --help printed nothing"
  expect_exit 2 "$script --bogus" -- /usr/bin/python3 "$(dirname "$SCALING")/$script" --bogus
done
# Bad values are usage errors naming the argument, before torch is imported (before: tracebacks, a
# ZeroDivisionError, "cannot import torch" for --seq-len 0, and make_qkv.py wrote an empty [0, H, D] file).
for call in "sgemm_rate.py --size -5:--size: -5: must be >= 1" "sgemm_rate.py --iters 0:--iters: 0: must be >= 1" \
            "torch_dilated.py --seq-len 0:--seq-len: 0: must be >= 1" \
            "torch_dilated.py --dilation-rates 0,2,4:--dilation-rates: 0: must be >= 1" \
            "torch_dilated.py --segment-lengths 2048,x:--segment-lengths: 'x' is not a whole number" \
            "torch_dilated_gpu.py --segment-lengths 2048:1 segment lengths but 4 dilation rates" \
            "../demo/make_qkv.py x.h5 --seq-len 0:--seq-len: 0: must be >= 1" \
            "../demo/make_qkv.py x.h5 --seed -1:--seed: -1: must be >= 0" \
            "../demo/make_qkv.py $OUT/missing/x.h5:argument out: .*/missing/x.h5: no such directory" \
            "torch_dilated.py --seq-len 1024 --segment-lengths 512 --dilation-rates 2:--dilation-rates \(2\): no branch has rate 1" \
            "torch_dilated_gpu.py --seq-len 1024 --segment-lengths 512 --dilation-rates 2:--dilation-rates \(2\): no branch has rate 1" \
            "torch_dilated.py --seq-len 1024 --segment-lengths 1024,512 --dilation-rates 1,1024:value 1024 exceeds its segment length 512" \
            "torch_dilated_gpu.py --seq-len 1000 --segment-lengths 512 --dilation-rates 1:segment length 512 must divide N=1000"; do
  read -ra words <<<"${call%%:*}"
  expect_exit 2 "${call%%:*}" -- /usr/bin/python3 "$(dirname "$SCALING")/${words[0]}" "${words[@]:1}"
  expect_in "$OUT/stderr" "${call#*:}" "... names it"
done
[ ! -e x.h5 ] && pass "make_qkv.py wrote nothing" || fail "make_qkv.py wrote x.h5"
# (The torch baselines above: a schedule without an r = 1 branch, which longctx refuses, was taken, and the
# rows no branch selects came out NaN; torch_dilated_gpu.py checked N against the lengths only after its GEMM.)
expect_exit 0 "torch_dilated.py --help" -- /usr/bin/python3 "$(dirname "$SCALING")/torch_dilated.py" --help
expect_in "$OUT/stdout" "jobs/bench/torch_dilated.py \[--seq-len 65536 .* --batch 1$" "... its usage names --batch (before: left out)"
# make_qkv.py replaces OUT only once the new file is whole (before: it truncated OUT first, and a failure, as
# a MemoryError, left it empty): a size past the available memory is refused up front, and one that fails
# anyway (ulimit -v) leaves OUT as it was, with no temporary file beside it.
MAKE_QKV="$(dirname "$(dirname "$SCALING")")/demo/make_qkv.py"
mkdir -p "$OUT/qkv" && /usr/bin/python3 "$MAKE_QKV" "$OUT/qkv/keep.h5" --seq-len 16 --heads 1 --head-dim 8 >/dev/null ||
  fail "make_qkv.py could not make a small file"
kept=$(md5sum <"$OUT/qkv/keep.h5")
expect_exit 2 "make_qkv.py of 931 TiB per array" -- /usr/bin/python3 "$MAKE_QKV" "$OUT/qkv/keep.h5" --seq-len 1000000000000
expect_in "$OUT/stderr" "each of q, k, v, do is 931.3 TiB of float32, .* available \(MemAvailable\): use a smaller --seq-len" \
  "... names the size and the memory available"
bash -c 'ulimit -v 2000000; exec /usr/bin/python3 "$@"' _ "$MAKE_QKV" "$OUT/qkv/keep.h5" --seq-len 2097152 --heads 4 --head-dim 64 \
  >"$OUT/stdout" 2>"$OUT/stderr"
status=$?
[ "$status" -ne 0 ] && [ "$(md5sum <"$OUT/qkv/keep.h5")" = "$kept" ] && [ "$(ls -A "$OUT/qkv")" = keep.h5 ] &&
  pass "make_qkv.py that fails (exit $status, 2 GiB under ulimit -v 1.9 GiB) leaves OUT as it was, and no temporary file" ||
  fail "make_qkv.py under ulimit -v: exit $status, $OUT/qkv holds $(ls -A "$OUT/qkv" | tr '\n' ' ')"
# OUT a symbolic link: it stays one, the file it leads to gets the new arrays, with its mode (regression
# audit: the link became a file, the target kept the old data, and a mode of 0640 came back 0644).
chmod 640 "$OUT/qkv/keep.h5" && ln -s keep.h5 "$OUT/qkv/link.h5"
expect_exit 0 "make_qkv.py through a symbolic link" -- /usr/bin/python3 "$MAKE_QKV" "$OUT/qkv/link.h5" --seq-len 32 --heads 1 --head-dim 8
[ -L "$OUT/qkv/link.h5" ] && [ "$(stat -c %a "$OUT/qkv/keep.h5")" = 640 ] &&
  /usr/bin/python3 -c "import h5py, sys; sys.exit(0 if h5py.File(sys.argv[1], 'r')['q'].shape == (32, 1, 8) else 1)" "$OUT/qkv/keep.h5" &&
  pass "... the link stays, its file has the new arrays and its mode" || fail "through a link: $(ls -l "$OUT/qkv")"
# sgemm_rate.py refuses the reference BLAS before any matmul (before: after the 4096^3 warm-up, ~65 s).
start=$SECONDS
timeout 120 /usr/bin/python3 "$(dirname "$SCALING")/sgemm_rate.py" --iters 1 >"$OUT/stdout" 2>"$OUT/stderr"
status=$?
if [ "$status" -eq 1 ] && grep -q "reference BLAS" "$OUT/stderr"; then
  [ $((SECONDS - start)) -lt 10 ] && pass "sgemm_rate.py refuses the reference BLAS in $((SECONDS - start)) s" ||
    fail "sgemm_rate.py took $((SECONDS - start)) s to refuse the reference BLAS"
else
  [ "$status" -eq 0 ] && pass "sgemm_rate.py: an optimised BLAS here ($(cat "$OUT/stdout"))" || fail "sgemm_rate.py: exit $status"
fi
# The quickstart's header names every file it writes to its directory (before: "each named quickstart_*", but
# the log is quickstart.jsonl).
QUICKSTART="$(dirname "$(dirname "$SCALING")")/quickstart.sh"
unnamed=
for f in $(grep -o '\$work/[A-Za-z0-9_.]*' "$QUICKSTART" | sort -u); do
  f=${f#\$work/}
  case $f in quickstart_*) ;; *) sed -n '2,/^[^#]/p' "$QUICKSTART" | grep -qF "$f" || unnamed+=" $f" ;; esac
done
[ -z "$unnamed" ] && pass "quickstart.sh's header names the files it writes" || fail "quickstart.sh's header leaves out:$unnamed"
# A daemon killed a moment ago is a zombie until it is reaped: jobs/lib.sh does not take it for a running one
# (before: start-local.sh then started no slurmd, and said it had).
bash -c 'sleep 0.1 & echo $! >"$1"; exec sleep 4' _ "$OUT/zombie" >/dev/null 2>&1 &
sleep 5 >/dev/null 2>&1 &
live=$!
sleep 1
zombie=$(cat "$OUT/zombie")
pid_is() { bash -c 'source "$1/lib.sh"; longctx_slurm_pid_is "$2" sleep' _ "$(dirname "$(dirname "$SCALING")")" "$1"; }
[ "$(cut -d' ' -f3 "/proc/$zombie/stat" 2>/dev/null)" = Z ] && ! pid_is "$zombie" && pid_is "$live" &&
  pass "longctx_slurm_pid_is: a zombie is not running, a live process is" || fail "longctx_slurm_pid_is and zombie $zombie"
kill "$live" 2>/dev/null
# The bash scripts run with sh say so, and do nothing (before: "source: not found", "Bad substitution").
for script in build.sh test.sh quickstart.sh slurm/start-local.sh slurm/stop-local.sh bench/scaling.sh slurm/train.sbatch \
              slurm/info.sbatch; do
  expect_exit 2 "sh $script" -- sh "$(dirname "$(dirname "$SCALING")")/$script"
  expect_in "$OUT/stderr" "^${script#*/}: run it with bash" "... says to run it with bash"
done
expect_exit 2 "REPEATS=0" -- env REPEATS=0 bash "$SCALING"
expect_in "$OUT/stderr" "REPEATS=0: must be a whole number from 1 to 999999" "names the setting"
mkdir -p "$OUT/fake/bin" && printf '#!/bin/sh\necho "fake longctx: refused" >&2\nexit 3\n' >"$OUT/fake/bin/longctx" &&
  chmod +x "$OUT/fake/bin/longctx"
expect_exit 1 "scaling.sh whose first job fails" -- env LONGCTX_BUILD="$OUT/fake" bash "$SCALING"
expect_in "$OUT/stderr" "the 4-rank job at N = 16384 failed:" "says which job failed"
expect_in "$OUT/stderr" "fake longctx: refused" "with its message"
# A job that longctx refuses (exit 2: H or D past this machine's memory) is a bad setting, and RESULTS,
# where no job finished, is left free (before: exit 1, and RESULTS kept run.txt alone and refused the next try).
mkdir -p "$OUT/fake2/bin" && printf '#!/bin/sh
echo "fake longctx: too large" >&2
exit 2
' >"$OUT/fake2/bin/longctx" &&
  chmod +x "$OUT/fake2/bin/longctx"
expect_exit 2 "scaling.sh whose first job longctx refuses" -- env LONGCTX_BUILD="$OUT/fake2" RESULTS="$OUT/res_refused" \
  bash "$SCALING"
expect_in "$OUT/stderr" "longctx refused the 4-rank job at N = 16384's settings \(H=4 D=64\): a bad setting" "says so"
expect_in "$OUT/stderr" "no job finished; RESULTS=.*/res_refused holds nothing of this run" "... and that RESULTS holds nothing"
[ -z "$(ls -A "$OUT/res_refused")" ] && pass "... RESULTS left empty" || fail "RESULTS keeps $(ls -A "$OUT/res_refused")"
# The whole harness, small (H = 1, D = 8, one round: seconds): the bytes each rank receives stay the
# expected constant as N grows 16x, and RESULTS keeps every job's JSON (before: tables only, and CI never
# ran the harness itself).
# LONGCTX_THREADS / LONGCTX_BATCH are options longctx would read: the runs must not (before: 2 threads per
# rank under a heading that said 1, and a batch of 2 doubled every byte count against its "expected").
# Another script's setting (LONGCTX_NATIVE) changes nothing measured: not named (before: named as left out).
expect_exit 0 "scaling.sh, small, RESULTS=dir" -- env H=1 D=8 REPEATS=1 RESULTS="$OUT/res" LONGCTX_THREADS=2 LONGCTX_BATCH=2 \
  LONGCTX_NATIVE=OFF LONGCTX_BUILD="$(dirname "$(dirname "$LONGCTX")")" bash "$SCALING"
expect_in "$OUT/stderr" "not passed to the runs \(their options are the script's\): LONGCTX_BATCH=2 LONGCTX_THREADS=2$" \
  "names the LONGCTX_* options it kept from the runs, and only them"
/usr/bin/python3 -c 'import json, sys; sys.exit(any((r["threads"], r["batch"]) != (1, 1) for f in sys.argv[1:] for r in map(json.loads, open(f))))' \
  "$OUT"/res/*.jsonl && pass "every run had 1 thread and batch 1" || fail "a run took LONGCTX_THREADS or LONGCTX_BATCH"
expect_in "$OUT/stderr" "^scaling.sh: round 1 of 1: 1 rank [0-9.]+ s, 2 ranks [0-9.]+ s, 2 ranks without communication [0-9.]+ s" \
  "reports each round as it ends"
expect_in "$OUT/stderr" "^scaling.sh: constant communication: job 3 of 3 \(N = 262144\) done" "... and each job of the first part"
expect_in "$OUT/stdout" "^weak scaling: (within|OVER) the target" "judges the target"
expect_in "$OUT/stdout" "branch 4 \(w=32768, r=8\) reaches only 1 of its 8 row residues" "passes on longctx's warnings"
expect_in "$OUT/res/run.txt" "^longctx: longctx [0-9]" "RESULTS says which binary ran"
# ... and, last, how the study ended (before: run.txt, written at the start, read the same after a stop).
[ "$(tail -1 "$OUT/res/run.txt")" = "status: complete (exit 0)" ] && pass "... and that the study is complete" ||
  fail "run.txt ends: $(tail -1 "$OUT/res/run.txt")"
[ "$(grep -cE '^\| (16384|65536|262144) \| .* \| 196608 \| 196608 \|$' "$OUT/stdout")" = 3 ] &&
  pass "bytes received per rank: 196608 = expected at N = 16K, 64K, 256K" || fail "table: $(grep -E '^\| [0-9]' "$OUT/stdout" | head -3)"
expect_in "$OUT/stdout" "^time per rank 1 -> 2 ranks: [-+][0-9.]+% \(target <= \+15%" "prints the weak-scaling summary"
[ "$(cat "$OUT/res/comm.jsonl" | wc -l) $(cat "$OUT/res/weak1.jsonl" "$OUT/res/weak2.jsonl" "$OUT/res/pair.jsonl" | wc -l)" = "3 3" ] &&
  /usr/bin/python3 -c 'import json, sys; [json.loads(l)["per_rank"] for f in sys.argv[1:] for l in open(f)]' "$OUT"/res/*.jsonl &&
  pass "RESULTS holds each job's JSON" || fail "RESULTS: $(ls "$OUT/res" 2>&1 | tr '\n' ' ')"
# Jobs that warn about nothing (grep of their warnings found none: exit 1 under set -e ended the script
# after the first job, without a word). A stand-in longctx prints one valid JSON object per rank.
cat >"$OUT/fake/bin/longctx" <<'FAKE'
#!/bin/sh
[ "$1" = --version ] && { echo "fake 0"; exit 0; }
echo '{"world_size": 4, "threads": 1, "batch": 1, "seq_len": 16384, "heads": 1, "head_dim": 8, "schedule": [[1024, 1], [16384, 4]], "pairs": 100, "seconds_fwd": 0.1, "per_rank": [{"rank": 0, "seconds_fwd": 0.1, "pairs": 100, "bytes_received_fwd": 0, "comm_hidden_fwd": null}]}'
FAKE
# RESULTS with glob characters is a path, not a pattern (before: compgen -G took res[x] for one, matched
# nothing, and a complete study said "no job finished" and removed run.txt).
expect_exit 0 "scaling.sh whose jobs warn about nothing, RESULTS=res[x]" -- env LONGCTX_BUILD="$OUT/fake" REPEATS=1 \
  RESULTS="$OUT/res[x]" bash "$SCALING"
expect_in "$OUT/stdout" "^weak scaling: " "reaches its summary"
expect_in "$OUT/stderr" "^scaling.sh: the JSON of every job that finished is in .*/res\[x\]$" "... says RESULTS holds the JSON"
[ "$(tail -1 "$OUT/res[x]/run.txt" 2>&1)" = "status: complete (exit 0)" ] && [ -s "$OUT/res[x]/pair.jsonl" ] &&
  pass "... and keeps it, run.txt saying the study is complete" || fail "RESULTS=res[x]: $(ls -A "$OUT/res[x]" 2>&1 | tr '\n' ' ')"
# A second run into the same RESULTS would mix two runs' files (before: it did, and said "every job").
expect_exit 2 "scaling.sh into the RESULTS of an earlier run" -- env RESULTS="$OUT/res" bash "$SCALING"
expect_in "$OUT/stderr" "RESULTS=.*/res holds comm.jsonl of an earlier \(or a running\) study: name a new directory" "refuses it"
mkdir -p "$OUT/res_claimed" && : >"$OUT/res_claimed/run.txt"
expect_exit 2 "scaling.sh into a RESULTS another study has claimed" -- env RESULTS="$OUT/res_claimed" bash "$SCALING"
expect_in "$OUT/stderr" "holds run.txt of an earlier \(or a running\) study" "refuses it too"
# As sbatch runs it: a copy with no lib.sh beside it (before: it went on without lib.sh, and a quickstart
# so run ended with exit 0 having done nothing). It stops, or finds lib.sh in the submit directory.
cp "$SCALING" "$OUT/slurm_script"
expect_exit 2 "a copy of scaling.sh, no lib.sh beside it" -- env -u LONGCTX_ROOT -u SLURM_SUBMIT_DIR bash "$OUT/slurm_script"
expect_in "$OUT/stderr" "^scaling.sh: jobs/lib.sh is neither beside it nor in \\\$LONGCTX_ROOT or the submit directory" "says so"
expect_exit 2 "... run from the submit directory" -- env REPEATS=0 SLURM_SUBMIT_DIR="$(dirname "$(dirname "$(dirname "$SCALING")")")" \
  bash "$OUT/slurm_script"
expect_in "$OUT/stderr" "REPEATS=0: must be a whole number" "finds lib.sh there and checks its settings"
# SIGTERM during a job: exit 143, naming the job, and RESULTS keeps what finished (before: exit 143 without a
# word; SIGINT was reported as a failed job, exit 1). Sent to the script's process group, mpirun among it
# (Ctrl-C; Slurm signals every process of the step): the ranks end with it (before: the script's SIGTERM
# was mpirun's second within 5 s, and mpirun left its ranks running) and what the stopped job printed is
# not kept as its JSON (before: it was, and mpirun's "Abort is in progress" with it where the signals came
# 5 s apart: CI).
# expect_ranks_ended FAKE: no process of the fake FAKE/bin/longctx is left, 5 s after the script ended.
expect_ranks_ended() {
  for _ in $(seq 50); do pgrep -f "$1/bin/longctx" >/dev/null || break; sleep 0.1; done
  pgrep -f "$1/bin/longctx" >/dev/null && fail "the job's ranks outlived the script" || pass "... and the job's ranks ended"
}
cat >"$OUT/fake/bin/longctx" <<'FAKE'
#!/bin/sh
[ "$1" = --version ] && { echo "fake 0"; exit 0; }
echo '{"a job that did not end": true}'
touch "$0.printed"
sleep 30
FAKE
setsid env LONGCTX_BUILD="$OUT/fake" RESULTS="$OUT/res_term" bash "$SCALING" >"$OUT/stdout" 2>"$OUT/stderr" &
scaling=$!
for _ in $(seq 100); do [ -e "$OUT/fake/bin/longctx.printed" ] && break; sleep 0.1; done
sleep 0.5  # (mpirun passes the line on)
kill -TERM -- -"$scaling"
wait "$scaling"
status=$?
[ "$status" = 143 ] && pass "SIGTERM: exit 143" || fail "SIGTERM: exit $status"
expect_in "$OUT/stderr" "^scaling.sh: stopped by SIGTERM during the 4-rank job at N = 16384$" "names what it stopped"
# No job finished: RESULTS is left as it was, free for the next try (not the stopped job's output, nor run.txt).
[ -d "$OUT/res_term" ] && [ -z "$(ls -A "$OUT/res_term")" ] && pass "RESULTS holds nothing: not the stopped job's output" ||
  fail "RESULTS after SIGTERM: $(ls "$OUT/res_term" 2>&1 | tr '\n' ' ')$(cat "$OUT/res_term/comm.jsonl" 2>/dev/null)"
expect_ranks_ended "$OUT/fake"
# SIGHUP to the process group (a terminal closed, ssh dropped): the same, exit 129. Each case below has a
# fake of its own, so that no rank left of a job above is taken for its own (CI: the signal then came before
# the script had its traps).
mkdir -p "$OUT/fake_hup/bin" && cp "$OUT/fake/bin/longctx" "$OUT/fake_hup/bin/longctx"
setsid env LONGCTX_BUILD="$OUT/fake_hup" bash "$SCALING" >"$OUT/stdout" 2>"$OUT/stderr" &
scaling=$!
for _ in $(seq 100); do [ -e "$OUT/fake_hup/bin/longctx.printed" ] && break; sleep 0.1; done
kill -HUP -- -"$scaling"
wait "$scaling"
status=$?
[ "$status" = 129 ] && pass "SIGHUP: exit 129" || fail "SIGHUP: exit $status"
expect_in "$OUT/stderr" "^scaling.sh: stopped by SIGHUP during the 4-rank job at N = 16384$" "names what it stopped"
expect_ranks_ended "$OUT/fake_hup"
# SIGTERM to the script alone (kill PID, timeout(1)): the running job ends 6 s later, the time mpirun is
# given to end by itself in case it was signalled too (before: bash held the trap until the job's end, 30 s
# here, then said it had stopped it). Under 25 s: 15 failed once with other jobs loading the 2 cores (17 s).
mkdir -p "$OUT/fake_alone/bin" && cp "$OUT/fake/bin/longctx" "$OUT/fake_alone/bin/longctx"
setsid env LONGCTX_BUILD="$OUT/fake_alone" bash "$SCALING" >"$OUT/stdout" 2>"$OUT/stderr" &
scaling=$!
for _ in $(seq 100); do pgrep -f "$OUT/fake_alone/bin/longctx" >/dev/null && break; sleep 0.1; done
start=$SECONDS
kill -TERM "$scaling"
wait "$scaling"
status=$?
[ "$status" = 143 ] && [ $((SECONDS - start)) -lt 25 ] && pass "SIGTERM to the script alone: exit 143 in $((SECONDS - start)) s" ||
  fail "SIGTERM to the script alone: exit $status after $((SECONDS - start)) s"
expect_in "$OUT/stderr" "^scaling.sh: stopped by SIGTERM during the 4-rank job at N = 16384$" "names what it stopped"
expect_ranks_ended "$OUT/fake_alone"
# A job that ends well within the 6 s given to it after the script's SIGTERM keeps its JSON (before: dropped,
# and "no job finished" said; from the bench audit).
mkdir -p "$OUT/fake_done/bin" && cat >"$OUT/fake_done/bin/longctx" <<'FAKE'
#!/bin/sh
[ "$1" = --version ] && { echo "fake 0"; exit 0; }
touch "$0.started"
sleep 2
echo '{"job": "finished after the stop"}'
FAKE
chmod +x "$OUT/fake_done/bin/longctx"
setsid env LONGCTX_BUILD="$OUT/fake_done" RESULTS="$OUT/res_done" bash "$SCALING" >"$OUT/stdout" 2>"$OUT/stderr" &
scaling=$!
for _ in $(seq 100); do [ -e "$OUT/fake_done/bin/longctx.started" ] && break; sleep 0.1; done
kill -TERM "$scaling"
wait "$scaling"
status=$?
[ "$status" = 143 ] && pass "SIGTERM to the script alone as its job ends: exit 143" || fail "as its job ends: exit $status"
expect_in "$OUT/stderr" "^scaling.sh: the 4-rank job at N = 16384 had finished; its JSON is kept in .*/res_done/comm.jsonl$" \
  "... says the job's JSON is kept"
grep -q "finished after the stop" "$OUT/res_done/comm.jsonl" 2>/dev/null && pass "... and RESULTS holds it" ||
  fail "RESULTS after a job that ended well: $(ls "$OUT/res_done" 2>&1 | tr '\n' ' ')"
# SIGKILL (Slurm's after KillWait, the OOM killer): RESULTS keeps the jobs that finished, as each job's JSON
# goes there as it ends (before: copied from a temporary directory at the exit, which SIGKILL skips).
mkdir -p "$OUT/fake_kill/bin" && cat >"$OUT/fake_kill/bin/longctx" <<'FAKE'
#!/bin/sh
[ "$1" = --version ] && { echo "fake 0"; exit 0; }
case " $* " in *" 16384 "*) echo '{"job": "N = 16384"}'; exit 0 ;; esac
touch "$0.printed"
sleep 30
FAKE
chmod +x "$OUT/fake_kill/bin/longctx"
setsid env LONGCTX_BUILD="$OUT/fake_kill" RESULTS="$OUT/res_kill" bash "$SCALING" >"$OUT/stdout" 2>"$OUT/stderr" &
scaling=$!
for _ in $(seq 100); do [ -e "$OUT/fake_kill/bin/longctx.printed" ] && break; sleep 0.1; done
kill -KILL -- -"$scaling"
wait "$scaling"
[ "$(sort -u "$OUT/res_kill/comm.jsonl" 2>/dev/null)" = '{"job": "N = 16384"}' ] && [ -s "$OUT/res_kill/run.txt" ] &&
  pass "SIGKILL: RESULTS keeps the job that finished" || fail "RESULTS after SIGKILL: $(ls "$OUT/res_kill" 2>&1 | tr '\n' ' ')"
grep -q "^status: " "$OUT/res_kill/run.txt" && fail "run.txt has a status after SIGKILL" ||
  pass "... and run.txt has no status line: not a finished study"
# SIGTERM after a job finished: run.txt says the study was stopped, and during what (before: nothing told it
# from a complete one).
mkdir -p "$OUT/fake_stop/bin" && cp "$OUT/fake_kill/bin/longctx" "$OUT/fake_stop/bin/longctx"
setsid env LONGCTX_BUILD="$OUT/fake_stop" RESULTS="$OUT/res_stop" bash "$SCALING" >"$OUT/stdout" 2>"$OUT/stderr" &
scaling=$!
for _ in $(seq 100); do [ -e "$OUT/fake_stop/bin/longctx.printed" ] && break; sleep 0.1; done
kill -TERM -- -"$scaling"
wait "$scaling"
status=$?
[ "$status" = 143 ] && [ "$(tail -1 "$OUT/res_stop/run.txt" 2>&1)" = "status: stopped by SIGTERM during the 4-rank job at N = 65536 (exit 143)" ] &&
  pass "SIGTERM after a finished job: run.txt says what stopped it" ||
  fail "SIGTERM after a finished job: exit $status, run.txt ends: $(tail -1 "$OUT/res_stop/run.txt" 2>&1)"
expect_ranks_ended "$OUT/fake_stop"
for fake in fake fake_hup fake_alone fake_kill fake_stop; do pkill -KILL -f "$OUT/$fake/bin/longctx" 2>/dev/null || true; done
# A job that fails after others warned: what they said is still printed (before: only at the end of a
# run that finished).
cat >"$OUT/fake/bin/longctx" <<'FAKE'
#!/bin/sh
[ "$1" = --version ] && { echo "fake 0"; exit 0; }
case " $* " in *" --seq-len 16384 "*) ;; *) echo "fake longctx: refused" >&2; exit 3 ;; esac
echo "[longctx warn r0] fake warning of the first job" >&2
echo '{"world_size": 4, "threads": 1, "batch": 1, "seq_len": 16384, "heads": 1, "head_dim": 8, "schedule": [[1024, 1], [16384, 4]], "pairs": 100, "seconds_fwd": 0.1, "per_rank": [{"rank": 0, "seconds_fwd": 0.1, "pairs": 100, "bytes_received_fwd": 0, "comm_hidden_fwd": null}]}'
FAKE
expect_exit 1 "scaling.sh whose second job fails" -- env LONGCTX_BUILD="$OUT/fake" RESULTS="$OUT/res_fail" bash "$SCALING"
expect_in "$OUT/stderr" "the 4-rank job at N = 65536 failed:" "says which job failed"
expect_in "$OUT/stdout" "^  \[longctx warn r0\] fake warning of the first job$" "... and what the jobs before it said"
[ "$(tail -1 "$OUT/res_fail/run.txt" 2>&1)" = "status: failed: the 4-rank job at N = 65536 failed (exit 1)" ] &&
  pass "... and run.txt says the study failed, and where" || fail "run.txt ends: $(tail -1 "$OUT/res_fail/run.txt" 2>&1)"
finish
