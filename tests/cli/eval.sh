#!/usr/bin/env bash
# longctx eval: a train checkpoint scored at its length and longer ones, by passkey depth; the same figures
# as train's own evaluation and at any world size; read-only; its refusals.
LONGCTX=$1
source "$(dirname "$0")/lib.sh"
cd "$OUT"

json_field() {  # json_field FILE LINE FIELD: a field of line LINE (from 1) of a JSON-lines file
  /usr/bin/python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[int(sys.argv[2]) - 1])[sys.argv[3]])" "$@"
}
close() {  # close A B TOL: |A - B| <= TOL * max(1, |A|)
  /usr/bin/python3 -c "import sys; a, b, t = map(float, sys.argv[1:]); sys.exit(0 if abs(a - b) <= t * max(1, abs(a)) else 1)" "$@"
}

MODEL=(--quiet --model.layers 2 --model.dim 32 --model.heads 4 --model.segment_lengths 64,128 --model.dilation_rates 1,2)
SMALL=("${MODEL[@]}" --data.seq_len 256 --train.steps 12 --eval.sequences 3 --train.seed 7)  # not the default seed
expect_exit 0 "train a small passkey model" -- "$LONGCTX" train "${SMALL[@]}" --checkpoint.dir ck --log.jsonl ck.jsonl
train_loss=$(json_field ck.jsonl 12 eval_loss)

# ---- the same sequences and figures as train's evaluation, at any world size ----
expect_exit 0 "eval at the trained length, random depths (train's evaluation)" -- \
  "$LONGCTX" eval ck --quiet --depths random --sequences 3 --json
cp "$OUT/stdout" random.jsonl
[ "$(wc -l <random.jsonl)" -eq 1 ] && pass "one JSON line" || fail "JSON lines: $(cat random.jsonl)"
close "$(json_field random.jsonl 1 loss)" "$train_loss" 1e-6 && pass "loss = train's eval_loss at step 12 ($train_loss)" ||
  fail "eval loss $(json_field random.jsonl 1 loss), train's eval_loss $train_loss"
[ "$(json_field random.jsonl 1 seq_len)/$(json_field random.jsonl 1 step)/$(json_field random.jsonl 1 depth)/$(json_field random.jsonl 1 scored)" = "256/12/None/15" ] &&
  pass "seq_len, step, depth null, 3 x 5 scored digits" || fail "fields: $(cat random.jsonl)"
expect_exit 0 "eval on 2 ranks" -- "${MPIRUN[@]}" -np 2 "$LONGCTX" eval ck --quiet --depths random --sequences 3 --json
close "$(json_field "$OUT/stdout" 1 loss)" "$train_loss" 1e-5 && pass "... the same loss" || fail "2 ranks: $(cat "$OUT/stdout")"

# ---- lengths x depths ----
expect_exit 0 "eval at 256 and 1K by depth" -- "$LONGCTX" eval ck/step_00000012.h5 --quiet --seq-len 256,1K \
  --depths 0,50,100 --sequences 2 --json
cp "$OUT/stdout" grid.jsonl
/usr/bin/python3 - <<'PY' && pass "6 cells: each length at each depth, finite losses" || fail "cells: $(cat grid.jsonl)"
import json, math, sys
cells = [json.loads(l) for l in open("grid.jsonl")]
want = [(n, d) for n in (256, 1024) for d in (0, 50, 100)]
ok = [(c["seq_len"], c["depth"]) for c in cells] == want and all(
    math.isfinite(c["loss"]) and c["sequences"] == 2 and c["trained_seq_len"] == 256 and c["world_size"] == 1 for c in cells)
sys.exit(0 if ok else 1)
PY
/usr/bin/python3 -c "
import json, sys
c = [json.loads(l) for l in open('grid.jsonl')]
sys.exit(0 if c[0]['loss'] != c[2]['loss'] and c[1]['loss'] != c[2]['loss'] else 1)" &&
  pass "the record's depth changes the loss (0% and 50% vs 100%)" || fail "depths score alike: $(cat grid.jsonl)"
expect_exit 0 "the same on 2 ranks" -- "${MPIRUN[@]}" -np 2 "$LONGCTX" eval ck --quiet --seq-len 256,1K \
  --depths 0,50,100 --sequences 2 --json
paste -d' ' grid.jsonl "$OUT/stdout" | /usr/bin/python3 -c "
import json, sys
for line in sys.stdin:
    half = len(line) // 2
    a, b = line.split('} {')
    a, b = json.loads(a + '}'), json.loads('{' + b)
    if abs(a['loss'] - b['loss']) > 1e-5 * max(1, abs(a['loss'])) or a['accuracy'] != b['accuracy']: sys.exit(1)
" && pass "... every cell's loss and accuracy" || fail "2 ranks differ: $(cat "$OUT/stdout")"
expect_exit 0 "the text table" -- "$LONGCTX" eval ck --quiet --seq-len 256,1K --depths 0,50,100 --sequences 2
expect_in "$OUT/stdout" "^N 1024  depth 50%  accuracy [0-9.]+  loss [0-9.]+  \(2 sequences, 10 scored targets" "a line per cell"
expect_in "$OUT/stdout" "^ +N +0% +50% +100% +mean$" "the table's head: depths"
expect_in "$OUT/stdout" "^ +1024( +[0-9]\.[0-9]{3}){4}$" "a row per length"
expect_in "$OUT/stderr" "eval: ck/step_00000012.h5, step 12 \(trained at N = 256\), scoring N = 256, 1024; " "says what it evaluates"

# ---- another schedule (no parameter depends on it) ----
expect_exit 0 "eval at 1K with a branch as long as the sequence" -- "$LONGCTX" eval ck --quiet --seq-len 1K \
  --segment-lengths 64,1K --depths 0 --sequences 2 --json
[ "$(json_field "$OUT/stdout" 1 schedule)" = "[[64, 1], [1024, 2]]" ] && pass "... runs that schedule" ||
  fail "schedule: $(cat "$OUT/stdout")"
/usr/bin/python3 -c "
import json, sys
a = json.loads(open('grid.jsonl').read().splitlines()[3]); b = json.loads(sys.argv[1])
sys.exit(0 if (a['seq_len'], a['depth']) == (1024, 0) and a['loss'] != b['loss'] else 1)" "$(cat "$OUT/stdout")" &&
  pass "... which scores otherwise than the checkpoint's" || fail "the same loss as the checkpoint's schedule"
expect_exit 2 "a schedule of 3 segment lengths and the checkpoint's 2 rates" -- "$LONGCTX" eval ck --quiet --segment-lengths 64,128,256
expect_in "$OUT/stderr" "--segment-lengths \(64,128,256\) and the checkpoint's model.dilation_rates \(1,2\) have different lengths" \
  "... names both"

# ---- ranks that see other files under the checkpoint's name ----
mkdir -p other && (cd other && "$LONGCTX" train "${MODEL[@]}" --data.seq_len 256 --train.seed 8 --train.steps 12 --checkpoint.dir ck >/dev/null 2>&1) ||
  fail "train in other/"
expect_exit 3 "rank 1 runs in another working directory, whose ck holds another run" -- "${MPIRUN[@]}" -np 1 --wdir "$OUT" \
  "$LONGCTX" eval ck --quiet --depths 50 --sequences 1 : -np 1 --wdir "$OUT/other" "$LONGCTX" eval ck --quiet --depths 50 --sequences 1
expect_in "$OUT/stderr" "some ranks read other parameters there than rank 0" "... refused before any scoring"
grep -q "^N " "$OUT/stdout" && fail "it scored" || pass "... nothing scored"

# ---- the table's labels ----
expect_exit 0 "depths with many digits" -- "$LONGCTX" eval ck --quiet --depths 33.333333,99.99999999,100 --sequences 1
expect_in "$OUT/stdout" "^ +N +33.333333% +99.99999999% +100% +mean$" "labels as given, apart"

# ---- read-only: nothing in checkpoint.dir changes, and it is not locked ----
find ck -printf '%p %s %T@\n' | sort >before.txt
md5sum ck/* >>before.txt 2>/dev/null
expect_exit 0 "eval again" -- "$LONGCTX" eval ck --quiet --sequences 1
find ck -printf '%p %s %T@\n' | sort >after.txt
md5sum ck/* >>after.txt 2>/dev/null
cmp -s before.txt after.txt && pass "checkpoint.dir unchanged" || fail "eval changed checkpoint.dir: $(diff before.txt after.txt)"
exec 9>ck/.longctx.lock && flock -n 9 && pass "eval holds no lock after it" || fail "lock held"
exec 9>&-

# ---- a token file ----
head -c 40000 /dev/urandom | base64 >corpus.txt
expect_exit 0 "import a text corpus" -- "$LONGCTX" data import --text corpus.txt --out corpus.h5 --quiet
FILE=(--quiet --model.layers 1 --model.dim 32 --model.heads 4 --model.segment_lengths 64,128 --model.dilation_rates 1,2
      --model.vocab 256 --data.task file --data.path corpus.h5 --data.seq_len 128 --eval.sequences 2)
expect_exit 0 "train on it" -- "$LONGCTX" train "${FILE[@]}" --train.steps 4 --checkpoint.dir ckf --log.jsonl ckf.jsonl
expect_exit 0 "eval the file task" -- "$LONGCTX" eval ckf --quiet --sequences 2 --json
close "$(json_field "$OUT/stdout" 1 loss)" "$(json_field ckf.jsonl 4 eval_loss)" 1e-6 &&
  pass "loss = train's eval_loss on the held-out tail" || fail "eval $(cat "$OUT/stdout"), train $(tail -1 ckf.jsonl)"
# A checkpoint's empty data.path is said as such (before: "data.path= is not there").
/usr/bin/python3 - <<'PY' || fail "h5py could not edit the checkpoint"
import h5py, numpy as np, shutil
shutil.copy("ckf/step_00000004.h5", "nopath.h5")
with h5py.File("nopath.h5", "r+") as f:
    config = f["config"][()].decode()
    assert "path = corpus.h5" in config
    del f["config"]; f["config"] = np.bytes_(config.replace("path = corpus.h5", "path =", 1).encode()); del f.attrs["config_fnv1a64"]
PY
expect_exit 3 "eval: a file task's checkpoint with an empty data.path" -- "$LONGCTX" eval nopath.h5 --quiet --sequences 2
expect_in "$OUT/stderr" "the checkpoint's data.path is empty" "... says so"
expect_exit 0 "... with --data-path" -- "$LONGCTX" eval nopath.h5 --quiet --sequences 2 --data-path corpus.h5
expect_exit 2 "a length longer than the token file" -- "$LONGCTX" eval ckf --quiet --seq-len 512,64K
expect_in "$OUT/stderr" "--seq-len: 65536 is longer than the checkpoint's data.path=corpus.h5 can score: it holds [0-9]+ tokens" "... says so"
expect_exit 0 "the file task at 4x its length" -- "$LONGCTX" eval ckf --quiet --seq-len 512 --sequences 2
expect_in "$OUT/stdout" "^N 512  loss [0-9.]+  perplexity [0-9.]+  next-token accuracy" "loss, perplexity, accuracy"
head -c 1000 corpus.txt >small.txt
expect_exit 0 "import a corpus of 7 sequences of 128" -- "$LONGCTX" data import --text small.txt --out small.h5 --quiet
expect_exit 0 "train on its 6 training windows" -- "$LONGCTX" train "${FILE[@]/corpus.h5/small.h5}" --train.steps 6 --checkpoint.dir cks
expect_exit 0 "eval it at 256" -- "$LONGCTX" eval cks --quiet --seq-len 128,256
expect_in "$OUT/stderr" "N = 256: the held-out tail of small.h5 starts at token 513, but the checkpoint's run \(data.seq_len=128\) trained on tokens up to 768" \
  "says that 256's held-out tail holds tokens the run trained on"
grep -q "N = 128: the held-out" "$OUT/stderr" && fail "warned at the trained length" || pass "... not at 128, its own length"
# A file of one window and a part (248 tokens at 128): 4 steps train on tokens 0..128 over and over, so
# 64's tail (from 129) holds none of them and 100's (from 101) does, up to 128 (before: "up to 247", the
# file's end, and 64 warned too).
head -c 248 corpus.txt >one.txt
expect_exit 0 "import 248 tokens" -- "$LONGCTX" data import --text one.txt --out one.h5 --quiet
expect_exit 0 "train 4 steps on its one window" -- "$LONGCTX" train "${FILE[@]/corpus.h5/one.h5}" --train.steps 4 --checkpoint.dir ck1
expect_exit 0 "eval it at 64 and 100" -- "$LONGCTX" eval ck1 --quiet --seq-len 64,100
expect_in "$OUT/stderr" "N = 100: the held-out tail of one.h5 starts at token 101, but the checkpoint's run \(data.seq_len=128\) trained on tokens up to 128:" \
  "100's tail holds tokens up to 128, the last window's end"
grep -q "N = 64: the held-out" "$OUT/stderr" && fail "warned at 64: $(grep "N = 64" "$OUT/stderr")" || pass "... 64's holds none"
# A resume at another length leaves windows off its grid: 64 (tokens 0..64), then 128 from 64 (..192): both
# tails hold trained tokens, up to 192 (regression audit: 64's was not warned, 100's said "up to 128").
F2=(--quiet --model.layers 1 --model.dim 32 --model.heads 4 --model.segment_lengths 32,64 --model.dilation_rates 1,2
    --model.vocab 256 --data.task file --data.path one.h5 --eval.sequences 1 --checkpoint.dir ck2)
expect_exit 0 "train a step at 64" -- "$LONGCTX" train "${F2[@]}" --data.seq_len 64 --train.steps 1
expect_exit 0 "... and one at 128" -- "$LONGCTX" train "${F2[@]}" --data.seq_len 128 --train.steps 2
expect_exit 0 "eval it at 64 and 100" -- "$LONGCTX" eval ck2 --quiet --seq-len 64,100 --sequences 1
expect_in "$OUT/stderr" "N = 64: the held-out tail of one.h5 starts at token 129, but .* trained on tokens up to 192:" "... 64's tail: up to 192"
expect_in "$OUT/stderr" "N = 100: the held-out tail of one.h5 starts at token 101, but .* trained on tokens up to 192:" "... 100's too"
# The checkpoint given twice, as the positional argument and as --path (before: "'--path' cannot be specified
# more than once", where it was given once).
expect_exit 2 "eval CHECKPOINT --path OTHER" -- "$LONGCTX" eval ck1 --path cks --quiet
expect_in "$OUT/stderr" "--path and the positional CHECKPOINT\|DIR are one argument: give it once" "... says they are one"
expect_exit 2 "eval --path A --path B" -- "$LONGCTX" eval --path ck1 --path cks --quiet
expect_in "$OUT/stderr" "option '--path' cannot be specified more than once" "... given twice by name: said so"
# A directory without `latest` whose newest file is truncated: the others are named (before: the damage alone).
mkdir -p nolatest && cp cks/step_*.h5 nolatest/ && head -c 5000 "$(ls cks/step_*.h5 | tail -1)" >nolatest/step_00000099.h5
expect_exit 3 "eval a directory whose newest file (no latest) is truncated" -- "$LONGCTX" eval nolatest --quiet
expect_in "$OUT/stderr" "nolatest/step_00000099.h5: .*\. Other checkpoints there, newest first: step_00000006.h5 \(give one's path, nolatest/step_00000006.h5, to read it; \`longctx ckpt verify nolatest\` checks them all\)" \
  "... names the others"
# The checkpoint's token file replaced by a shorter one: said, exit 3 (before: "--seq-len: 128 is longer", exit 2,
# where no --seq-len was given).
cp one.h5 one_saved.h5 && printf 'hi there' >hi.txt
expect_exit 0 "replace one.h5 by 8 tokens" -- "$LONGCTX" data import --text hi.txt --out one.h5 --quiet
expect_exit 3 "eval a checkpoint whose token file was replaced by a shorter one" -- "$LONGCTX" eval ck1 --quiet
expect_in "$OUT/stderr" "data.path=one.h5 holds 8 tokens, but the file the checkpoint's run trained on under that name held 248: it was replaced since" \
  "... says so"
expect_exit 2 "... with --data-path naming it" -- "$LONGCTX" eval ck1 --quiet --data-path one.h5
expect_in "$OUT/stderr" "the checkpoint's length 128 \(--seq-len's default\) is longer than --data-path=one.h5 can score: it holds 8 tokens" \
  "... the length named as the default"
# At 512 the file holds one sequence, nothing held out: the run trained on all of it, at 128 (before: only that
# a run at this length would train on it was said).
expect_exit 0 "eval it at 512 (one sequence)" -- "$LONGCTX" eval cks --quiet --seq-len 512 --sequences 1
expect_in "$OUT/stderr" "N = 512: small.h5 holds a single sequence of this length \(512 \+ 1 tokens\), so none is held out at it: it is scored, and the checkpoint's run \(data.seq_len=128\) trained on all of it$" \
  "says the sequence scored is one the run trained on"
[ "$(grep -c "warn.*N = 512:" "$OUT/stderr")" = 1 ] && pass "... in one warning" || fail "$(grep "N = 512:" "$OUT/stderr")"
mkdir moved && mv corpus.h5 moved/
expect_exit 3 "the checkpoint's data.path is gone" -- "$LONGCTX" eval ckf --quiet
expect_in "$OUT/stderr" "the checkpoint's data.path=corpus.h5 is not there \(from this working directory\): --data-path reads" "... points to --data-path"
expect_exit 0 "--data-path" -- "$LONGCTX" eval ckf --quiet --data-path moved/corpus.h5 --sequences 2 --json
close "$(json_field "$OUT/stdout" 1 loss)" "$(json_field ckf.jsonl 4 eval_loss)" 1e-6 && pass "... the same loss" ||
  fail "moved: $(cat "$OUT/stdout")"
[ "$(json_field "$OUT/stdout" 1 same_data)" = True ] && pass "... same_data: the file the run trained on (its digest)" ||
  fail "same_data: $(cat "$OUT/stdout")"
# A token file whose tokens changed with their checksums (read without an error): refused by its digest
# before the run, as data verify does (before: scored, same_data true for the checkpoint's own).
cp moved/corpus.h5 edited.h5
/usr/bin/python3 -c "
import h5py
with h5py.File('edited.h5', 'r+') as f: f['tokens'][-50] = (int(f['tokens'][-50]) + 1) % 256
" || fail "could not edit a token"
expect_exit 3 "eval with a --data-path whose tokens changed" -- "$LONGCTX" eval ckf --quiet --data-path edited.h5
expect_in "$OUT/stderr" "--data-path=edited.h5 is damaged: edited.h5: DAMAGED: /tokens' digest is" "... names the digest"
# Another token file (a validation corpus) is scored, and said; its held-out tail is not checked against the
# tokens the checkpoint's run trained on (which are another file's).
expect_exit 0 "eval on another token file" -- "$LONGCTX" eval ckf --quiet --data-path small.h5 --json
[ "$(json_field "$OUT/stdout" 1 same_data)" = False ] && pass "... same_data false" || fail "same_data: $(cat "$OUT/stdout")"
expect_in "$OUT/stderr" "small.h5 is not the token file the checkpoint's run trained on \(corpus.h5\): it holds 1000 tokens, digest 0x[0-9a-f]{16}; the checkpoint's run read [0-9]+ tokens, digest 0x[0-9a-f]{16}\. Its held-out tail is scored, with no check" \
  "... says so"
# A file whose vocabulary the checkpoint's model cannot read: the wrong input, exit 3 (before: 2, naming
# train's model.vocab and data.path).
cp small.h5 wide.h5
/usr/bin/python3 -c "import h5py; f = h5py.File('wide.h5', 'r+'); f.attrs['vocab'] = 1000; f.close()"
expect_exit 3 "--data-path with a vocabulary larger than the model's" -- "$LONGCTX" eval ckf --quiet --data-path wide.h5
expect_in "$OUT/stderr" "--data-path=wide.h5 has a vocabulary of 1000 ids, more than the checkpoint's model \(model.vocab=256\) reads" "... says so"
expect_exit 0 "eval small.h5's run at 256 on the other file" -- "$LONGCTX" eval cks --quiet --seq-len 256 --data-path moved/corpus.h5
grep -q "the held-out tail of" "$OUT/stderr" && fail "the other file's tail was checked against small.h5's run" ||
  pass "... no overlap warning: the run trained on another file"
expect_exit 0 "a passkey checkpoint" -- "$LONGCTX" eval ck --quiet --sequences 1 --json
[ "$(json_field "$OUT/stdout" 1 same_data)" = None ] && pass "... same_data null" || fail "same_data: $(cat "$OUT/stdout")"
# LONGCTX_DATA_PATH is train's data.path too: exported for a job's train runs, it is not used for a checkpoint
# that reads no file, with a warning (before: refused, exit 2); --data-path given so is refused.
expect_exit 0 "a passkey checkpoint under LONGCTX_DATA_PATH" -- env LONGCTX_DATA_PATH=nothere.h5 "$LONGCTX" eval ck --quiet \
  --sequences 1
expect_in "$OUT/stderr" "warn r0\] LONGCTX_DATA_PATH=nothere.h5 is not used: the checkpoint's data.task is passkey" "... warns"
expect_exit 2 "a passkey checkpoint with --data-path" -- "$LONGCTX" eval ck --quiet --sequences 1 --data-path corpus.h5
expect_in "$OUT/stderr" "--data-path=corpus.h5: the checkpoint's data.task is passkey, which makes its own sequences" "... refused"
# A path through a file says so (before: "no such file" of the file that is there).
expect_exit 3 "eval ck/step_00000012.h5/ (a trailing /)" -- "$LONGCTX" eval ck/step_00000012.h5/ --quiet --sequences 1
expect_in "$OUT/stderr" "ck/step_00000012.h5/: no such file: ck/step_00000012.h5 is a file, not a directory \(drop the trailing /\)" \
  "... says the file is no directory"

expect_exit 0 "--depths random with the file task" -- "$LONGCTX" eval ckf --quiet --data-path moved/corpus.h5 --depths random --sequences 2 --json
close "$(json_field "$OUT/stdout" 1 loss)" "$(json_field ckf.jsonl 4 eval_loss)" 1e-6 && pass "... as without it" ||
  fail "random: $(cat "$OUT/stdout")"

# ---- checkpoints of runs with periodic checkpoints, a curriculum ----
expect_exit 0 "train a curriculum 128 -> 512, a checkpoint every 5 steps" -- "$LONGCTX" train "${MODEL[@]}" \
  --data.seq_len 512 --data.short_seq_len 128 --data.short_steps 10 --train.steps 15 --checkpoint.every 5 --checkpoint.dir ckc
expect_exit 0 "eval the checkpoint of step 10, in the 128 stage" -- "$LONGCTX" eval ckc/step_00000010.h5 --quiet --depths 50 \
  --sequences 1 --json
[ "$(json_field "$OUT/stdout" 1 seq_len)/$(json_field "$OUT/stdout" 1 trained_seq_len)" = "128/128" ] &&
  pass "... at 128, the length it trained at" || fail "curriculum: $(cat "$OUT/stdout")"
expect_in "$OUT/stderr" "step 10 \(trained at N = 128\), scoring N = 128; " "... and says so (the config shows seq-len = \"\")"
expect_exit 0 "eval ckc/ (its latest, step 15)" -- "$LONGCTX" eval ckc/ --quiet --depths 50 --sequences 1 --json
[ "$(json_field "$OUT/stdout" 1 checkpoint)/$(json_field "$OUT/stdout" 1 seq_len)" = "ckc/step_00000015.h5/512" ] &&
  pass "... named without a double slash, at 512" || fail "latest: $(cat "$OUT/stdout")"
if command -v strace >/dev/null; then  # (jobs/test.sh installs it; by hand, a machine may lack it)
  expect_exit 0 "eval at 2 ranks, under strace" -- "${MPIRUN[@]}" -np 2 strace -f -qq -ff -e trace=openat,unlink \
    -o "$OUT/trace" "$LONGCTX" eval ckc/ --quiet --depths 50 --sequences 1
  cat "$OUT"/trace.* >trace.txt
  grep -qF '"ckc/step_00000015.h5", O_RDONLY' trace.txt && pass "... each rank reads the checkpoint" || fail "no read traced"
  grep -E "ckc/[^\"]*\", O_[A-Z_|]*(O_WRONLY|O_RDWR|O_CREAT)|unlink\(\"ckc" trace.txt >writes.txt
  [ ! -s writes.txt ] && pass "... and opens nothing in checkpoint.dir for writing (no MPI-IO lock test)" ||
    fail "writes: $(head -3 writes.txt)"
fi

# ---- a checkpoint's /config that train's checks refuse: the checkpoint's fault (exit 3), named as such ----
/usr/bin/python3 - <<'PY' || fail "h5py could not edit the checkpoints"
import h5py, numpy as np, shutil
for name, old, new in [("bogus.h5", "task = passkey", "task = bogus"), ("vocab16.h5", "vocab = 32", "vocab = 16"),
                       ("seq12.h5", "seq_len = 256", "seq_len = abc"), ("rope0.h5", "rope_base = 10000", "rope_base = 0"),
                       ("dimhex.h5", "\ndim = 32", "\ndim = 0x20"), ("heads2.h5", "heads = 4", "heads = 2"),
                       ("dupdigits.h5", "[model]", "[data]\nkey_digits = 3\n[model]")]:
    shutil.copy("ck/step_00000012.h5", name)
    with h5py.File(name, "r+") as f:
        config = f["config"][()].decode()
        assert old in config, old
        del f["config"]; f["config"] = np.bytes_(config.replace(old, new, 1).encode()); del f.attrs["config_fnv1a64"]
PY
expect_exit 3 "/config: data.task = bogus" -- "$LONGCTX" eval bogus.h5 --quiet --depths 50
expect_in "$OUT/stderr" "bogus.h5: /config: data.task = bogus is no task" "... names the file and the key"
# A key given twice, as in a config file (before: the last one won, so eval scored 3-digit keys of a model
# trained on 5, and verify said ok).
expect_exit 3 "/config: data.key_digits twice" -- "$LONGCTX" eval dupdigits.h5 --quiet --depths 50
expect_in "$OUT/stderr" "dupdigits.h5: /config: line [0-9]+: 'data.key_digits' given twice \(first on line [0-9]+\)$" \
  "... names the file, the key and its lines"
expect_exit 3 "/config: model.vocab = 16 (passkey needs 32)" -- "$LONGCTX" eval vocab16.h5 --quiet
expect_in "$OUT/stderr" "vocab16.h5: /config: model.vocab=16" "... names the file and the key"
# A root attribute seq_len that is not the length its step trained at (its log line's): damage, named so
# (before: eval took it for the trained length, or blamed /config's --seq-len for it, and verify said ok).
/usr/bin/python3 -c "import h5py, numpy as np, shutil; shutil.copy('ck/step_00000012.h5', 'len100.h5'); \
h5py.File('len100.h5', 'r+').attrs['seq_len'] = np.int64(100)" || fail "h5py could not edit seq_len"
expect_exit 3 "attribute seq_len not the step's" -- "$LONGCTX" eval len100.h5 --quiet --depths 50 --seq-len 256
expect_in "$OUT/stderr" "len100.h5: attribute seq_len = 100: not the length step 12 trained at, as its attribute step_log says \(\"seq_len\": 256\): damaged" \
  "... names the attribute, not --seq-len"
expect_exit 3 "... verify" -- "$LONGCTX" ckpt verify len100.h5 --quiet
# ckpt verify refuses what train's checks refuse in /config, as eval and a resume do (before: "ok" for all of
# these, and a refused resume's advice, `ckpt verify DIR`, pointed to them as whole).
for c in "bogus:data.task = bogus is no task" "rope0:model.rope_base must be a finite number > 1" \
         "dimhex:--model.dim: '0x20' is not an integer" "dupdigits:line [0-9]+: 'data.key_digits' given twice"; do
  expect_exit 3 "verify: /config with ${c#*:}" -- "$LONGCTX" ckpt verify "${c%%:*}.h5" --quiet
  expect_in "$OUT/stdout" "${c%%:*}.h5: /config: ${c#*:}" "... names the file and the key"
done
# Another head count changes no tensor's shape: the root attribute model_heads (what the run trained) is
# compared with /config (before: eval scored the weights with 2 heads, and verify said "ok").
expect_exit 3 "eval: /config with model.heads = 2 on weights trained with 4" -- "$LONGCTX" eval heads2.h5 --quiet
expect_in "$OUT/stderr" "heads2.h5: attribute model_heads = 4: the model trained, but /config says model.heads = 2" "... says which"
expect_exit 3 "verify: the same" -- "$LONGCTX" ckpt verify heads2.h5 --quiet
expect_in "$OUT/stdout" "heads2.h5: attribute model_heads = 4: the model trained, but /config says model.heads = 2" "... says so too"
expect_exit 0 "verify: the checkpoint they were made from" -- "$LONGCTX" ckpt verify ck/step_00000012.h5 --quiet
# A long --seq-len is eval's own mistake, not the checkpoint's (before: exit 3, "/config: train.steps=100: at
# data.seq_len=100000000000000000 that is past 2^63 - 1 tokens").
expect_exit 2 "--seq-len 1e17 tokens" -- "$LONGCTX" eval ck --quiet --seq-len 100000000000000000
grep -q "/config" "$OUT/stderr" && fail "blamed /config: $(cat "$OUT/stderr")" || pass "... not blamed on /config"

# ---- refusals ----
expect_exit 2 "--threads -1" -- "$LONGCTX" eval ck --quiet --threads -1
expect_in "$OUT/stderr" "--threads=-1: must be in \[0, 1024\]" "... names --threads"
expect_exit 2 "--depths 50, (an empty item)" -- "$LONGCTX" eval ck --quiet --depths 50,
expect_exit 2 "--depths 0x10" -- "$LONGCTX" eval ck --quiet --depths 0x10
expect_exit 2 "--depths 5,5" -- "$LONGCTX" eval ck --quiet --depths 5,5
expect_exit 2 "--seq-len 256,1K,256" -- "$LONGCTX" eval ck --quiet --seq-len 256,1K,256
expect_in "$OUT/stderr" "256 is given twice" "... names it"
# Where a value came from is said once (before: twice, each check adding it as the config phase does).
expect_exit 2 "LONGCTX_DEPTHS=101" -- env LONGCTX_DEPTHS=101 "$LONGCTX" eval ck --quiet
[ "$(grep -o "(from environment variable LONGCTX_DEPTHS)" "$OUT/stderr" | wc -l)" -eq 1 ] &&
  pass "... says once that it came from LONGCTX_DEPTHS" || fail "source said not once: $(cat "$OUT/stderr")"
expect_exit 2 "no checkpoint given" -- "$LONGCTX" eval --quiet
expect_in "$OUT/stderr" "needs a checkpoint" "... says what it needs"
mkdir empty
expect_exit 3 "a directory without checkpoints" -- "$LONGCTX" eval empty --quiet
expect_exit 3 "a token file given as the checkpoint" -- "$LONGCTX" eval moved/corpus.h5 --quiet
expect_exit 2 "--depths with the file task" -- "$LONGCTX" eval ckf --quiet --data-path moved/corpus.h5 --depths 50
expect_in "$OUT/stderr" "only the passkey task" "... says why"
expect_exit 2 "--data-path with the passkey task" -- "$LONGCTX" eval ck --quiet --data-path moved/corpus.h5
expect_exit 2 "a depth past 100%" -- "$LONGCTX" eval ck --quiet --depths 50,120
expect_in "$OUT/stderr" "'120' is not a percent in \[0, 100\]" "... names it"
# Parameters that overflow the forward pass (finite, their digests removed so that they load): a loss that
# is not finite ends eval with exit 1, as it ends train (before: "loss -nan", accuracy 0, exit 0).
cp ck/step_00000012.h5 huge.h5
/usr/bin/python3 -c "
import h5py
with h5py.File('huge.h5', 'r+') as f:
    for name in ('model/layer0/wq', 'model/layer0/wk'):
        f[name][...] = 3e37
        del f[name].attrs['digest']
"
expect_exit 1 "a checkpoint whose forward pass overflows" -- "$LONGCTX" eval huge.h5 --quiet --depths 0,100 --sequences 1 --json
expect_in "$OUT/stderr" "the loss at N = 256, depth 0% is (nan|-?inf), not finite: the checkpoint's parameters overflow" "... says where"
[ ! -s "$OUT/stdout" ] && pass "... and prints no score for it" || fail "printed: $(cat "$OUT/stdout")"
expect_exit 0 "--depths ' random' (blanks dropped, as around numbers)" -- "$LONGCTX" eval ck --quiet --depths " random" --sequences 1 --json
[ "$(grep -c . "$OUT/stdout")" -eq 1 ] && [ "$(json_field "$OUT/stdout" 1 depth)" = None ] && pass "... one cell, depth null (random)" ||
  fail "--depths ' random': $(cat "$OUT/stdout")"
expect_exit 2 "--depths random,50" -- "$LONGCTX" eval ck --quiet --depths random,50
expect_in "$OUT/stderr" "\`random\` stands alone" "... says random is not a percent of a list"
expect_exit 2 "--sequences 0" -- "$LONGCTX" eval ck --quiet --sequences 0
expect_exit 2 "a length too short for the passkey" -- "$LONGCTX" eval ck --quiet --seq-len 8
expect_in "$OUT/stderr" "--seq-len=8 is too short for passkey: need at least [0-9]+ \(data.key_digits=" "... names --seq-len"
# Shorter than one record: the same words (before: 'data.key_digits=5: must be in [1, --seq-len=2]', a
# setting eval cannot change).
expect_exit 2 "a length shorter than the key" -- "$LONGCTX" eval ck --quiet --seq-len 2
expect_in "$OUT/stderr" "--seq-len=2 is too short for passkey: need at least" "... says the length is too short"
expect_exit 2 "a length that does not shard at 2 ranks" -- "${MPIRUN[@]}" -np 2 "$LONGCTX" eval ck --quiet --seq-len 256,255
expect_in "$OUT/stderr" "--seq-len=255" "... names the length"
expect_exit 2 "... also alone" -- "${MPIRUN[@]}" -np 2 "$LONGCTX" eval ck --quiet --seq-len 255
expect_in "$OUT/stderr" "--seq-len=255.*\(eval: another --seq-len or world size\)$" "... names it, and what to change"
expect_exit 2 "... given by LONGCTX_SEQ_LEN" -- env LONGCTX_SEQ_LEN=255 "${MPIRUN[@]}" -np 2 "$LONGCTX" eval ck --quiet
expect_in "$OUT/stderr" "--seq-len=255.*\(eval: another --seq-len or world size\) \(from environment variable LONGCTX_SEQ_LEN\)$" \
  "... and where it came from (before: not)"
# Another schedule is named where the segments do not line up with the shards (before: also for N % P).
expect_exit 2 "a length whose shards the segments do not fit, 2 ranks" -- "${MPIRUN[@]}" -np 2 "$LONGCTX" eval ck --quiet \
  --seq-len 200
expect_in "$OUT/stderr" "segment length 64 neither divides nor .*\(eval: another --seq-len or world size, or another schedule" \
  "... names the schedule there"
expect_exit 2 "a length past the memory" -- "$LONGCTX" eval ck --quiet --seq-len 64G
expect_in "$OUT/stderr" "eval \(model.layers=2, model.dim=32, --seq-len=68719476736 over 1 rank\)" "... names the length"

# A cell's line that cannot be written ends the run there (before: every cell was scored first, then exit 1).
expect_exit 1 "eval with standard output on a full disk" -- bash -c "'$LONGCTX' eval ck --quiet --seq-len 256,1K \
  --depths 0,100 --sequences 1 > /dev/full"
expect_in "$OUT/stderr" "standard output: No space left on device: the result of N = 256, depth 0% is lost; the cells after it are not scored$" \
  "... after the first cell, saying so"

finish
