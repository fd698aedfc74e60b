#!/usr/bin/env bash
# longctx info, --version, --help, exit codes and option precedence (interfaces.md).
LONGCTX=$1
source "$(dirname "$0")/lib.sh"

expect_exit 0 "info on 3 ranks" -- "${MPIRUN[@]}" -np 3 "$LONGCTX" info
[ "$(grep -c '^rank ' "$OUT/stdout")" -eq 3 ] && pass "three rank lines" || fail "wanted 3 rank lines"
for r in 0 1 2; do expect_in "$OUT/stdout" "^rank $r/3 .*launcher Open MPI" "rank $r line names Open MPI"; done
expect_in "$OUT/stderr" "resolved config" "rank 0 prints the resolved config"
[ "$(grep -c 'resolved config' "$OUT/stderr")" -eq 1 ] && pass "only rank 0 prints it" || fail "config printed more than once"

expect_exit 0 "info without a launcher" -- env -u OMPI_COMM_WORLD_SIZE -u OMP_NUM_THREADS "$LONGCTX" info --quiet
expect_in "$OUT/stdout" "^rank 0/1 .*launcher none" "single process says launcher none"
# Each line says the rank's OpenMP threads and its CPUs; ranks that share CPUs with more threads than there
# are CPUs are warned about (before: neither).
cpus=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
expect_in "$OUT/stdout" "^rank 0/1 .*  threads $cpus on $cpus CPU\(s\)$" "... and its threads: all $cpus CPU(s), alone"
# An OMP_NUM_THREADS OpenMP ignores is said, and each rank takes its share as without it (before: silence
# from longctx, and libgomp's thread per CPU on every rank).
expect_exit 0 "info, 2 ranks with OMP_NUM_THREADS=abc" -- "${MPIRUN[@]}" -x OMP_NUM_THREADS=abc -np 2 "$LONGCTX" info --quiet
expect_in "$OUT/stderr" "^\[longctx warn r1\] OMP_NUM_THREADS='abc' is no positive whole number, which OpenMP ignores: this rank takes its share of the CPUs" \
  "... is warned about"
[ "$(grep -c "  threads $(( cpus / 2 > 1 ? cpus / 2 : 1 )) on $cpus CPU(s)$" "$OUT/stdout")" -eq 2 ] &&
  pass "... each takes its share of the CPUs" || fail "lines: $(cat "$OUT/stdout")"
# One past --threads' limit is cut to it, saying so (before: libgomp's 276447231 threads a rank, taken).
expect_exit 0 "OMP_NUM_THREADS=99999999999999" -- env OMP_NUM_THREADS=99999999999999 "$LONGCTX" info --quiet
expect_in "$OUT/stdout" "  threads 1024 on " "... runs 1024 threads"
expect_in "$OUT/stderr" "OMP_NUM_THREADS='99999999999999' asks [0-9]+ threads of each rank, more than the 1024 --threads allows" \
  "... and says why"
# Its count as written (before: libgomp's int of 4294967297, 1, run without a word), and past unsigned long
# one libgomp ignores, as 'abc' (before: taken, and each rank ran a thread per CPU).
expect_exit 0 "OMP_NUM_THREADS=4294967297" -- env OMP_NUM_THREADS=4294967297 "$LONGCTX" info --quiet
expect_in "$OUT/stderr" "OMP_NUM_THREADS='4294967297' asks 4294967297 threads of each rank, more than the 1024" "... is cut to 1024, said"
for many in 99999999999999999999 18446744073709551615; do
  expect_exit 0 "OMP_NUM_THREADS=$many" -- env OMP_NUM_THREADS=$many "$LONGCTX" info --quiet
  expect_in "$OUT/stderr" "OMP_NUM_THREADS='$many' is no positive whole number, which OpenMP ignores" "... is ignored, said"
done
expect_in "$OUT/stdout" "  threads $cpus on $cpus CPU\(s\)$" "... and the rank takes its share"
# OMP_THREAD_LIMIT caps what runs, so the count says it (before: threads $cpus printed, and planned for).
expect_exit 0 "OMP_THREAD_LIMIT=1" -- env OMP_THREAD_LIMIT=1 "$LONGCTX" info --quiet
expect_in "$OUT/stdout" "  threads 1 on $cpus CPU\(s\)$" "... info says 1 thread"
expect_exit 0 "OMP_THREAD_LIMIT=1 --threads 2 (bench attention)" -- env OMP_THREAD_LIMIT=1 "$LONGCTX" bench attention --quiet \
  --seq-len 256 --heads 1 --head-dim 8 --segment-lengths 64 --dilation-rates 1 --iters 1 --warmup 0 --threads 2 --json
expect_in "$OUT/stderr" "--threads 2 asks 2 threads of each rank, but OMP_THREAD_LIMIT=1 caps OpenMP at 1" "... --threads past it is said"
[ "$(grep -c "threads of each rank" "$OUT/stderr")" = 1 ] && pass "... once" || fail "said: $(grep "threads of each" "$OUT/stderr")"
expect_in "$OUT/stdout" "\"threads\": 1," "... and bench counts 1"
# The start-up's timeout is not LONGCTX_COMM_TIMEOUT, which --comm-timeout overrides (before: a tiny one in
# the environment ended the job at start-up, whatever the command line said).
expect_exit 0 "LONGCTX_COMM_TIMEOUT=0.000001 under --comm-timeout 600, 2 ranks" -- env LONGCTX_COMM_TIMEOUT=0.000001 \
  "${MPIRUN[@]}" -x LONGCTX_COMM_TIMEOUT -np 2 "$LONGCTX" info --quiet --comm-timeout 600
# Past --threads' limit and OMP_THREAD_LIMIT: said once, with the count as written (before: "asks 1024").
expect_exit 0 "OMP_THREAD_LIMIT=3 OMP_NUM_THREADS=2000" -- env OMP_THREAD_LIMIT=3 OMP_NUM_THREADS=2000 "$LONGCTX" info --quiet
expect_in "$OUT/stderr" "OMP_NUM_THREADS='2000' asks 2000 threads of each rank, but OMP_THREAD_LIMIT=3 caps OpenMP at 3: this rank runs 3$" \
  "... says 2000 and what runs"
[ "$(grep -c "threads of each rank" "$OUT/stderr")" = 1 ] && pass "... once" || fail "said: $(grep "threads of each" "$OUT/stderr")"
expect_in "$OUT/stdout" "  threads 3 on $cpus CPU\(s\)$" "... and info says 3"
# A '+' before a count is what libgomp's strtoul reads, so OpenMP takes it (before: called invalid, and the
# rank ran its share, not 4); '+' alone it ignores.
expect_exit 0 "OMP_NUM_THREADS=' +4, +1'" -- env "OMP_NUM_THREADS= +4, +1" "$LONGCTX" info --quiet
grep -q "OMP_NUM_THREADS=' +4, +1'" "$OUT/stderr" && fail "warned about OMP_NUM_THREADS=' +4, +1'" || pass "... taken as it is"
expect_in "$OUT/stdout" "  threads 4 on $cpus CPU\(s\)$" "... and runs 4"
expect_exit 0 "OMP_NUM_THREADS=+" -- env OMP_NUM_THREADS=+ "$LONGCTX" info --quiet
expect_in "$OUT/stderr" "OMP_NUM_THREADS='\+' is no positive whole number, which OpenMP ignores" "... is ignored, said"
expect_exit 0 "OMP_NUM_THREADS=2,1 (a level each) is taken" -- env OMP_NUM_THREADS=2,1 "$LONGCTX" info --quiet
grep -q "OMP_NUM_THREADS" "$OUT/stderr" && fail "warned about OMP_NUM_THREADS=2,1" || pass "... without a word"
expect_exit 0 "info, 2 ranks with OMP_NUM_THREADS=$cpus each" -- "${MPIRUN[@]}" -x OMP_NUM_THREADS=$cpus -np 2 "$LONGCTX" info --quiet
[ "$(grep -c "  threads $cpus on $cpus CPU(s)$" "$OUT/stdout")" -eq 2 ] && pass "... each says $cpus thread(s)" || fail "lines: $(cat "$OUT/stdout")"
expect_in "$OUT/stderr" "^\[longctx warn r0\] 2 rank\(s\) on .* run $((2 * cpus)) OpenMP threads on $cpus CPU\(s\): they take turns.* thread\(s\) \(OMP_NUM_THREADS\)$" \
  "... and are warned about, with no option info does not have (it said --threads)"

# srun started 2 tasks but each one is alone in MPI: the classic missing-PMI mistake.
expect_exit 2 "srun without PMI" -- env SLURM_JOB_ID=1 SLURM_STEP_ID=0 SLURM_PROCID=0 SLURM_STEP_NUM_TASKS=2 SLURM_NTASKS=2 "$LONGCTX" info
expect_in "$OUT/stderr" "srun without PMI" "the error explains srun without PMI"
[ ! -s "$OUT/stdout" ] && pass "nothing printed to stdout" || fail "stdout not empty on usage error"

# A launcher's task count that is no whole number is refused, naming it (before: taken as unknown, exit 0).
expect_exit 2 "srun's SLURM_NTASKS=4abc" -- env SLURM_JOB_ID=1 SLURM_STEP_ID=0 SLURM_PROCID=0 SLURM_NTASKS=4abc "$LONGCTX" info
expect_in "$OUT/stderr" "Slurm's SLURM_NTASKS='4abc' is no whole number of tasks or rank" "... names the variable and its value"

# --help or --version on some ranks only, a command on the others: exit 2 naming them (before: MPI_ERR_TRUNCATE
# at 2 ranks, a hang at 3).
expect_exit 2 "--help on rank 1 only" -- timeout 120 "${MPIRUN[@]}" -np 1 "$LONGCTX" info --quiet : -np 1 "$LONGCTX" info --quiet --help
expect_in "$OUT/stderr" "rank\(s\) 1 were not asked for what rank 0 was \(a command\)" "... rank 0 names rank 1"
expect_in "$OUT/stderr" "error on rank 1 of 2 \(host [^)]*\): asked for --help, rank 0 for a command" "... rank 1 says what it was asked"
expect_exit 2 "--version on rank 0, a command on ranks 1, 2" -- timeout 120 "${MPIRUN[@]}" -np 1 "$LONGCTX" --version : -np 2 "$LONGCTX" info --quiet
expect_in "$OUT/stderr" "rank\(s\) 1, 2 were not asked for what rank 0 was \(--version\)" "... rank 0 names ranks 1 and 2"

# One process is fine under Slurm: the batch script itself (SLURM_NTASKS is the job's, no step) and srun -n 1.
expect_exit 0 "longctx in the batch script of a 4-task job" -- env SLURM_JOB_ID=1 SLURM_PROCID=0 SLURM_NTASKS=4 "$LONGCTX" info --quiet
expect_in "$OUT/stdout" "^rank 0/1 .*launcher Slurm" "batch script: one rank under Slurm"
expect_exit 0 "srun -n 1 without PMI" -- env SLURM_JOB_ID=1 SLURM_STEP_ID=0 SLURM_PROCID=0 SLURM_STEP_NUM_TASKS=1 "$LONGCTX" info --quiet
# ... with what Open MPI 4.1 takes for an srun step that gave it no PMIx (SLURM_JOBID, SLURM_NODELIST and
# SLURM_STEP_ID; before, it refused to start, exit 1); also under srun --mpi=pmi2, which it cannot read.
STEP=(SLURM_JOB_ID=1 SLURM_JOBID=1 SLURM_NODELIST=localhost SLURM_STEP_ID=0 SLURM_STEPID=0 SLURM_PROCID=0 SLURM_STEP_NUM_TASKS=1)
expect_exit 0 "srun -n 1 without PMI, Open MPI's view of a step" -- env "${STEP[@]}" "$LONGCTX" info --quiet
expect_in "$OUT/stdout" "^rank 0/1 .*launcher Slurm" "... one rank under Slurm"
expect_exit 0 "srun -n 1 --mpi=pmi2" -- env "${STEP[@]}" PMI_FD=99 PMI_RANK=0 PMI_SIZE=1 "$LONGCTX" info --quiet
# MPICH's mpiexec inside that step (srun --pty bash, then mpiexec -n 4): its PMI_SIZE is not the step's, so
# Hydra is the launcher, refused before MPI_Init (before: each of its tasks ran alone, exit 0).
expect_exit 2 "Hydra's mpiexec inside a one-task srun step" -- env "${STEP[@]}" PMI_RANK=1 PMI_SIZE=4 "$LONGCTX" info --quiet
expect_in "$OUT/stderr" "an MPICH-style mpiexec \(PMI_SIZE=4\) started this task" "... says so"

expect_exit 2 "unknown option" -- "$LONGCTX" info --no-such-option
expect_in "$OUT/stderr" "no-such-option" "unknown option is named"
expect_in "$OUT/stderr" "allowed: .*--comm-timeout" "allowed options are listed"
expect_exit 2 "unknown option on 2 ranks" -- "${MPIRUN[@]}" -np 2 "$LONGCTX" info --bogus
expect_exit 2 "bad value" -- "$LONGCTX" info --comm-timeout soon
expect_in "$OUT/stderr" "comm-timeout" "bad value names the option"
expect_exit 2 "missing value" -- "$LONGCTX" info --comm-timeout
expect_exit 2 "an option's prefix is not the option" -- "$LONGCTX" info --comm 5
expect_exit 2 "--comm-timeout 0" -- "$LONGCTX" info --comm-timeout 0
expect_in "$OUT/stderr" "comm-timeout: must be a positive" "a timeout of 0 is refused"
expect_exit 2 "--comm-timeout nan (would never time out)" -- "$LONGCTX" info --comm-timeout nan
expect_exit 2 "a word after a command that takes none" -- "$LONGCTX" info extra
expect_in "$OUT/stderr" "unexpected argument 'extra' \(it takes options only, each starting with --\)" "names the word"
expect_exit 2 "words past a command's one path" -- "$LONGCTX" ckpt inspect a b c
expect_in "$OUT/stderr" "unexpected arguments 'b', 'c' \(it takes one FILE\|DIR besides its options\)" "names them"
expect_exit 2 "--version with a word after it" -- "$LONGCTX" --version extra
expect_in "$OUT/stderr" "--version takes nothing after it \(got 'extra'" "says so"
expect_exit 2 "unknown command" -- "$LONGCTX" frobnicate
expect_exit 2 "no command" -- "$LONGCTX"
expect_exit 2 "a command group without its subcommand" -- "$LONGCTX" bench
expect_in "$OUT/stderr" "needs a subcommand: bench attention, bench comm" "names the subcommands"
# A mistyped subcommand is not a missing one (before: "'ckpt' needs a subcommand").
expect_exit 2 "a mistyped subcommand" -- "$LONGCTX" ckpt verfy somewhere
expect_in "$OUT/stderr" "unknown command 'ckpt verfy'; did you mean 'ckpt verify'\? \('ckpt' has: ckpt inspect, ckpt verify\)" \
  "says so, with the nearest"
# A mistyped command gets the nearest too (before: the list alone).
expect_exit 2 "a mistyped command" -- "$LONGCTX" atend --input x.h5
expect_in "$OUT/stderr" "unknown command 'atend'; did you mean 'attend'\? commands: info, attend," "says so, with the nearest"
expect_exit 2 "a mistyped command group" -- "$LONGCTX" ckp inspect x
expect_in "$OUT/stderr" "unknown command 'ckp inspect'; did you mean 'ckpt inspect'\?$" "... and of a group and its command"
expect_exit 2 "a mistyped command group alone" -- "$LONGCTX" ckp
expect_in "$OUT/stderr" "unknown command 'ckp'; did you mean 'ckpt'\?" "... and of a group alone"
# An option before the command (before: "unknown command '--quiet'").
expect_exit 2 "--quiet before the command" -- "$LONGCTX" --quiet bench attention
expect_in "$OUT/stderr" "'--quiet' before the command: options go after it \(longctx bench attention --quiet \.\.\." "says where it goes"
# Words where options go: what they may have been meant as (before: that it takes options only).
expect_exit 2 "attend with its files as words" -- "$LONGCTX" attend in.h5 out.h5 --segment-lengths 8 --dilation-rates 1
expect_in "$OUT/stderr" "unexpected arguments 'in.h5', 'out.h5' \(it takes options only, each starting with --; did you mean --input in.h5 --output out.h5\?\)" \
  "... the required options, in order"
expect_exit 2 "train passkey.ini" -- "$LONGCTX" train passkey.ini
expect_in "$OUT/stderr" "did you mean --config passkey.ini\?" "... a .ini file: --config"
# Other tools' version flags point to ours (before: "'-V' before the command: options go after it").
for flag in -V -v version; do
  expect_exit 2 "longctx $flag" -- "$LONGCTX" $flag
  expect_in "$OUT/stderr" "'$flag' is no option or command of longctx; its version: longctx --version" "... points to --version"
done
expect_exit 2 "a word like no command" -- "$LONGCTX" xyz
expect_in "$OUT/stderr" "unknown command 'xyz'; commands: info," "... none where none is near"
# Integers are plain digits: Boost took '+3' (parse_size, for K/M/G options, did not).
expect_exit 2 "--iters +3" -- "$LONGCTX" bench comm --iters +3 --bytes 1K --quiet
expect_in "$OUT/stderr" "--iters: '\+3' is not an integer in plain digits" "refuses the '+'"
expect_exit 2 "LONGCTX_SEED=+1" -- env LONGCTX_SEED=+1 "$LONGCTX" bench attention --quiet
expect_in "$OUT/stderr" "--seed: '\+1' is not an integer in plain digits .*from environment variable LONGCTX_SEED" "names the variable"
expect_exit 0 "data import --help" -- "$LONGCTX" data import --help
grep -qE -- "--[a-z.-]+ <- LONGCTX_[A-Z_]+;" "$OUT/stdout" && ! grep -qE -- "--(text|ids) <- " "$OUT/stdout" &&
  pass "its environment example is not a list option (LONGCTX_TEXT takes one file)" ||
  fail "environment example of data import: $(grep -- ' <- LONGCTX_' "$OUT/stdout" | head -1)"
expect_exit 2 "a group followed by a path" -- "$LONGCTX" ckpt runs/ck
expect_in "$OUT/stderr" "'ckpt' needs a subcommand: ckpt inspect, ckpt verify \('runs/ck' is none of them\)" "a missing subcommand"
expect_exit 0 "help COMMAND" -- "$LONGCTX" help attend
expect_in "$OUT/stdout" "usage: longctx attend" "help attend is attend --help"
for twice in "help --help" "--help --help" "-h -h" "help help"; do  # these recursed until the stack overflowed
  expect_exit 0 "longctx $twice" -- "$LONGCTX" $twice
  expect_in "$OUT/stdout" "^commands:" "longctx $twice is the top help"
done
expect_exit 0 "--help COMMAND" -- "$LONGCTX" --help bench attention
expect_in "$OUT/stdout" "usage: longctx bench attention" "--help bench attention is bench attention --help"

expect_exit 0 "--version" -- "$LONGCTX" --version
expect_in "$OUT/stdout" "^longctx [0-9]+\.[0-9]+\.[0-9]+ \(git ([0-9a-f]{12}(-dirty)?|unknown)," "version and git hash"
expect_in "$OUT/stdout" "backends: .*cpu" "backends listed"
expect_in "$OUT/stdout" "^MPI: Open MPI" "MPI version"
expect_in "$OUT/stdout" "^HDF5: 1\." "HDF5 version"
expect_exit 0 "--help" -- "$LONGCTX" --help
expect_in "$OUT/stdout" "info" "top help lists info"
# interfaces.md: `longctx --help` lists every option with its default (before: the commands only).
expect_in "$OUT/stdout" "--comm-timeout arg \(=600\)" "top help lists the options every command takes, with defaults"
expect_in "$OUT/stdout" "then LONGCTX_\* environment variables" "... and where options come from"
expect_exit 0 "ckpt --help" -- "$LONGCTX" ckpt --help
expect_in "$OUT/stdout" "ckpt verify" "a command group's help lists its subcommands"
grep -q "train " "$OUT/stdout" && fail "ckpt --help lists other commands" || pass "and only those"
expect_exit 0 "help bench" -- "$LONGCTX" help bench
expect_in "$OUT/stdout" "bench comm" "help bench lists bench comm"
# A group's help lists its commands' options too (before: only those every command takes).
expect_in "$OUT/stdout" "^options of longctx bench attention:" "... and the options of bench attention"
expect_in "$OUT/stdout" "^  --seq-len arg \(=" "... with their defaults"
expect_in "$OUT/stdout" "^options of longctx bench comm:" "... and of bench comm"
# interfaces.md: `longctx SUB --help` lists every option with its default. Boost shows none for on/off
# options and options without one (before: `--causal`, `--report arg` bare): (=off), (unset), (required).
for command in info attend "bench attention" "bench comm" train eval "ckpt inspect" "ckpt verify" "data import" \
  "data inspect" "data verify"; do
  # shellcheck disable=SC2086  # the command's words
  "$LONGCTX" $command --help >"$OUT/help" 2>&1
  awk '/^options/ {listed = 1; next} /^$/ {listed = 0} listed && /^  -/' "$OUT/help" >"$OUT/listed"
  bare=$(grep -vE '^  (--[a-z0-9_.-]+ (arg )?\((=[^)]*|unset|required)\)|-h \[ --help \])' "$OUT/listed" | head -3)
  [ "$(wc -l <"$OUT/listed")" -ge 4 ] && [ -z "$bare" ] &&
    pass "$command --help: every option ($(wc -l <"$OUT/listed")) shows its default, (unset) or (required)" ||
    fail "$command --help: $(wc -l <"$OUT/listed") options found; without a default shown: $bare"
done
expect_exit 0 "attend --help" -- "$LONGCTX" attend --help
expect_in "$OUT/stdout" "^  --causal \(=off\) " "... an on/off option: (=off)"
expect_in "$OUT/stdout" "^  --report arg \(unset\) " "... one without a default: (unset)"
expect_in "$OUT/stdout" "^  --input arg \(required\) " "... one that must be given: (required)"
expect_exit 0 "ckpt verify --help" -- "$LONGCTX" ckpt verify --help
expect_in "$OUT/stdout" "^  --path arg \(required\) " "... the positional FILE|DIR: (required)"
expect_exit 0 "info --help" -- "$LONGCTX" info --help
expect_in "$OUT/stdout" "comm-timeout.*600" "sub help shows defaults"
expect_exit 0 "attend --help without its required options" -- "$LONGCTX" attend --help
expect_in "$OUT/stdout" "--dtype" "attend --help lists --dtype"
expect_in "$OUT/stdout" "--comm .*auto" "attend --help lists --comm and its default"
expect_in "$OUT/stdout" "^Required: --input, --output, --segment-lengths, --dilation-rates" "attend --help names its required options"
expect_in "$OUT/stdout" "--input <- LONGCTX_INPUT" "the help's environment example is one of attend's options"
expect_exit 0 "train --help" -- "$LONGCTX" train --help

# Precedence: command line > config file > environment > default.
printf 'comm-timeout = 30\n' >"$OUT/c.ini"
expect_exit 0 "env only" -- env LONGCTX_COMM_TIMEOUT=20 "$LONGCTX" info
expect_in "$OUT/stderr" "comm-timeout = 20  \[env LONGCTX_COMM_TIMEOUT\]" "environment applies"
# An on/off option turned off there says so too (before: "[default]").
expect_exit 0 "LONGCTX_QUIET=0" -- env LONGCTX_QUIET=0 "$LONGCTX" info
expect_in "$OUT/stderr" "quiet = false  \[env LONGCTX_QUIET\]" "... an off from the environment is said to come from there"
expect_exit 0 "config beats env" -- env LONGCTX_COMM_TIMEOUT=20 "$LONGCTX" info --config "$OUT/c.ini"
expect_in "$OUT/stderr" "comm-timeout = 30  \[config" "config file beats environment"
expect_exit 0 "cli beats config" -- env LONGCTX_COMM_TIMEOUT=20 "$LONGCTX" info --config "$OUT/c.ini" --comm-timeout 40
expect_in "$OUT/stderr" "comm-timeout = 40  \[command line\]" "command line beats config"
expect_exit 0 "default" -- "$LONGCTX" info
expect_in "$OUT/stderr" "comm-timeout = 600  \[default\]" "default is labelled"
printf 'no-such-key = 1\n' >"$OUT/bad.ini"
expect_exit 2 "unknown key in config" -- "$LONGCTX" info --config "$OUT/bad.ini"
expect_in "$OUT/stderr" "no-such-key" "unknown config key named"
printf '[model]\nlayers = 2\n' >"$OUT/train.ini"
expect_exit 0 "a train config exported for info" -- env LONGCTX_CONFIG="$OUT/train.ini" "$LONGCTX" info --quiet
printf '[model]\nlayer = 2\n' >"$OUT/typo.ini"
expect_exit 2 "a key no command has" -- "$LONGCTX" info --config "$OUT/typo.ini"
expect_in "$OUT/stderr" "unknown option 'model.layer'.*from config" "names the key and the file"
expect_exit 2 "missing config file" -- "$LONGCTX" info --config "$OUT/nope.ini"
expect_exit 2 "a directory as config file" -- "$LONGCTX" info --config "$OUT"
expect_in "$OUT/stderr" "is not a regular file" "says the config is no file"
printf '; a comment, INI style
# another
comm-timeout = 31
' >"$OUT/semi.ini"
expect_exit 0 "; comments in a config file" -- "$LONGCTX" info --config "$OUT/semi.ini"
expect_in "$OUT/stderr" "comm-timeout = 31  \[config" "the value after the comments applies"

# On/off options from the environment: 1/true/yes/on set them, 0/false/no/off leave them off.
for value in 1 true YES on; do
  expect_exit 0 "LONGCTX_QUIET=$value" -- env LONGCTX_QUIET=$value "$LONGCTX" info
  grep -q "resolved config" "$OUT/stderr" && fail "LONGCTX_QUIET=$value still printed the config" || pass "LONGCTX_QUIET=$value is quiet"
done
expect_exit 0 "LONGCTX_QUIET=0" -- env LONGCTX_QUIET=0 "$LONGCTX" info
expect_in "$OUT/stderr" "resolved config" "LONGCTX_QUIET=0 leaves it off"
expect_exit 2 "LONGCTX_QUIET=maybe" -- env LONGCTX_QUIET=maybe "$LONGCTX" info
expect_in "$OUT/stderr" "LONGCTX_QUIET='maybe'" "the error names the variable and its value"
# --X=false turns off an on/off option that the environment or a config file turned on; --X=true is --X.
expect_exit 0 "--quiet=false beats LONGCTX_QUIET=1" -- env LONGCTX_QUIET=1 "$LONGCTX" info --quiet=false
expect_in "$OUT/stderr" "quiet = false  \[command line\]" "--quiet=false wins over the environment"
printf 'quiet = true\n' > "$OUT/quiet.ini"
expect_exit 0 "--quiet=off beats the config file" -- "$LONGCTX" info --config "$OUT/quiet.ini" --quiet=off
expect_in "$OUT/stderr" "quiet = false  \[command line\]" "--quiet=off wins over the config file"
expect_exit 0 "--quiet=yes" -- "$LONGCTX" info --quiet=yes
grep -q "resolved config" "$OUT/stderr" && fail "--quiet=yes printed the config" || pass "--quiet=yes is --quiet"
expect_exit 2 "--quiet=maybe" -- "$LONGCTX" info --quiet=maybe
expect_in "$OUT/stderr" "--quiet='maybe'" "the error names the option and its value"
expect_exit 2 "a bad value from the environment" -- env LONGCTX_COMM_TIMEOUT=soon "$LONGCTX" info
expect_in "$OUT/stderr" "environment variable LONGCTX_COMM_TIMEOUT='soon'" "the error names where the value came from"
expect_exit 0 "an empty variable is unset" -- env LONGCTX_COMM_TIMEOUT= LONGCTX_CONFIG= "$LONGCTX" info
expect_in "$OUT/stderr" "comm-timeout = 600  \[default\]" "empty LONGCTX_COMM_TIMEOUT leaves the default"

# Control characters from the user's input (an ESC or CR in a file name) reach stderr as \xNN, in errors,
# warnings and the resolved config alike (before: raw, so a name could clear the terminal or fake a line).
bad=$'bad\x1b[2Jname\rX.h5'
expect_exit 3 "attend with an ESC and a CR in the input's name" -- "$LONGCTX" attend --input "$bad" --output "$OUT/o.h5" \
  --segment-lengths 4 --dilation-rates 1
expect_in "$OUT/stderr" 'bad\\x1b\[2Jname\\x0dX\.h5: no such file' "the error escapes them"
grep -q $'[\x1b\r]' "$OUT/stderr" && fail "a raw ESC or CR reached stderr" || pass "no raw ESC or CR on stderr"
expect_exit 3 "attend with a line feed in the input's name" -- "$LONGCTX" attend --input $'x\n[longctx info r0] done: fake.h5' \
  --output "$OUT/o.h5" --segment-lengths 4 --dilation-rates 1
grep -q '^\[longctx info r0\] done: fake' "$OUT/stderr" && fail "the name faked a line" ||
  expect_in "$OUT/stderr" 'x\\x0a\[longctx info r0\] done: fake\.h5: no such file' "a line feed is escaped too"
expect_exit 2 "no command: the help, then a one-line error" -- "$LONGCTX"
[ "$(tail -1 "$OUT/stderr")" = "longctx: error: no command given (the commands are above)" ] && grep -q "attend" "$OUT/stderr" &&
  pass "... in that order" || fail "no command: $(tail -2 "$OUT/stderr")"
expect_exit 3 "ckpt inspect of such a name" -- "$LONGCTX" ckpt inspect "$bad" --quiet
grep -q $'[\x1b\r]' "$OUT/stderr" && fail "ckpt: a raw ESC or CR reached stderr" || pass "ckpt: escaped"
log=$'log\x1b[2J.jsonl'  # (a CR is refused in a config value: a line break)
printf '{"step": 1}\n' >"$OUT/$log"
expect_exit 0 "train logging to an ESC's name, which holds a line" -- "$LONGCTX" train --quiet --model.layers 1 --model.dim 16 \
  --model.heads 2 --model.mlp_hidden 16 --model.segment_lengths 16,32 --model.dilation_rates 1,2 --data.seq_len 32 \
  --train.steps 1 --log.jsonl "$OUT/$log"
expect_in "$OUT/stderr" 'warn r0\] log.jsonl=.*log\\x1b\[2J\.jsonl already holds 1 line' "a warning escapes it"
grep -q $'[\x1b\r]' "$OUT/stderr" && fail "train: a raw ESC or CR reached stderr" || pass "train: escaped"

# A command's result that could not be written to standard output fails it, saying so (before: exit 0, the
# result lost without a word): a full disk (/dev/full), and standard output closed at the start.
expect_exit 1 "info > /dev/full" -- bash -c "'$LONGCTX' info --quiet > /dev/full"
expect_in "$OUT/stderr" "^longctx: error: what this rank printed to standard output is lost: (No space left on device|a write to it failed)$" "... says why"
# Closed at the start, it is refused before any work (before: found at the end, after the whole run).
expect_exit 2 "bench attention --json with standard output closed" -- bash -c "'$LONGCTX' bench attention --quiet \
  --seq-len 256 --heads 1 --head-dim 8 --segment-lengths 128 --dilation-rates 1 --iters 1 --warmup 0 --json >&-"
expect_in "$OUT/stderr" "^longctx: error: standard output is closed \(\`>&-\`\): longctx bench attention prints its result there" \
  "... says it is closed"
grep -q "iteration" "$OUT/stderr" && fail "... but ran first" || pass "... before any work"
# --version and --help likewise (before: exit 1, "lost").
expect_exit 2 "--version with standard output closed" -- bash -c "'$LONGCTX' --version >&-"
expect_in "$OUT/stderr" "^longctx: error: standard output is closed \(\`>&-\`\): --version prints there" "... says it is closed"
expect_exit 2 "info --help with standard output closed" -- bash -c "'$LONGCTX' info --help >&-"
expect_in "$OUT/stderr" "^longctx: error: standard output is closed \(\`>&-\`\): --help prints there" "... says it is closed"
# A failure's report on standard output that is lost is said too (before: verify's exit 3 without a word).
printf 'not hdf5\n' >"$OUT/not_a_checkpoint.h5"
expect_exit 3 "ckpt verify of a damaged file > /dev/full" -- bash -c "'$LONGCTX' ckpt verify --quiet '$OUT/not_a_checkpoint.h5' \
  > /dev/full"
expect_in "$OUT/stderr" "^longctx: error: what this rank printed to standard output is lost: (No space left on device|a write to it failed)$" \
  "... says its report is lost"
# train's and data import's results are their files: their progress lines lost there change nothing (a
# train stopped on a signal still exits 75).
printf 'some text\n' >"$OUT/some.txt"
expect_exit 0 "data import with standard output closed" -- bash -c "'$LONGCTX' data import --quiet --text '$OUT/some.txt' \
  --out '$OUT/some.h5' >&-"
expect_exit 0 "train with standard output closed" -- bash -c "'$LONGCTX' train --quiet --model.layers 1 --model.dim 16 \
  --model.heads 2 --model.mlp_hidden 16 --model.segment_lengths 16,32 --model.dilation_rates 1,2 --data.seq_len 32 \
  --train.steps 1 >&-"
/usr/bin/python3 -c "
import h5py, numpy as np
with h5py.File('$OUT/small_qkv.h5', 'w') as f: f['q'] = f['k'] = f['v'] = np.ones((8, 1, 4), 'f4')" || fail "no small_qkv.h5"
expect_exit 0 "attend with standard output closed" -- bash -c "'$LONGCTX' attend --quiet --input '$OUT/small_qkv.h5' \
  --output '$OUT/small_o.h5' --segment-lengths 8 --dilation-rates 1 >&-"

finish
