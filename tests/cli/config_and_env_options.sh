#!/usr/bin/env bash
# Where options come from, and what each source refuses: the command line, config files (comments, empty
# values, keys of other commands) and LONGCTX_* variables (interfaces.md; README, "Running").
LONGCTX=$1
source "$(dirname "$0")/lib.sh"

# An on/off option given twice is refused whatever its spelling, as any other option given twice is.
expect_exit 2 "--quiet --quiet" -- "$LONGCTX" info --quiet --quiet
expect_exit 2 "--quiet=1 --quiet=0" -- "$LONGCTX" info --quiet=1 --quiet=0
expect_in "$OUT/stderr" "--quiet: given twice on the command line \('--quiet=1', then '--quiet=0'\)" "names both"
[ ! -s "$OUT/stdout" ] && pass "and ran nothing" || fail "info ran with --quiet=1 --quiet=0"
expect_exit 2 "--quiet=0 --quiet" -- "$LONGCTX" info --quiet=0 --quiet
expect_in "$OUT/stderr" "given twice" "--quiet=0 --quiet is refused too"
# `--X true`, as other tools spell it, said "too many positional options" (or, for ckpt, took 'true' for FILE).
expect_exit 2 "--quiet true" -- "$LONGCTX" info --quiet true
expect_in "$OUT/stderr" "--quiet true: an on/off option takes a value only after '=' \(--quiet=true\)" "says how to write it"
expect_exit 2 "ckpt verify --quiet TRUE" -- "$LONGCTX" ckpt verify --quiet TRUE
expect_in "$OUT/stderr" "--quiet TRUE: an on/off option.*a positional argument spelled 'TRUE' goes after --" "not taken for FILE"
"$LONGCTX" info --quiet true 2>&1 | grep -q "positional argument" && fail "info, which takes none, spoke of a positional argument" ||
  pass "... and info, which takes no positional argument, does not speak of one"
expect_exit 0 "--quiet=0 alone" -- "$LONGCTX" info --quiet=0
expect_in "$OUT/stderr" "quiet = false  \[command line\]" "one --quiet=0 still works"

# config_case CODE NAME CONTENT PATTERN: `info --config` on a file holding CONTENT (printf format) exits
# CODE with PATTERN on stderr.
config_case() {
  local file="$OUT/case.ini"
  printf "$3" >"$file"
  expect_exit "$1" "$2" -- "$LONGCTX" info --config "$file"
  expect_in "$OUT/stderr" "$4" "$2: as meant"
}

# Config file comments: a line starting with # or ;, or the rest of a line from a # or ; after a blank.
# A # or ; right after other text is part of the value (Boost's reader cut at any #, and kept '; note').
config_case 0 "an inline ; comment" 'comm-timeout = 31   ; a note\n' "comm-timeout = 31  \[config"
config_case 0 "an inline # comment" '  # a comment\ncomm-timeout = 32\t# a note\n' "comm-timeout = 32  \[config"
printf 'path = %s/run#1;2.h5   # the checkpoint\n' "$OUT" >"$OUT/literal.ini"
expect_exit 3 "a # and ; inside a value" -- "$LONGCTX" ckpt inspect --config "$OUT/literal.ini"
expect_in "$OUT/stderr" "path = $OUT/run#1;2.h5  \[config" "they are part of the value"
config_case 2 "a # right after a number" 'comm-timeout = 30#x\n' "'30#x'.*comm-timeout.*case.ini line 1"

# A UTF-8 byte order mark (Windows editors) and \r\n line ends are read as any other file.
config_case 0 "a byte order mark and CRLF line ends" '\xEF\xBB\xBFcomm-timeout = 33\r\n[model]\r\nlayers = 2\r\n' \
  "comm-timeout = 33  \[config"
# A NUL byte is refused, naming the line (before: the value was cut there, and a file name ended at it).
config_case 2 "a NUL byte in a value" 'comm-timeout = 33\n[log]\njsonl = a\0b.jsonl\n' "case.ini line 3: holds a NUL byte"

# An empty value is an error for number and on/off options (Boost read 'quiet =' as on), naming the file
# and line; for a text option it is '' (train's data.path / log.jsonl / ..., as a checkpoint's /config has them).
config_case 2 "an on/off option with an empty value" 'comm-timeout = 34\nquiet =\n' "case.ini line 2: 'quiet' has no value"
[ ! -s "$OUT/stdout" ] && pass "and ran nothing" || fail "info ran with 'quiet ='"
config_case 2 "a value that is only a comment" 'comm-timeout =   # why\n' "case.ini line 1: 'comm-timeout' has no value"
config_case 2 "an on/off option with a bad value" 'quiet = maybe\n' "case.ini line 1: quiet='maybe': an on/off option takes"
config_case 2 "a key given twice" 'comm-timeout = 35\ncomm-timeout = 36\n' \
  "case.ini line 2: 'comm-timeout' given twice \(first on line 1\)"
config_case 2 "a line without =" 'comm-timeout\n' "case.ini line 1: 'comm-timeout' is not 'key = value'"
# --help names the options whose lines add up, where the command has any (before: "a list's lines add up" in
# every command's help, train's too, which has none).
expect_exit 0 "data import --help" -- "$LONGCTX" data import --help
expect_in "$OUT/stdout" "A key given twice is an error \(but for text and ids, whose lines add up\)" "... names text and ids"
expect_exit 0 "train --help" -- "$LONGCTX" train --help
expect_in "$OUT/stdout" "A key given twice is an error, and so is an empty" "... train: none"

# --help belongs on the command line: a help key in a file or LONGCTX_HELP (any value) made every run print
# help and exit 0, doing nothing.
for value in 1 0 false; do
  printf 'help = %s\n' "$value" >"$OUT/help.ini"
  expect_exit 2 "help = $value in a config file" -- "$LONGCTX" info --config "$OUT/help.ini"
  expect_in "$OUT/stderr" "help.ini line 1: 'help' belongs on the command line only" "names the file and line"
  expect_exit 2 "LONGCTX_HELP=$value" -- env LONGCTX_HELP=$value "$LONGCTX" info
  expect_in "$OUT/stderr" "environment variable LONGCTX_HELP='$value': help belongs on the command line only" \
    "names the variable"
  [ ! -s "$OUT/stdout" ] && pass "no help printed" || fail "LONGCTX_HELP=$value printed something"
done
expect_exit 0 "--help on the command line" -- "$LONGCTX" info --help
expect_in "$OUT/stdout" "usage: longctx info" "still prints help"

# A config file does not name another (that key was ignored); LONGCTX_CONFIG is how the environment gives
# --config, and an error about it says so.
printf 'comm-timeout = 37\n' >"$OUT/other.ini"
printf 'config = %s\n' "$OUT/other.ini" >"$OUT/include.ini"
expect_exit 2 "config = FILE in a config file" -- "$LONGCTX" info --config "$OUT/include.ini"
expect_in "$OUT/stderr" "include.ini line 1: 'config': config files do not include others" "is refused"
expect_exit 0 "LONGCTX_CONFIG names the config file" -- env LONGCTX_CONFIG="$OUT/other.ini" "$LONGCTX" info
expect_in "$OUT/stderr" "comm-timeout = 37  \[config" "and is read"
expect_exit 2 "LONGCTX_CONFIG naming no file" -- env LONGCTX_CONFIG="$OUT/nope.ini" "$LONGCTX" info
expect_in "$OUT/stderr" "environment variable LONGCTX_CONFIG: '$OUT/nope.ini' does not exist" "says it came from the environment"
expect_exit 2 "--config naming no file" -- "$LONGCTX" info --config "$OUT/nope.ini"
expect_in "$OUT/stderr" "error: --config: '$OUT/nope.ini' does not exist" "says it came from --config"
# --config= reads no file, as other file options get none: LONGCTX_CONFIG left out without unsetting it
# (before: "--config: '' does not exist", exit 2).
expect_exit 0 "--config= with LONGCTX_CONFIG set" -- env LONGCTX_CONFIG="$OUT/other.ini" "$LONGCTX" info --config=
expect_in "$OUT/stderr" "comm-timeout = 600  \[default\]" "... reads none"

# One file may serve several commands: keys only other commands have are skipped, but said, once, naming
# them and their commands; a top-level key that this command has under a section gets a guess.
printf 'seed = 42\nthreads = 1\n[model]\nlayers = 2\n' >"$OUT/train.ini"
expect_exit 2 "a train config with a top-level seed (train.steps 0 stops it)" -- \
  "$LONGCTX" train --config "$OUT/train.ini" --train.steps 0
expect_in "$OUT/stderr" "train.ini line 1: 'seed' ignored: an option of bench attention, not of 'longctx train'; did you mean \[train\] seed\?" \
  "a top-level seed in a train config: did you mean [train] seed?"
expect_in "$OUT/stderr" "train.ini line 2: 'threads' ignored: an option of attend, bench attention, eval, not of 'longctx train'; did you mean \[train\] threads\?" \
  "and threads: [train] threads"
printf 'seed = 42\nthreads = 1\nhead-dim = 32\ncomm-timeout = 38\n' >"$OUT/bench.ini"
expect_exit 0 "a bench attention config for info" -- "$LONGCTX" info --config "$OUT/bench.ini"
expect_in "$OUT/stderr" "bench.ini: keys ignored by 'longctx info' \(options of bench attention only\): seed, head-dim$" \
  "names the keys and their command"
expect_in "$OUT/stderr" "bench.ini: keys ignored by 'longctx info' \(options of attend, bench attention, eval only\): threads$" \
  "one line per set of commands"
expect_in "$OUT/stderr" "comm-timeout = 38  \[config" "the file's own keys apply"
expect_exit 0 "on 2 ranks" -- "${MPIRUN[@]}" -np 2 "$LONGCTX" info --config "$OUT/bench.ini" --quiet
[ "$(grep -c "keys ignored by 'longctx info' (options of bench attention only)" "$OUT/stderr")" -eq 1 ] &&
  pass "warned once, by rank 0" || fail "the warning is not printed exactly once"
# Exported for every command (LONGCTX_CONFIG), a file holds other commands' keys by design: no list of
# them on every run, only the likely mistakes.
expect_exit 0 "the same file as LONGCTX_CONFIG" -- env LONGCTX_CONFIG="$OUT/bench.ini" "$LONGCTX" info
grep -q "keys ignored" "$OUT/stderr" && fail "LONGCTX_CONFIG's other keys listed" || pass "no list of other commands' keys"
expect_in "$OUT/stderr" "comm-timeout = 38  \[config" "the file's own keys apply"

# A LONGCTX_* variable that is no option of any command and no known setting is warned about (it was
# ignored without a word), with the name it may have meant; documented settings and other commands'
# options are not.
# A sign on an unsigned option names where it came from.
expect_exit 2 "LONGCTX_SEED=-1" -- env LONGCTX_SEED=-1 "$LONGCTX" bench attention --quiet
expect_in "$OUT/stderr" "'-1' is not a non-negative integer \(from environment variable LONGCTX_SEED='-1', in 'longctx bench attention'" "names the variable"
printf 'seed = -1\n' >"$OUT/neg.ini"
expect_exit 2 "seed = -1 in a file" -- "$LONGCTX" bench attention --config "$OUT/neg.ini" --quiet
expect_in "$OUT/stderr" "'-1' is not a non-negative integer \(from config file .*neg.ini line 1, in" "names the file and line"
# A bad value says what the option takes: counts take digits only (K/M/G are for sizes), numbers a number.
expect_exit 2 "--train.steps 10K" -- "$LONGCTX" train --train.steps 10K --quiet
expect_in "$OUT/stderr" "^longctx: error: --train.steps: '10K' is not an integer: digits only; K, M, G suffixes are for the options whose --help says so \(from the command line, in 'longctx train'; see \`longctx train --help\`\)$" \
  "an integer, no suffix"
# ... without naming int64's range, which is not the option's (before: "from -9223372036854775808 to ...").
expect_exit 2 "--train.steps=0x10" -- "$LONGCTX" train --train.steps=0x10 --quiet
expect_in "$OUT/stderr" "--train.steps: '0x10' is not an integer: digits only" "0x10: not an integer"
grep -q "9223372036854775807" "$OUT/stderr" && fail "0x10: named int64's range" || pass "... and no type range"
printf '[train]\nsteps = 1e3\n' >"$OUT/steps.ini"
expect_exit 2 "steps = 1e3 in a file" -- "$LONGCTX" train --config "$OUT/steps.ini" --quiet
expect_in "$OUT/stderr" "--train.steps: '1e3' is not an integer: digits only; .* \(from config file .*steps.ini line 2, in" \
  "names the file and line"
# A length in tokens takes them as the lengths do (before: data.curriculum_min_span refused 1K).
expect_exit 2 "--data.curriculum_min_span 1.5K" -- "$LONGCTX" train --data.curriculum_min_span 1.5K --quiet
expect_in "$OUT/stderr" "--data.curriculum_min_span: '1.5K' is not an integer \(optionally with a K, M or G suffix\)" \
  "data.curriculum_min_span is a size: K/M/G"
expect_exit 0 "--data.curriculum_min_span 1K" -- "$LONGCTX" train --data.curriculum_min_span 1K --data.curriculum_steps 10 \
  --data.seq_len 2K --model.layers 1 --model.dim 16 --model.heads 2 --model.mlp_hidden 16 --model.segment_lengths 64,2K \
  --model.dilation_rates 1,32 --train.steps 1 --eval.every 0
expect_in "$OUT/stderr" "data.curriculum_min_span = 1K  \[command line\]" "... 1K is taken"
# `--X=` gives X an empty value, as `--X ''` does (before: Boost's "the argument should follow immediately
# after the equal sign", also for a text option where an empty value means "none").
expect_exit 2 "--train.steps=" -- "$LONGCTX" train --train.steps= --quiet
expect_in "$OUT/stderr" "--train.steps: '' is not an integer" "an empty value is not an integer"
expect_exit 0 "--log.jsonl= (none)" -- "$LONGCTX" train --log.jsonl= --train.steps 1 --data.seq_len 256 \
  --model.segment_lengths 64,256 --model.dilation_rates 1,2 --eval.sequences 1 --quiet
expect_exit 2 "--quiet= (an on/off option)" -- "$LONGCTX" info --quiet=
expect_in "$OUT/stderr" "an on/off option takes 1, true" "says what it takes"
expect_exit 2 "--train.threads 3000000000" -- "$LONGCTX" train --train.threads 3000000000 --quiet
expect_in "$OUT/stderr" "'--train.threads' is invalid: it takes an integer from -2147483648 to 2147483647 \(from the command line" \
  "out of range: says the range"
printf '[train]\nlr = 1e-3x\n' >"$OUT/lr.ini"
expect_exit 2 "lr = 1e-3x in a file" -- "$LONGCTX" train --config "$OUT/lr.ini" --quiet
expect_in "$OUT/stderr" "'(--)?train.lr' is invalid: it takes a number \(from config file .*lr.ini line 2," "a number, and where"
# A size or list error says where the value came from, as Boost's parse errors do.
printf 'seq-len = 1.5K\n' >"$OUT/size.ini"
expect_exit 2 "seq-len = 1.5K in a file" -- "$LONGCTX" bench attention --config "$OUT/size.ini" --quiet
expect_in "$OUT/stderr" "--seq-len: '1.5K' is not an integer.*\(from config file .*size.ini line 1\)$" "names the file and line"
expect_exit 2 "LONGCTX_MODEL_DILATION_RATES=1,x" -- env LONGCTX_MODEL_DILATION_RATES=1,x "$LONGCTX" train --quiet
expect_in "$OUT/stderr" "'x' is not an integer.*\(from environment variable LONGCTX_MODEL_DILATION_RATES\)$" "names the variable"
# A forgotten value: Boost took the next word, an option, as the value (a token file named --quiet, exit 0).
expect_exit 2 "--out --quiet (no value)" -- "$LONGCTX" data import --text "$OUT/lr.ini" --out --quiet
expect_in "$OUT/stderr" "--out has no value: the next word, '--quiet', is an option \(for a file of that name write \./--quiet\)" \
  "says the value is missing"
[ ! -e --quiet ] && [ ! -e ./--quiet ] && pass "no file named --quiet" || fail "a file named --quiet was written"
expect_exit 0 "--out=--dashed.h5 (a value given with =: meant)" -- "$LONGCTX" data import --quiet --text "$OUT/lr.ini" \
  --out=--dashed.h5
[ -e ./--dashed.h5 ] && pass "wrote ./--dashed.h5" || fail "no ./--dashed.h5"
rm -f ./--dashed.h5
expect_exit 2 "--text --out x.h5 (a list that swallowed --out)" -- "$LONGCTX" data import --text --out "$OUT/x.h5"
expect_in "$OUT/stderr" "--text has no value: the next word, '--out', is an option" "says --text has no value"
expect_exit 2 "LONGCTX_COMM_TIMEOUT=0" -- env LONGCTX_COMM_TIMEOUT=0 "$LONGCTX" bench attention --quiet
expect_in "$OUT/stderr" "--comm-timeout: must be a positive, finite number of seconds, got 0 \(from environment variable LONGCTX_COMM_TIMEOUT\)$" \
  "comm-timeout names the variable"
# Under a second: warned, where a sound job may end as stuck (before: no word, then "a rank is stuck or gone").
expect_exit 0 "--comm-timeout 0.25" -- "$LONGCTX" info --comm-timeout 0.25 --quiet
expect_in "$OUT/stderr" "--comm-timeout 0.25: under a second, an ordinary wait of a sound job" "warned"
expect_exit 0 "--comm-timeout 1" -- "$LONGCTX" info --comm-timeout 1 --quiet
! grep -q "under a second" "$OUT/stderr" && pass "... not at 1" || fail "warned at 1: $(cat "$OUT/stderr")"
expect_exit 2 "LONGCTX_DTYPE=fp8" -- env LONGCTX_DTYPE=fp8 "$LONGCTX" bench attention --quiet
expect_in "$OUT/stderr" "--dtype: 'fp8' is not a dtype; allowed: fp32, bf16, fp16 \(from environment variable LONGCTX_DTYPE\)$" \
  "dtype names the variable"
# So does a range check of train's, when it is about one key: one about two (beta1 from the file, beta2 from
# the command line) names no source rather than a wrong one.
printf '[train]\nbeta1 = 0.5\n' >"$OUT/beta.ini"
expect_exit 2 "beta2 = 1 on the command line, beta1 in a file" -- "$LONGCTX" train --config "$OUT/beta.ini" --train.beta2=1 --quiet
expect_in "$OUT/stderr" "train.beta1 / train.beta2 must be in \[0, 1\)$" "no source named"
printf '[train]\nlr = inf\n' >"$OUT/inf.ini"
expect_exit 2 "lr = inf in a file" -- "$LONGCTX" train --config "$OUT/inf.ini" --quiet
expect_in "$OUT/stderr" "train.lr must be a finite number > 0 \(from config file .*inf.ini line 2\)$" "names the file and line"
# Values the run's parts check, not the options' table, name their source too (before: no word of it).
printf '[data]\ntask = foo\n' >"$OUT/task.ini"
expect_exit 2 "data.task = foo in a file" -- "$LONGCTX" train --config "$OUT/task.ini" --quiet
expect_in "$OUT/stderr" "data.task=foo: allowed values are passkey, associative, file \(from config file .*task.ini line 2\)$" \
  "names the file and line"
printf 'output =\n' >"$OUT/empty_output.ini"
expect_exit 2 "attend: output = (empty) in a file" -- "$LONGCTX" attend --config "$OUT/empty_output.ini" --input x.h5 \
  --segment-lengths 8 --dilation-rates 1 --quiet
expect_in "$OUT/stderr" "--output: empty path: give a file name \(from config file .*empty_output.ini line 1\)$" \
  "names the file and line"
# With the line (a list's lines) also where the value is refused after parsing, and from the run's parts: the
# task's vocabulary, a layer to dump, data import's inputs (before: the file alone, or no source at all).
printf 'seq-len = 1024\nsegment-lengths = 256,512;x\n' >"$OUT/list_item.ini"
expect_exit 2 "segment-lengths = 256,512;x in a file" -- "$LONGCTX" bench attention --config "$OUT/list_item.ini" \
  --dilation-rates 1,2 --quiet
expect_in "$OUT/stderr" "--segment-lengths: '512;x' is not an integer.* \(from config file .*list_item.ini line 2\)$" \
  "names the file and line"
expect_exit 2 "LONGCTX_MODEL_VOCAB=10" -- env LONGCTX_MODEL_VOCAB=10 "$LONGCTX" train --quiet
expect_in "$OUT/stderr" "model.vocab=10: data.task=passkey needs >= 32 \(from environment variable LONGCTX_MODEL_VOCAB\)$" \
  "names the variable"
printf '[data]\nrecords = 0\n' >"$OUT/records.ini"
expect_exit 2 "[data] records = 0 in a file" -- "$LONGCTX" train --config "$OUT/records.ini" --data.task associative \
  --model.vocab 64 --quiet
expect_in "$OUT/stderr" "data.records=0: must be >= 1 \(from config file .*records.ini line 2\)$" "names the file and line"
printf '[dump]\nlayers = 5\n' >"$OUT/dump_layers.ini"
expect_exit 2 "[dump] layers = 5 in a file" -- "$LONGCTX" train --config "$OUT/dump_layers.ini" \
  --dump.activations "$OUT/never_dumped.h5" --quiet
expect_in "$OUT/stderr" "dump.layers: layer 5 outside \[0, model.layers=2\) \(from config file .*dump_layers.ini line 2\)$" \
  "names the file and line"
# Without dump.activations, a layer past the model's is said to have no effect, as a step past train.steps is
# (before: exit 2 for the layer alone; from the README audit).
expect_exit 0 "[dump] layers = 5 without dump.activations" -- "$LONGCTX" train --config "$OUT/dump_layers.ini" --quiet \
  --train.steps 1 --model.layers 1 --model.dim 16 --model.heads 2 --model.mlp_hidden 16 --data.seq_len 256 \
  --model.segment_lengths 64,256 --model.dilation_rates 1,2 --train.warmup 1
expect_in "$OUT/stderr" "dump.layers=5 \(from config file .*dump_layers.ini line 2\) has no effect: dump.activations is not set" \
  "... is said to have no effect"
printf 'text = -\n# standard input twice\ntext = -\n' >"$OUT/two_stdin.ini"
expect_exit 2 "text = - on two lines" -- "$LONGCTX" data import --config "$OUT/two_stdin.ini" --out "$OUT/never.h5" --quiet \
  </dev/null
expect_in "$OUT/stderr" "--text: '-' \(standard input\) is given more than once \(from config file .*two_stdin.ini lines 1, 3\)$" \
  "names the file and the list's lines"
# An unknown option within two edits of one of the command's is answered with it (the whole list otherwise),
# spelled as its source spells options.
expect_exit 2 "--model.layer" -- "$LONGCTX" train --model.layer 3 --quiet
expect_in "$OUT/stderr" "unknown option '--model.layer' for 'longctx train' \(from the command line\); did you mean --model.layers\?$" "--model.layers"
printf '[model]\nlayer = 3\n' >"$OUT/layer.ini"
expect_exit 2 "[model] layer in a file" -- "$LONGCTX" train --config "$OUT/layer.ini" --quiet
expect_in "$OUT/stderr" "did you mean \[model\] layers\?$" "[model] layers"
# Train's spelling of another command's option is answered with that command's (before: eval's --data.path got
# --path, the checkpoint; --model.segment_lengths the whole list), named without the value given after '='.
expect_exit 2 "eval --data.path=x.h5" -- "$LONGCTX" eval ck --data.path=x.h5 --quiet
expect_in "$OUT/stderr" "unknown option '--data.path' for 'longctx eval' \(from the command line\); did you mean --data-path\?$" \
  "--data-path, and no value in the name"
expect_exit 2 "eval --model.segment_lengths" -- "$LONGCTX" eval ck --model.segment_lengths 4 --quiet
expect_in "$OUT/stderr" "did you mean --segment-lengths\?$" "--segment-lengths"
expect_exit 2 "--causl=1" -- "$LONGCTX" bench attention --causl=1 --quiet
expect_in "$OUT/stderr" "did you mean --causal\?$" "a value after = does not hide the name"
# Nor an empty one (before: "the argument for option '--causl' should follow immediately after the equal sign").
expect_exit 2 "--causl=" -- "$LONGCTX" bench attention --causl= --quiet
expect_in "$OUT/stderr" "unknown option '--causl' .*did you mean --causal\?$" "an empty value after = does not hide the name"
# The first word of an option is answered with it (before: --seq was taken for --seed, two edits away).
expect_exit 2 "--seq 2048" -- "$LONGCTX" bench attention --seq 2048 --quiet
expect_in "$OUT/stderr" "did you mean --seq-len\?$" "--seq-len, not --seed"
expect_exit 2 "--data.seq 2048" -- "$LONGCTX" train --data.seq 2048 --quiet
expect_in "$OUT/stderr" "did you mean --data.seq_len\?$" "--data.seq_len"
# An option's start cut mid-word is answered with the options it begins, up to three (before: the list, or an
# option two edits away: --train.se got --train.lr).
expect_exit 2 "--back" -- "$LONGCTX" bench attention --back --quiet
expect_in "$OUT/stderr" "did you mean --backward\?$" "--backward"
expect_exit 2 "--model.lay 2" -- "$LONGCTX" train --model.lay 2 --quiet
expect_in "$OUT/stderr" "did you mean --model.layers\?$" "--model.layers"
expect_exit 2 "--train.se 2" -- "$LONGCTX" train --train.se 2 --quiet
expect_in "$OUT/stderr" "did you mean --train.seed\?$" "--train.seed, not --train.lr"
expect_exit 2 "--s 2" -- "$LONGCTX" train --s 2 --quiet
expect_in "$OUT/stderr" "unknown option '--s' .*; allowed: --device" "--s begins too many: the list"
# Else the options of that last name part, as a config file's top-level key is answered (before: the list).
expect_exit 2 "--seed 3 to train" -- "$LONGCTX" train --seed 3 --quiet
expect_in "$OUT/stderr" "unknown option '--seed' for 'longctx train' \(from the command line\); did you mean --train.seed\?$" \
  "--train.seed"
expect_exit 2 "--steps 5 to train" -- "$LONGCTX" train --steps=5 --quiet
expect_in "$OUT/stderr" "did you mean --train.steps or --dump.steps\?$" "--train.steps or --dump.steps"
printf '[train]\nlayers = 2\n' >"$OUT/layers.ini"
expect_exit 2 "[train] layers in a file" -- "$LONGCTX" train --config "$OUT/layers.ini" --quiet
expect_in "$OUT/stderr" "did you mean \[model\] layers or \[dump\] layers\?$" "[model] layers or [dump] layers"
# A top-level option under a section (attend's under [attend]) is pointed above the section lines (before: the
# list of every option, the key among them).
printf '[attend]\ninput = in.h5\n' >"$OUT/attend_section.ini"
expect_exit 2 "[attend] input in a file" -- "$LONGCTX" attend --config "$OUT/attend_section.ini" --quiet
expect_in "$OUT/stderr" "unknown option 'attend.input' .*; did you mean input above any \[section\] line\?$" "... input, at the top"
# An option that acts only with another setting, set without it, is said (before: nothing, without a word);
# one at its default is not (a config made from a checkpoint's /config gives every option).
TINY=(--quiet --model.mlp_hidden 64 --model.heads 4 --model.dim 32 --model.segment_lengths 32,128,256
      --model.dilation_rates 1,2,4 --data.seq_len 256 --train.steps 1)
expect_exit 0 "options without the setting they act with, 2 ranks" -- "${MPIRUN[@]}" -np 2 -x LONGCTX_DUMP_LAYERS=1 \
  "$LONGCTX" train "${TINY[@]}" --dump.steps 5 --checkpoint.keep 2 --data.task associative --data.key_repeats 2 \
  --data.records 4
[ "$(grep -c "has no effect" "$OUT/stderr")" = 4 ] && pass "each said once, by rank 0" ||
  fail "said $(grep -c "has no effect" "$OUT/stderr") times, not 4: $(grep "has no effect" "$OUT/stderr")"
expect_in "$OUT/stderr" "dump.steps=5 has no effect: dump.activations is not set: nothing is dumped" "dump.steps"
expect_in "$OUT/stderr" "dump.layers=1 \(from environment variable LONGCTX_DUMP_LAYERS\) has no effect: dump.activations" \
  "dump.layers, and where it came from"
expect_in "$OUT/stderr" "checkpoint.keep=2 has no effect: checkpoint.dir is not set" "checkpoint.keep"
expect_in "$OUT/stderr" "data.key_repeats=2 has no effect: data.task=passkey alone reads it" "data.key_repeats"
grep -q "data.records" "$OUT/stderr" && fail "warned about data.records, which associative reads" || pass "data.records acts"
# A warm-up longer than the run never reaches train.lr: said once, with the 1-step run's share of it and where
# train.warmup came from; a warm-up that ends on the last step is not said.
expect_in "$OUT/stderr" "^\[longctx warn r0\] train.warmup=20 \(its default\) is more than train.steps=1: the learning rate climbs to 5% of train.lr by the last step" \
  "a warm-up longer than the run"
[ "$(grep -c "train.warmup" "$OUT/stderr")" = 1 ] && pass "... said once" || fail "train.warmup said $(grep -c train.warmup "$OUT/stderr") times"
expect_exit 0 "a warm-up from the environment" -- env LONGCTX_TRAIN_WARMUP=3 "$LONGCTX" train "${TINY[@]}"
expect_in "$OUT/stderr" "train.warmup=3 \(from environment variable LONGCTX_TRAIN_WARMUP\) is more than train.steps=1: .* climbs to 33.3% of" \
  "... where it came from"
expect_exit 0 "a warm-up as long as the run" -- "$LONGCTX" train "${TINY[@]}" --train.warmup 1
grep -q "train.warmup" "$OUT/stderr" && fail "warned of a warm-up that reaches train.lr" || pass "... not said where it reaches train.lr"
expect_exit 0 "a 1-step run with a checkpoint" -- "$LONGCTX" train "${TINY[@]}" --checkpoint.dir "$OUT/warm_ck"
expect_in "$OUT/stderr" "train.warmup=20 \(its default\) is more than train.steps=1" "... warned"
expect_exit 0 "its resume, which trains nothing more" -- "$LONGCTX" train "${TINY[@]}" --checkpoint.dir "$OUT/warm_ck"
grep -q "train.warmup" "$OUT/stderr" && fail "warned of the warm-up of a resume that trains nothing" ||
  pass "... not said by a resume that trains nothing (from the regression audit)"
# checkpoint.every without checkpoint.dir is said as checkpoint.keep is (before: an error, exit 2, that named
# neither where the value came from nor how to run passkey.ini, which sets it, without checkpoints).
expect_exit 0 "passkey.ini with --checkpoint.dir=" -- "$LONGCTX" train --config "$(dirname "$0")/../../jobs/configs/passkey.ini" \
  --quiet --checkpoint.dir= --log.jsonl= --train.steps 1 --eval.sequences 1
expect_in "$OUT/stderr" "checkpoint.every=1000 \(from config file .*passkey.ini line 75\) has no effect: checkpoint.dir is not set" \
  "checkpoint.every: said, with where it came from"
# ... and it does nothing: the run goes past a step on its grid (before: exit 1 there, "checkpoint directory
# is gone").
expect_exit 0 "checkpoint.every=2 without checkpoint.dir, 3 steps" -- "$LONGCTX" train "${TINY[@]:0:13}" --train.steps 3 \
  --checkpoint.every 2 --log.jsonl "$OUT/every_no_dir.jsonl"
[ "$(grep -c '"step"' "$OUT/every_no_dir.jsonl")" = 3 ] && ! grep -q "is gone" "$OUT/stderr" && pass "... trains all 3 steps" ||
  fail "checkpoint.every without a dir: $(tail -2 "$OUT/stderr")"
# With the file task, the associative and passkey tasks' own options are said as the others are (before: not);
# train.answer_weight with data.supervision=answer too (the answers alone are scored: their weight cancels).
head -c 3000 "$LONGCTX" | tr -c 'a-z' 'a' >"$OUT/inert.txt"
expect_exit 0 "a token file" -- "$LONGCTX" data import --text "$OUT/inert.txt" --out "$OUT/inert.h5" --quiet
expect_exit 0 "the file task with data.records, data.queries, data.key_repeats" -- "$LONGCTX" train "${TINY[@]}" \
  --model.vocab 256 --data.task file --data.path "$OUT/inert.h5" --data.records 7 --data.queries 9 --data.key_repeats 4
[ "$(grep -c "has no effect: data.task=file reads no synthetic-task options" "$OUT/stderr")" = 3 ] &&
  pass "... each said" || fail "said: $(grep "no effect" "$OUT/stderr")"
expect_exit 0 "train.answer_weight with data.supervision=answer" -- "$LONGCTX" train "${TINY[@]}" \
  --data.supervision answer --train.answer_weight 7
expect_in "$OUT/stderr" "train.answer_weight=7 has no effect: data.supervision=answer scores the answers alone" "... said"
# A depth curriculum that cannot do what --help says is said too (before: no word; from the train audit).
DEPTH=("${TINY[@]:0:13}" --data.curriculum_steps 2)  # (TINY without its train.steps)
expect_exit 0 "data.curriculum_min_span not below data.seq_len" -- "$LONGCTX" train "${DEPTH[@]}" --train.steps 2 \
  --data.curriculum_min_span 1K
expect_in "$OUT/stderr" "data.curriculum_min_span=1K is not below data.seq_len=256: the keys lie anywhere in the sequence from step 1" \
  "... min_span >= seq_len"
expect_exit 0 "data.curriculum_steps past train.steps, a stage within min_span" -- env LONGCTX_DATA_CURRICULUM_MIN_SPAN=64 \
  "$LONGCTX" train "${DEPTH[@]}" --train.steps 1 --data.short_seq_len 64 --data.short_steps 1
expect_in "$OUT/stderr" "data.curriculum_steps=2 is more than train.steps=1: the key depth does not reach the whole sequence" \
  "... curriculum_steps > train.steps"
expect_in "$OUT/stderr" "data.curriculum_min_span=64 \(from environment variable LONGCTX_DATA_CURRICULUM_MIN_SPAN\) is not below the length curriculum's stage 1 \(64 tokens\)" \
  "... a stage no longer than min_span"
expect_exit 0 "a depth curriculum that acts" -- "$LONGCTX" train "${DEPTH[@]}" --train.steps 3 --data.curriculum_min_span 64 \
  --data.short_seq_len 128 --data.short_steps 1
grep -q "warn.*curriculum" "$OUT/stderr" && fail "warned: $(grep curriculum "$OUT/stderr")" || pass "... no word where it acts"
expect_exit 0 "the same options at their defaults" -- "$LONGCTX" train "${TINY[@]}" --dump.steps 1 --dump.layers 0 \
  --checkpoint.keep 3 --data.task associative --data.records 4 --data.key_repeats 1 --train.answer_weight 1e0
grep -q "no effect" "$OUT/stderr" && fail "warned about options at their defaults" || pass "defaults given: no word"
# A config written from a checkpoint's /config (every option, at its value) without checkpoint.dir: no word.
expect_exit 0 "a run that checkpoints" -- "$LONGCTX" train "${TINY[@]}" --checkpoint.dir "$OUT/inert_ck"
/usr/bin/python3 -c "
import h5py, sys
text = h5py.File(sys.argv[1], 'r')['config'][()].decode()
open(sys.argv[2], 'w').write(''.join(l + '\n' for l in text.splitlines() if not l.startswith('dir ')))
" "$OUT/inert_ck/step_00000001.h5" "$OUT/from_checkpoint.ini" || fail "could not write the checkpoint's /config out"
grep -q '^keep = 3' "$OUT/from_checkpoint.ini" && pass "the written config gives checkpoint.keep" ||
  fail "no 'keep = 3' in $(cat "$OUT/from_checkpoint.ini")"
expect_exit 0 "a run from the checkpoint's /config" -- "$LONGCTX" train --config "$OUT/from_checkpoint.ini" --quiet
grep -q "no effect" "$OUT/stderr" && fail "warned about a config made from a checkpoint" || pass "its config: no word"
# The options of an unknown one's last name part come before one two edits away (--keep was --help).
expect_exit 2 "--keep 2 to train" -- "$LONGCTX" train --keep 2 --quiet
expect_in "$OUT/stderr" "did you mean --checkpoint.keep\?$" "--checkpoint.keep"
printf 'hepl = 1\n' >"$OUT/hepl.ini"
expect_exit 2 "hepl = 1 in a file" -- "$LONGCTX" info --config "$OUT/hepl.ini"
grep -q "did you mean" "$OUT/stderr" && fail "suggested a key files refuse" || pass "help is no suggestion in a file"
# ... nor in the list of the keys a file may hold, which it spells as a file does (before: "--help, --config,
# --comm-timeout, --quiet").
expect_in "$OUT/stderr" "unknown option 'hepl' .*; allowed: comm-timeout, quiet$" "the list: the file's keys, as a file spells them"
expect_exit 2 "--xyz" -- "$LONGCTX" train --xyz --quiet
expect_in "$OUT/stderr" "unknown option '--xyz'.*; allowed: --device, " "far from all: the list"
# The resolved config quotes a text value where it would hide something: a blank in a list item, blanks at
# its ends, an empty value.
printf 'doc' >"$OUT/a b.txt"
cp "$OUT/a b.txt" "$OUT/c.txt"
expect_exit 0 "data import of 'a b.txt' and c.txt" -- "$LONGCTX" data import --text "$OUT/a b.txt" "$OUT/c.txt" --out "$OUT/ab.h5"
expect_in "$OUT/stderr" "^  text = \"$OUT/a b.txt\" $OUT/c.txt  \[command line\]$" "two items, the one with a blank quoted"
expect_in "$OUT/stderr" "^  ids = \(unset\)$" "an option with no default, not given, is listed as unset (before: left out)"
expect_in "$OUT/stderr" "^  ids-dtype = \(unset\)$" "... and one whose default is empty, as --help says (before: \"\"  [default])"
expect_exit 0 "... given empty" -- "$LONGCTX" data import --text "$OUT/c.txt" --out "$OUT/ab.h5" --ids-dtype=
expect_in "$OUT/stderr" '^  ids-dtype = ""  \[command line\]$' "... quoted, with its source"
# Another command's variable whose last name part this command has under a section: LONGCTX_SEED for train
# (bench attention's seed; train's is LONGCTX_TRAIN_SEED) was ignored without a word.
expect_exit 2 "LONGCTX_SEED for train" -- env LONGCTX_SEED=42 "$LONGCTX" train --train.steps 0 --quiet
expect_in "$OUT/stderr" "LONGCTX_SEED sets 'seed', an option of other commands, not of 'longctx train': ignored; did you mean LONGCTX_TRAIN_SEED\?" \
  "LONGCTX_SEED: did you mean LONGCTX_TRAIN_SEED?"
expect_exit 0 "LONGCTX_SEED for info, which has no seed" -- env LONGCTX_SEED=42 "$LONGCTX" info --quiet
grep -q "LONGCTX_SEED" "$OUT/stderr" && fail "info warned about LONGCTX_SEED" || pass "no word: a shared environment"
expect_exit 0 "misspelt variables" -- env LONGCTX_SEQLEN=8 LONGCTX_MODEL.LAYERS=4 LONGCTX_NOPE=1 LONGCTX_SEGMENT_LENGTH=5 \
  LONGCTX_CASUAL=1 LONGCTX_STEPS=4 "$LONGCTX" info --quiet
expect_in "$OUT/stderr" "environment variable LONGCTX_SEQLEN is neither an option of a longctx command nor a setting it knows: ignored; did you mean LONGCTX_SEQ_LEN\?" \
  "LONGCTX_SEQLEN: did you mean LONGCTX_SEQ_LEN?"
expect_in "$OUT/stderr" "environment variable LONGCTX_MODEL.LAYERS .*did you mean LONGCTX_MODEL_LAYERS\?" \
  "LONGCTX_MODEL.LAYERS: did you mean LONGCTX_MODEL_LAYERS?"
expect_in "$OUT/stderr" "environment variable LONGCTX_NOPE .*: ignored \(an option's variable is LONGCTX_ and its name in capitals" \
  "LONGCTX_NOPE is named, with the rule"
# Within two edits, as the command line's hints (before: none for these).
expect_in "$OUT/stderr" "environment variable LONGCTX_SEGMENT_LENGTH .*did you mean LONGCTX_SEGMENT_LENGTHS\?" \
  "LONGCTX_SEGMENT_LENGTH: did you mean LONGCTX_SEGMENT_LENGTHS?"
expect_in "$OUT/stderr" "environment variable LONGCTX_CASUAL .*did you mean LONGCTX_CAUSAL\?" "LONGCTX_CASUAL: did you mean LONGCTX_CAUSAL?"
# Not two edits in a name of five letters (before: LONGCTX_ITERS, bench's), but the options it names with
# their section left out.
expect_in "$OUT/stderr" "environment variable LONGCTX_STEPS .*did you mean LONGCTX_DUMP_STEPS or LONGCTX_TRAIN_STEPS\?" \
  "LONGCTX_STEPS: did you mean LONGCTX_DUMP_STEPS or LONGCTX_TRAIN_STEPS?"
expect_exit 0 "known variables" -- env LONGCTX_FLASH_FUSE=auto LONGCTX_FAULT_STALL_RANK=9 LONGCTX_BUILD=build \
  LONGCTX_SEED=3 LONGCTX_MODEL_LAYERS=2 LONGCTX_NOPE= "$LONGCTX" info --quiet
grep -q "environment variable" "$OUT/stderr" && fail "warned about a known or empty variable" ||
  pass "settings, other commands' options and empty variables are not warned about"
expect_exit 0 "info --help" -- "$LONGCTX" info --help
expect_in "$OUT/stdout" "LONGCTX_ and its name in capitals, \. and - as _ \(--model\.layers <- LONGCTX_MODEL_LAYERS\)" \
  "the help says how option names map to variables"

# ---- Every rank must have rank 0's options and inputs (main.cpp compares them after the config phase).
# Before: an option set on one rank only (LONGCTX_CAUSAL) wrote a mixed output with exit 0, other dilation
# rates crashed inside MPI, an input of another shape hung in the collective writes, and a checkpoint.dir
# one rank did not see failed at the first checkpoint, after all the steps. A config-phase error of one
# rank did not say which rank.
HERE=$(cd "$(dirname "$0")" && pwd)
cat >"$OUT/rank1.sh" <<'EOF'
#!/bin/bash
# rank1.sh DIR VAR=VALUE|-VAR ... -- COMMAND...: rank 1 runs in DIR with the variables set (-VAR: unset);
# other ranks as they are
if [ "${OMPI_COMM_WORLD_RANK:-0}" = 1 ]; then
  cd "$1" || exit 9; shift
  while [ "$1" != "--" ]; do case "$1" in -*) unset "${1#-}" ;; *) export "$1" ;; esac; shift; done
else
  shift
  while [ "$1" != "--" ]; do shift; done
fi
shift
exec "$@"
EOF
chmod +x "$OUT/rank1.sh"
mkdir -p "$OUT/r0" "$OUT/r1" && cd "$OUT/r0" || exit 1
/usr/bin/python3 "$HERE/../../jobs/demo/make_qkv.py" --seq-len 1024 --heads 2 --head-dim 16 qkv.h5 >/dev/null &&
  /usr/bin/python3 "$HERE/../../jobs/demo/make_qkv.py" --seq-len 512 --heads 2 --head-dim 16 ../r1/qkv.h5 >/dev/null ||
  fail "could not make the inputs"
TWO=(timeout 120 "${MPIRUN[@]}" -np 2 "$OUT/rank1.sh")
ATTEND=("$LONGCTX" attend --input qkv.h5 --output o.h5 --segment-lengths 256,512 --dilation-rates 1,2 --quiet)
expect_exit 2 "causal on rank 1 only" -- "${TWO[@]}" . LONGCTX_CAUSAL=1 -- "${ATTEND[@]}"
expect_in "$OUT/stderr" "error on rank 1 of 2 \(host [^)]+\): not as on rank 0: causal = true here \(from environment variable LONGCTX_CAUSAL\), false on rank 0" \
  "rank 1 says what differs and where its value came from"
expect_in "$OUT/stderr" "rank\(s\) 1 differ from rank 0 in their options or inputs" "rank 0 names the rank"
[ ! -e o.h5 ] && [ ! -e o.h5.tmp ] && pass "nothing written" || fail "an output was written"
# Both ways: an option without a default set on rank 0 only (it hung in the report's all-gather).
expect_exit 2 "--report on rank 0 only" -- env LONGCTX_REPORT=rep.json "${TWO[@]}" . -LONGCTX_REPORT -- "${ATTEND[@]}"
expect_in "$OUT/stderr" "on rank 1 of 2 .*: report not set here, rep.json on rank 0" "rank 1 says it lacks it"
# Another command on rank 1, one whose inputs' check is collective (attend's output directory probe):
# before, the ranks met in different collectives first (MPI_ERR_TRUNCATE, or a hang until --comm-timeout).
expect_exit 2 "attend on rank 1, info on rank 0" -- timeout 120 "${MPIRUN[@]}" -np 1 "$LONGCTX" info --quiet : \
  -np 1 "${ATTEND[@]}"
expect_in "$OUT/stderr" "on rank 1 of 2 .*: not as on rank 0: the command = longctx attend here, longctx info on rank 0\$" \
  "rank 1 names the commands, and only them"
grep -q longctx-probe <<<"$(ls -A .)" && fail "a probe file was left behind" || pass "... no probe file left"
expect_exit 0 "threads on rank 1 only (a setting of each rank)" -- "${TWO[@]}" . LONGCTX_THREADS=1 -- "${ATTEND[@]}"
rm -f o.h5
expect_exit 2 "rank 1 reads another qkv.h5 (another working directory)" -- "${TWO[@]}" ../r1 -- "${ATTEND[@]}"
expect_in "$OUT/stderr" "on rank 1 of 2 .*[:;] the shape of --input's q, k, v = \[512,2,16\] here, \[1024,2,16\] on rank 0" \
  "names the shapes"
# The same shape, other contents (a stale node-local copy): before, another result with exit 0.
/usr/bin/python3 "$HERE/../../jobs/demo/make_qkv.py" --seq-len 1024 --heads 2 --head-dim 16 --seed 1 ../r1/qkv.h5 \
  >/dev/null || fail "could not make the stale copy"
expect_exit 2 "rank 1 reads a copy of the same shape with other contents" -- "${TWO[@]}" ../r1 -- "${ATTEND[@]}"
expect_in "$OUT/stderr" "on rank 1 of 2 .*[:;] the first and last rows of --input's q, k, v = fingerprint [0-9a-f]{16} here, fingerprint [0-9a-f]{16} on rank 0" \
  "names the sampled rows that differ"
cp qkv.h5 ../r1/qkv.h5
# An output directory of its own (here a relative --output from another working directory; a node-local
# one): before, the two ranks' collective writes went to two files and hung until --comm-timeout.
expect_exit 2 "rank 1 would write --output into another directory" -- "${TWO[@]}" ../r1 -- "${ATTEND[@]}"
expect_in "$OUT/stderr" "on rank 1 of 2 .*: --output's directory \. \(rank 0's probe file\) = \(no \.longctx-probe\.[0-9]+\.[^:]+: No such file or directory\) here, \"made by rank 0, pid [0-9]+ on [^\"]+\" in it on rank 0" \
  "rank 1 does not see rank 0's probe file"
grep -q longctx-probe <<<"$(ls -A . ../r1)" && fail "a probe file was left behind" || pass "no probe file left"
# The same at a short --comm-timeout: rank 1 looked for the probe file up to 5 s while rank 0 waited 3 s
# for it, so the refusal became a timeout (exit 1, "rank 1 did not answer"). It looks half the timeout now.
expect_exit 2 "... also at --comm-timeout 3" -- "${TWO[@]}" ../r1 -- "${ATTEND[@]}" --comm-timeout 3
expect_in "$OUT/stderr" "on rank 1 of 2 .*: --output's directory \. \(rank 0's probe file\) = \(no \.longctx-probe" \
  "... still says what differs"
expect_exit 0 "an identical copy on rank 1, one output directory: accepted" -- "${TWO[@]}" ../r1 -- \
  "${ATTEND[@]/o.h5/$OUT/r0/o.h5}"
[ -e o.h5 ] && ! grep -q longctx-probe <<<"$(ls -A .)" && pass "written, no probe file left" || fail "no output, or a probe file left"
rm -f o.h5
TRAIN=("$LONGCTX" train --quiet --train.steps 2 --model.layers 1 --model.dim 16 --model.heads 2 --model.mlp_hidden 16
       --data.seq_len 256 --model.segment_lengths 64,256 --model.dilation_rates 1,2 --data.key_digits 2)
expect_exit 2 "train: checkpoint.dir is another directory on rank 1" -- "${TWO[@]}" ../r1 -- "${TRAIN[@]}" --checkpoint.dir ck
expect_in "$OUT/stderr" "on rank 1 of 2 .*: checkpoint.dir's lock file \(rank 0 wrote it\) = \(none: No such file or directory\) here, \"pid [0-9]+ on .*\" on rank 0" \
  "rank 1 does not see rank 0's lock file"
# Nothing written, as exit 2 says: before, checkpoint.dir and its lock file (made by rank 0's check) stayed.
[ ! -e ck ] && pass "nothing written: the checkpoint.dir rank 0 made and its lock file are gone" ||
  { fail "checkpoint.dir left behind"; find ck; }
# The same when another rank's own check fails (a bad value on rank 1 only), below a directory that was
# there already: only what the run made goes, also through a ".." (held/new, then held/made/ck).
mkdir -p held && touch held/mine
expect_exit 2 "train: rank 1 refuses its options" -- "${TWO[@]}" . LONGCTX_TRAIN_WARMUP=-1 -- "${TRAIN[@]}" \
  --checkpoint.dir held/new/../made/ck
expect_in "$OUT/stderr" "error on rank 1 of 2 .*train.warmup must be >= 0" "rank 1 names the option"
[ -e held/mine ] && [ "$(ls -A held)" = mine ] && pass "the directories the run made are gone, what was there stays" ||
  { fail "held/new or held/made left behind, or held/mine gone"; find held; }
rm -rf held
expect_exit 0 "train: the same directory on both" -- "${TWO[@]}" . -- "${TRAIN[@]}" --checkpoint.dir ck
# A token file of the same length, other tokens, on rank 1 (a stale copy): before, it trained on them.
printf 'the quick brown fox jumps over the lazy dog %.0s' $(seq 40) >a.txt
printf 'THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG %.0s' $(seq 40) >../r1/a.txt
"$LONGCTX" data import --quiet --text a.txt --out tok.h5 >/dev/null &&
  (cd ../r1 && "$LONGCTX" data import --quiet --text a.txt --out tok.h5 >/dev/null) || fail "could not import"
FILE_TRAIN=("${TRAIN[@]}" --data.task file --data.path tok.h5 --model.vocab 256)
expect_exit 2 "train: data.path of the same length, other tokens, on rank 1" -- "${TWO[@]}" ../r1 -- "${FILE_TRAIN[@]}"
expect_in "$OUT/stderr" "on rank 1 of 2 .*[:;] the first and last 4096 tokens of data.path = fingerprint [0-9a-f]{16} here" \
  "names the token file's contents"
expect_in "$OUT/stderr" "on rank 1 of 2 .*[:;] the digest of data.path's tokens = 0x[0-9a-f]{16} here" "... and its digest"
# eval's the same check, naming the option the user gave.
expect_exit 0 "train on tok.h5 at one rank" -- "${FILE_TRAIN[@]}" --checkpoint.dir "$PWD/fck"
expect_exit 2 "eval --data-path of other tokens on rank 1" -- "${TWO[@]}" ../r1 -- "$LONGCTX" eval "$PWD/fck" \
  --data-path tok.h5 --sequences 1 --quiet
expect_in "$OUT/stderr" "on rank 1 of 2 .*[:;] the digest of --data-path's tokens = 0x[0-9a-f]{16} here" "names --data-path, as given"
# dump.activations on one rank only, either way (its directory probe is collective): before, exit 15 with
# MPI_ERR_TRUNCATE and a lock file left behind, or a hang until --comm-timeout.
expect_exit 2 "train: dump.activations on rank 1 only" -- "${TWO[@]}" . LONGCTX_DUMP_ACTIVATIONS=d.h5 -- "${TRAIN[@]}" \
  --checkpoint.dir dck
expect_in "$OUT/stderr" "on rank 1 of 2 .*: dump.activations = d.h5 here \(from environment variable LONGCTX_DUMP_ACTIVATIONS\), \(empty\) on rank 0" \
  "... rank 1 says what differs"
expect_exit 2 "train: dump.activations on rank 0 only" -- env LONGCTX_DUMP_ACTIVATIONS=d.h5 "${TWO[@]}" . \
  -LONGCTX_DUMP_ACTIVATIONS -- "${TRAIN[@]}" --checkpoint.dir dck
expect_in "$OUT/stderr" "on rank 1 of 2 .*: dump.activations = \(empty\) here, d.h5 on rank 0" "... rank 1 says what differs"
[ ! -e dck ] && [ ! -e d.h5 ] && ! grep -q longctx-probe <<<"$(ls -A .)" && pass "... nothing left behind" ||
  fail "checkpoint.dir, the dump or a probe file left behind"
expect_exit 2 "a bad value on rank 1 only" -- "${TWO[@]}" . LONGCTX_TRAIN_CLIP=abc -- "${TRAIN[@]}"
expect_in "$OUT/stderr" "longctx: error on rank 1 of 2 \(host [^)]+\): the argument \('abc'\) for option '--train.clip' is invalid" \
  "the config-phase error names the rank"
cd "$OUT" || exit 1

# A value the command line overrides is neither used nor checked, whatever its type (before: a bad integer
# or on/off value in LONGCTX_* or a config file stopped the run, a bad number did not).
BENCH=("$LONGCTX" bench attention --quiet --seq-len 256 --segment-lengths 64 --dilation-rates 1 --iters 1 --warmup 0)
expect_exit 0 "LONGCTX_BATCH=abc under --batch 1" -- env LONGCTX_BATCH=abc "${BENCH[@]}" --batch 1
expect_exit 0 "LONGCTX_CAUSAL=maybe under --causal" -- env LONGCTX_CAUSAL=maybe "${BENCH[@]}" --causal
printf 'batch = abc\ncausal = maybe\n' >"$OUT/overridden.ini"
expect_exit 0 "a config's bad batch and causal under --batch 1 --causal=0" -- \
  "${BENCH[@]}" --config "$OUT/overridden.ini" --batch 1 --causal=0
expect_exit 2 "... and the same file without them" -- "${BENCH[@]}" --config "$OUT/overridden.ini" --batch 1
expect_in "$OUT/stderr" "overridden.ini line 2: causal='maybe'" "... names the value that is used"
expect_exit 2 "LONGCTX_BATCH=abc under a config's batch" -- env LONGCTX_BATCH=abc LONGCTX_CONFIG="$OUT/overridden.ini" \
  "${BENCH[@]}" --causal
expect_in "$OUT/stderr" "--batch: 'abc' is not an integer.*from config file $OUT/overridden.ini line 1" "the config's value is the one used"

# A number beyond a double's range is refused: 1e-400 was read as 0, which --softmax-scale takes for 1/sqrt(D).
expect_exit 2 "--softmax-scale 1e-400" -- "${BENCH[@]}" --softmax-scale 1e-400
expect_in "$OUT/stderr" "--softmax-scale: '1e-400' is beyond a double's range \(it would be read as 0 or a denormal\)" "says why"
expect_exit 2 "LONGCTX_TRAIN_LR=1e999" -- env LONGCTX_TRAIN_LR=1e999 "$LONGCTX" train --quiet
expect_in "$OUT/stderr" "'1e999' is beyond a double's range \(it would be read as infinite\) \(from environment variable LONGCTX_TRAIN_LR" \
  "names the variable"

# A value missing before another option is said as such, before the word left over (before: "unexpected
# argument '1'" for --seed --batch 1, and "'--batch' is not a non-negative integer" for --seed --batch).
expect_exit 2 "--seed --batch 1" -- "${BENCH[@]}" --seed --batch 1
expect_in "$OUT/stderr" "--seed has no value: the next word, '--batch', is an option" "names the option without a value"
expect_exit 2 "--seed --batch" -- "${BENCH[@]}" --seed --batch
expect_in "$OUT/stderr" "--seed has no value: the next word, '--batch', is an option" "... also at the end"
# An on/off option's value and a stray word (before: an internal failure, exit 1).
expect_exit 2 "--causal=false extra" -- "${BENCH[@]}" --causal=false extra
expect_in "$OUT/stderr" "unexpected argument 'extra'" "names the stray word"

# Help is not an on/off option: --help=0 ran the command; -h -h was 'given more than once'.
expect_exit 2 "info --help=0" -- "$LONGCTX" info --help=0
expect_in "$OUT/stderr" "--help=0: --help takes no value" "says so"
[ ! -s "$OUT/stdout" ] && pass "and ran nothing" || fail "info ran with --help=0"
expect_exit 0 "info -h --help" -- "$LONGCTX" info -h --help
expect_in "$OUT/stdout" "usage: longctx info" "prints the help once asked twice"

# A variable that differs from this command's option in - and _ (bench's seq-len, train's data.seq_len)
# gets the hint as a top-level seed does (before: ignored by train without a word).
expect_exit 2 "LONGCTX_SEQ_LEN for train" -- env LONGCTX_SEQ_LEN=128 "$LONGCTX" train --train.steps 0 --quiet
expect_in "$OUT/stderr" "LONGCTX_SEQ_LEN sets 'seq-len', .*did you mean LONGCTX_DATA_SEQ_LEN\?" "points to LONGCTX_DATA_SEQ_LEN"
expect_exit 2 "train --seq-len" -- "$LONGCTX" train --seq-len 128 --quiet
expect_in "$OUT/stderr" "unknown option '--seq-len' .*did you mean --data.seq_len\?" "points to --data.seq_len"

finish
