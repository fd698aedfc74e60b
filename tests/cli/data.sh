#!/usr/bin/env bash
# longctx data import --ids (a tokenizer's ids: .npy or raw little-endian), data inspect and data verify,
# checked with numpy / h5py, and train reading the ids.
LONGCTX=$1
DIGEST="$(cd "$(dirname "$0")" && pwd)/checkpoint_digest.py"
source "$(dirname "$0")/lib.sh"
cd "$OUT"

/usr/bin/python3 - <<'PY' || { echo "numpy could not write the inputs"; exit 1; }
import numpy as np
rng = np.random.default_rng(7)
np.save("a.npy", rng.integers(0, 1000, size=3000).astype(np.uint16))
np.save("b.npy", np.arange(12, dtype=np.int64).reshape(3, 4))      # rows one after another
rng.integers(0, 1000, size=500).astype("<u2").tofile("raw.bin")    # nanoGPT's train.bin layout
np.save("far.npy", np.array([5, 999, 1000, 7], dtype=np.int32))
np.save("float.npy", np.array([1.0, 2.0]))
PY

# ---- import ----
expect_exit 0 "import two .npy files" -- "$LONGCTX" data import --ids a.npy b.npy --vocab 1000 --out ab.h5 --quiet
expect_in "$OUT/stdout" "2 document\(s\), 3012 tokens -> ab.h5" "says documents and tokens"
expect_in "$OUT/stdout" "vocab 1000; stored as uint16" "says the vocabulary and the storage"
/usr/bin/python3 - <<'PY' && pass "h5py reads every id, the document offsets and the attributes" || fail "stored ids differ"
import h5py, numpy as np, sys
with h5py.File("ab.h5", "r") as f:
    want = np.concatenate([np.load("a.npy").astype(np.int64), np.load("b.npy").ravel()])
    t = f["tokens"]
    ok = (t.dtype == np.uint16 and np.array_equal(t[...].astype(np.int64), want)
          and list(f["doc_offsets"][...]) == [0, 3000, 3012] and f.attrs["vocab"] == 1000
          and f.attrs["token_count"] == 3012 and f.attrs["document_count"] == 2 and t.fletcher32)
sys.exit(0 if ok else 1)
PY
expect_exit 0 "raw ids from standard input" -- sh -c "\"$LONGCTX\" data import --ids - --ids-dtype uint16 --vocab 1000 --out stdin.h5 --quiet <raw.bin"
# Without --vocab a pipe's storage is what its dtype needs (int32 for uint32): said where a narrower one holds
# the vocabulary, with how to store it so.
expect_exit 0 "raw uint32 ids from standard input, no --vocab" -- sh -c "/usr/bin/python3 -c \"import numpy, sys; sys.stdout.buffer.write(numpy.arange(5, dtype='<u4').tobytes())\" | \"$LONGCTX\" data import --ids - --ids-dtype uint32 --out wide32.h5 --quiet"
expect_in "$OUT/stdout" "stored as int32 \(sized before the pipe was read; uint8 holds vocab 5: --vocab 5 stores it so, 5 x 1 bytes\)" \
  "says a narrower storage holds it, and how"
mkfifo ids.fifo
timeout 60 sh -c 'cat raw.bin >ids.fifo' </dev/null >/dev/null 2>&1 &
expect_exit 0 "raw ids from a FIFO and a file" -- "$LONGCTX" data import --ids ids.fifo raw.bin --ids-dtype uint16 --vocab 1000 --out fifo.h5 --quiet
expect_in "$OUT/stdout" "2 document\(s\), 1000 tokens" "... both read whole"
/usr/bin/python3 -c "
import h5py, numpy as np, sys
raw = np.fromfile('raw.bin', dtype='<u2')
with h5py.File('stdin.h5') as s, h5py.File('fifo.h5') as f:
    sys.exit(0 if np.array_equal(s['tokens'][...], raw) and np.array_equal(f['tokens'][...], np.concatenate([raw, raw])) else 1)
" && pass "... and stored exactly" || fail "raw ids stored otherwise"
# A Megatron-LM indexed dataset as Megatron's _IndexWriter lays it out (header, int32 lengths, int64 byte
# offsets, int64 document indices; PREFIX.bin the ids): its documents are kept.
/usr/bin/python3 - <<'PY' || fail "could not write a Megatron dataset"
import struct, numpy as np
docs = [[[11, 12, 13], [14]], [[50256, 15]]]
seqs = [np.array(s, dtype=np.uint16) for d in docs for s in d]
open("mg_text_document.bin", "wb").write(b"".join(s.tobytes() for s in seqs))
lengths = np.array([len(s) for s in seqs], np.int32)
offsets = np.concatenate([[0], np.cumsum(lengths[:-1] * 2)]).astype(np.int64)
doc_idx = np.array([0, 2, 3], np.int64)
with open("mg_text_document.idx", "wb") as f:
    f.write(b"MMIDIDX\x00\x00" + struct.pack("<QBQQ", 1, 8, len(seqs), len(doc_idx)))
    f.write(lengths.tobytes() + offsets.tobytes() + doc_idx.tobytes())
PY
expect_exit 0 "a Megatron .idx/.bin" -- "$LONGCTX" data import --ids mg_text_document.idx --vocab 50304 --out mg.h5 --quiet
expect_in "$OUT/stdout" "2 document\(s\), 6 tokens -> mg.h5" "keeps its documents"
/usr/bin/python3 -c "
import h5py, sys
with h5py.File('mg.h5') as f:
    sys.exit(0 if list(f['tokens'][...]) == [11, 12, 13, 14, 50256, 15] and list(f['doc_offsets'][...]) == [0, 4, 6] else 1)
" && pass "... and its ids, in order" || fail "Megatron ids or documents differ"
expect_exit 0 "its .bin as raw ids" -- "$LONGCTX" data import --ids mg_text_document.bin --ids-dtype uint16 --out mgraw.h5 --quiet
expect_in "$OUT/stderr" "mg_text_document.bin: a Megatron index is beside it; give that" "points to the .idx"
expect_exit 2 "its .bin with another dtype than its index says" -- "$LONGCTX" data import --ids mg_text_document.bin --ids-dtype int32 --out x.h5 --quiet
expect_in "$OUT/stderr" "the Megatron index beside it says its ids are uint16, not --ids-dtype int32" "is refused, naming both"
expect_exit 2 "its .bin without --ids-dtype" -- "$LONGCTX" data import --ids mg_text_document.bin --out x.h5 --quiet
expect_in "$OUT/stderr" "mg_text_document.bin: raw token ids need --ids-dtype; the Megatron index beside it says uint16: give the index \(--ids mg_text_document.idx" \
  "points to the index (before: --ids-dtype alone)"
expect_exit 3 "a Megatron index on standard input" -- sh -c "\"$LONGCTX\" data import --ids - --ids-dtype uint16 --out x.h5 --quiet <mg_text_document.idx"
expect_in "$OUT/stderr" "standard input: a Megatron index \(MMIDIDX\), not ids" "is not read as raw ids"
head -c 8 mg_text_document.bin >cut_text_document.bin
cp mg_text_document.idx cut_text_document.idx
expect_exit 3 "a Megatron index whose .bin is cut short" -- "$LONGCTX" data import --ids cut_text_document.idx --out x.h5 --quiet
expect_in "$OUT/stderr" "cut_text_document.idx: sequence 2 \(2 ids at byte 8\) lies outside cut_text_document.bin \(8 bytes\)" \
  "names the sequence and the file"
head -c 20 mg_text_document.idx >short_text_document.idx && cp mg_text_document.bin short_text_document.bin
expect_exit 3 "a Megatron index cut short in its header" -- "$LONGCTX" data import --ids short_text_document.idx --out x.h5 --quiet
expect_in "$OUT/stderr" "short_text_document.idx: a Megatron index cut short: 20 bytes, and its header alone takes 34" \
  "says so (before: 'no MMIDIDX header')"
head -c 5 mg_text_document.idx >short_text_document.idx
expect_exit 3 "... and within its MMIDIDX" -- "$LONGCTX" data import --ids short_text_document.idx --out x.h5 --quiet
expect_in "$OUT/stderr" "short_text_document.idx: a Megatron index cut short: 5 bytes" "says so (before: 'not a Megatron index')"
expect_exit 0 "without --vocab" -- "$LONGCTX" data import --ids b.npy --out b.h5 --quiet
expect_in "$OUT/stdout" "ids up to 11; vocab 12 \(the largest id \+ 1" "the vocabulary is the largest id + 1, and said so"

expect_exit 2 "raw ids without --ids-dtype" -- "$LONGCTX" data import --ids raw.bin --out x.h5 --quiet
expect_in "$OUT/stderr" "raw.bin: not a .npy file; raw token ids need --ids-dtype" "says what is missing"
expect_exit 3 "an id past --vocab" -- "$LONGCTX" data import --ids a.npy far.npy --vocab 1000 --out x.h5 --quiet
expect_in "$OUT/stderr" "far.npy: id 1000 at index 2 \(counting from 0\) is outside \[0, 1000\): --vocab is 1000" "names the file, the id and its index"
[ ! -e x.h5 ] && [ ! -e x.h5.tmp ] && pass "... and writes nothing" || fail "a refused import left x.h5 or x.h5.tmp"
expect_exit 3 "float ids" -- "$LONGCTX" data import --ids float.npy --out x.h5 --quiet
expect_in "$OUT/stderr" "float.npy: dtype '<f8' in its .npy header: token ids must be integers" "says ids must be integers"
head -c 999 raw.bin >odd.bin
expect_exit 3 "a raw file of half an id" -- "$LONGCTX" data import --ids odd.bin --ids-dtype uint16 --out x.h5 --quiet
expect_in "$OUT/stderr" "odd.bin: holds 999 bytes, not a whole number of uint16 ids" "says the file is not whole ids"
expect_exit 2 "--text and --ids together" -- "$LONGCTX" data import --ids a.npy --text raw.bin --out x.h5 --quiet
expect_exit 2 "--text with LONGCTX_IDS set" -- env LONGCTX_IDS=a.npy "$LONGCTX" data import --text raw.bin --out x.h5 --quiet
expect_in "$OUT/stderr" "give --text or --ids \(from environment variable LONGCTX_IDS\), not both" "names where --ids came from"
expect_exit 2 "neither --text nor --ids" -- "$LONGCTX" data import --out x.h5 --quiet
expect_in "$OUT/stderr" "needs --text FILES \(byte tokens\) or --ids FILES" "says what it needs"
# Started with standard input closed (<&-, cron, a daemon): '-' is refused (before: it read a pipe of Open
# MPI's that had taken the number, and waited forever).
# A long import says how far it got, every LONGCTX_PROGRESS_SECONDS (before: every 10 s whatever it said).
expect_exit 0 "import a slow pipe with LONGCTX_PROGRESS_SECONDS=0.3" -- sh -c \
  "{ printf abc; sleep 1.2; printf def; } | LONGCTX_PROGRESS_SECONDS=0.3 \"$LONGCTX\" data import --text - --out slow.h5"
expect_in "$OUT/stderr" "^\[longctx info r0\] data import: 0 MiB so far, 0 MB/s$" "... says how far it got"
# A short stream makes a file of its size: /tokens' chunk is no longer than the ids (before: 1 MiB for any
# stream); a long one is chunked at 1 MiB, its bytes as they came.
expect_exit 0 "import 12 bytes from a pipe" -- sh -c "printf 'hello world\n' | \"$LONGCTX\" data import --text - --out short_stream.h5 --quiet"
head -c 2500000 /dev/urandom >long_stream.bin
expect_exit 0 "import 2.5 MB from a pipe" -- sh -c "cat long_stream.bin | \"$LONGCTX\" data import --text - --out long_stream.h5 --quiet"
/usr/bin/python3 -c "
import os, h5py, numpy as np
with h5py.File('short_stream.h5') as f:
    assert f['tokens'].chunks == (12,) and bytes(f['tokens'][:]) == b'hello world\n', (f['tokens'].chunks, f['tokens'][:])
assert os.path.getsize('short_stream.h5') < 16384, os.path.getsize('short_stream.h5')
with h5py.File('long_stream.h5') as f:
    assert f['tokens'].chunks == (1 << 20,), f['tokens'].chunks
    assert (f['tokens'][:] == np.fromfile('long_stream.bin', np.uint8)).all()
" && pass "... a file of its size, chunked no longer than its ids; a long stream in 1 MiB chunks, as it came" ||
  fail "stream chunks: $(ls -l short_stream.h5 long_stream.h5)"
# What an import replaces is said as what it was: an empty file (which may go) or a token dataset.
printf 'hello' >hello.txt && : >was_empty.h5
expect_exit 0 "import over an empty file" -- "$LONGCTX" data import --text hello.txt --out was_empty.h5
expect_in "$OUT/stderr" "was_empty.h5: the empty file that was there is replaced" "... says it replaced an empty file"
expect_exit 0 "import over that token dataset" -- "$LONGCTX" data import --text hello.txt --out was_empty.h5
expect_in "$OUT/stderr" "was_empty.h5: the token dataset that was there is replaced" "... then a token dataset"
# Under mpirun, standard input comes through it, and an interrupted mpirun closes it before its SIGTERM reaches
# the ranks (1 s later here): the import waits after the end for that signal (before: it wrote the stream's
# first part as the whole dataset, exit 0 on rank 0; from the data import audit). Uninterrupted, it is written.
expect_exit 0 "import standard input under mpirun" -- sh -c "printf abc | ${MPIRUN[*]} -np 2 \"$LONGCTX\" data import --text - --out mpi_stdin.h5"
expect_in "$OUT/stderr" "data import: standard input ended; .* waiting 3.0 s for a stop signal" "... says it waits for a stop"
expect_in "$OUT/stdout" "imported 1 document\(s\), 3 byte tokens -> mpi_stdin.h5" "... and imports it"
# ... also by another name (before: /dev/stdin did not wait; from the regression audit).
expect_exit 0 "import /dev/stdin under mpirun" -- sh -c "printf abc | ${MPIRUN[*]} -np 1 \"$LONGCTX\" data import --text /dev/stdin --out mpi_devstdin.h5"
expect_in "$OUT/stderr" "data import: standard input ended; .* waiting 3.0 s for a stop signal" "... waits too"
(printf abc; sleep 20.25) | "${MPIRUN[@]}" -np 2 "$LONGCTX" data import --text - --out mpi_int.h5 --quiet >"$OUT/stdout" 2>"$OUT/stderr" &
mpirun_pid=$!
for _ in $(seq 300); do [ -e mpi_int.h5.tmp ] && break; sleep 0.1; done
sleep 1
kill -INT "$mpirun_pid"; wait "$mpirun_pid"
pkill -xf "sleep 20.25"
[ ! -e mpi_int.h5 ] && [ ! -e mpi_int.h5.tmp ] && pass "mpirun interrupted while standard input is read: nothing written" ||
  fail "an interrupted import left $(ls mpi_int.h5* 2>&1): $(cat "$OUT/stdout" "$OUT/stderr" | head -5)"
expect_exit 2 "--text - with standard input closed" -- timeout 60 sh -c "\"$LONGCTX\" data import --text - --out closed.h5 --quiet <&-"
expect_in "$OUT/stderr" "--text -: standard input is closed" "says so"
expect_exit 2 "--vocab with --text" -- "$LONGCTX" data import --text raw.bin --vocab 100 --out x.h5 --quiet
expect_in "$OUT/stderr" "error: --vocab goes with --ids" "names --vocab"
expect_exit 2 "LONGCTX_VOCAB with --text" -- env LONGCTX_VOCAB=100 "$LONGCTX" data import --text raw.bin --out x.h5 --quiet
expect_in "$OUT/stderr" "error: --vocab goes with --ids; text is byte tokens, vocab 256 \(from environment variable LONGCTX_VOCAB\)$" \
  "says where --vocab came from, once"
# The default given explicitly is what --text means (before: refused as given).
expect_exit 0 "--text with --vocab 0" -- "$LONGCTX" data import --text raw.bin --vocab 0 --out text_defaults.h5 --quiet
expect_exit 2 "an unknown --ids-dtype" -- "$LONGCTX" data import --ids raw.bin --ids-dtype uint12 --out x.h5 --quiet
expect_in "$OUT/stderr" "--ids-dtype uint12: one of uint8\|int8\|uint16" "lists the dtypes"
expect_exit 0 "a .npy given to --text" -- "$LONGCTX" data import --text a.npy --out npytext.h5 --quiet
expect_in "$OUT/stderr" "looks like a NumPy .npy file: .*go in with --ids instead" "points to --ids"
# A token dataset given as raw ids: HDF5's signature is 8 bytes (before: only 6 were looked at, no warning).
expect_exit 0 "a token dataset given to --ids" -- "$LONGCTX" data import --ids npytext.h5 --ids-dtype uint8 --out h5ids.h5 --quiet
expect_in "$OUT/stderr" "npytext.h5 looks like an HDF5 file: its bytes are read as uint8 ids as they are" "warns that it is HDF5"
[ "$(grep -c "looks like" "$OUT/stderr")" = 1 ] && pass "... once (the file is read twice)" || fail "warned $(grep -c "looks like" "$OUT/stderr") times"
# A file whose ids change between the two readings (no --vocab), as many as before and none past the largest:
# refused (before: only a changed count or a larger id was noticed, and these were imported as read the
# second time). The import stops itself between them (LONGCTX_FAULT_STOP_BETWEEN_READS) while the file changes.
cp raw.bin changing.bin
LONGCTX_FAULT_STOP_BETWEEN_READS=1 "$LONGCTX" data import --ids changing.bin --ids-dtype uint16 --out changing.h5 --quiet \
  >"$OUT/stdout" 2>"$OUT/stderr" &
import=$!
for _ in $(seq 300); do [ "$(ps -o stat= -p "$import" | cut -c1)" = T ] && break; sleep 0.1; done
/usr/bin/python3 -c "import numpy as np; np.fromfile('changing.bin', dtype='<u2')[::-1].tofile('changing.bin')"
kill -CONT "$import"
wait "$import"
status=$?
[ "$status" = 3 ] && pass "a file whose ids changed between the two readings: exit 3" || fail "a file that changed: exit $status"
expect_in "$OUT/stderr" "changing.bin: changed while it was imported \(its ids are not those first read\)" "... says so"
[ -z "$(ls changing.h5* 2>/dev/null)" ] && pass "... and writes nothing" || fail "left $(ls changing.h5*)"
# Ended by SIGUSR1 (Slurm's --signal) or SIGXFSZ (ulimit -f) while it waits on a pipe: no sig.h5.tmp left
# (before: only SIGINT, SIGTERM and SIGHUP removed it).
for sig in USR1 XFSZ; do
  rm -f sig.fifo && mkfifo sig.fifo
  "$LONGCTX" data import --ids sig.fifo --ids-dtype uint16 --vocab 1000 --out sig.h5 --quiet >"$OUT/stdout" 2>"$OUT/stderr" &
  import=$!
  exec 7>sig.fifo  # a writer that sends nothing yet: the import waits in its read
  for _ in $(seq 300); do [ -e sig.h5.tmp ] && break; sleep 0.1; done
  [ -e sig.h5.tmp ] && pass "SIG$sig: sig.h5.tmp claimed before the signal" || fail "SIG$sig: no sig.h5.tmp to remove"
  kill -"$sig" "$import"
  wait "$import"
  status=$?
  exec 7>&-
  [ "$status" = $((128 + $(kill -l "$sig"))) ] && [ -z "$(ls sig.h5* 2>/dev/null)" ] &&
    pass "SIG$sig: ends as by default, nothing left" || fail "SIG$sig: exit $status, left $(ls sig.h5* 2>/dev/null)"
done
expect_exit 2 "--out - (standard output)" -- "$LONGCTX" data import --ids a.npy --out - --quiet
expect_in "$OUT/stderr" "--out -: a token dataset is an HDF5 file" "says why"
mkfifo twice.fifo
expect_exit 2 "one FIFO given twice" -- timeout 60 "$LONGCTX" data import --ids twice.fifo twice.fifo --ids-dtype uint16 --out x.h5 --quiet
expect_in "$OUT/stderr" "twice.fifo and twice.fifo are the same pipe, which can be read once" "is refused, not waited on"
cp a.npy damaged.npy
printf '\x92' | dd of=damaged.npy bs=1 count=1 conv=notrunc status=none
expect_exit 3 "a .npy whose magic is damaged" -- "$LONGCTX" data import --ids damaged.npy --out x.h5 --quiet
expect_in "$OUT/stderr" "damaged.npy: starts as a .npy file \(NUMPY\) but its first byte is not" "is not read as raw ids"

# ---- inspect ----
expect_exit 0 "inspect" -- "$LONGCTX" data inspect ab.h5 --seq-len 128 --quiet
expect_in "$OUT/stdout" "vocab 1000  tokens 3012 \(uint16" "shows vocabulary, tokens and dtype"
expect_in "$OUT/stdout" "documents 2  tokens per document: min 12, median 1506, max 3000" "shows the documents"
# (3012 - 1) / 128 = 23 sequences; the last 1/20 (at least one) held out.
expect_in "$OUT/stdout" "at seq_len 128: 23 sequence\(s\), 22 to train on, 1 held out" "counts the sequences train uses"
expect_in "$OUT/stdout" "^  digest 0x[0-9a-f]{16}$" "shows /tokens' digest"
expect_exit 2 "inspect --seq-len -5" -- "$LONGCTX" data inspect ab.h5 --seq-len -5 --quiet
# 1 is no length train takes (before: "N to train on" for it).
expect_exit 2 "inspect --seq-len 1" -- "$LONGCTX" data inspect ab.h5 --seq-len 1 --quiet
expect_in "$OUT/stderr" "--seq-len 1: it must be >= 2, as data.seq_len" "... says why"
# 0 in any spelling is "not asked", as the message says (before: 0K or 00 was refused).
expect_exit 0 "inspect --seq-len 0K" -- "$LONGCTX" data inspect ab.h5 --seq-len 0K --quiet
grep -q "at seq_len" "$OUT/stdout" && fail "counted sequences at 0K: $(cat "$OUT/stdout")" || pass "... no sequences counted"
expect_exit 0 "inspect --seq-len 2^63 - 1" -- "$LONGCTX" data inspect ab.h5 --seq-len 9223372036854775807 --quiet
expect_in "$OUT/stdout" "train needs at least seq_len \+ 1 = 9223372036854775808 tokens" "... the count without a wrap"
expect_exit 0 "inspect --json" -- "$LONGCTX" data inspect ab.h5 --seq-len 128 --json --quiet
/usr/bin/python3 -c "
import json, sys
d = json.loads(open('$OUT/stdout').read())
sys.exit(0 if (d['vocab'], d['tokens'], d['documents'], d['dtype'], d['sequences']['train'], d['document_tokens']['max']) == (1000, 3012, 2, 'uint16', 22, 3000) else 1)
" && pass "... one JSON object with the same figures" || fail "inspect --json: $(cat "$OUT/stdout")"
# /tokens' digest (io/digest.hpp) computed again in numpy, for each storage width: it is the ids', not the
# bytes' (the same ids stored as uint16 or int32 have the same digest).
expect_exit 0 "import the same ids as int32 (--vocab 70000)" -- "$LONGCTX" data import --ids a.npy b.npy --vocab 70000 --out ab32.h5 --quiet
expect_exit 0 "import bytes as text (uint8)" -- "$LONGCTX" data import --text raw.bin --out bytes.h5 --quiet
for file in ab.h5 ab32.h5 bytes.h5; do
  expect_exit 0 "numpy's digest of $file's /tokens matches its attribute" -- /usr/bin/python3 "$DIGEST" check $file
done
expect_exit 0 "inspect the int32 copy" -- "$LONGCTX" data inspect ab32.h5 --json --quiet
wide=$(/usr/bin/python3 -c "import json; d = json.load(open('$OUT/stdout')); print(d['dtype'], d['digest'])")
expect_exit 0 "inspect the uint16 one" -- "$LONGCTX" data inspect ab.h5 --json --quiet
[ "$wide" = "int32 $(/usr/bin/python3 -c "import json; print(json.load(open('$OUT/stdout'))['digest'])")" ] &&
  pass "... the same digest at both widths" || fail "digests: $wide / $(cat "$OUT/stdout")"
expect_exit 0 "inspect under mpirun prints once" -- "${MPIRUN[@]}" -np 2 "$LONGCTX" data inspect ab.h5 --quiet
[ "$(grep -c '^token dataset' "$OUT/stdout")" -eq 1 ] && pass "... one report" || fail "inspect -np 2: $(cat "$OUT/stdout")"
expect_exit 3 "inspect a missing file" -- "$LONGCTX" data inspect nope.h5 --quiet
expect_in "$OUT/stderr" "nope.h5: no such file" "says so"
/usr/bin/python3 -c "
import h5py
with h5py.File('other.h5', 'w') as f: f.attrs['format'] = 'longctx-checkpoint'
"
expect_exit 3 "inspect another kind of file" -- "$LONGCTX" data inspect other.h5 --quiet
expect_in "$OUT/stderr" "other.h5: not a longctx token dataset \(its format is 'longctx-checkpoint'" "says what it is"

# ---- verify ----
expect_exit 2 "verify a file and ''" -- "$LONGCTX" data verify ab.h5 "" --quiet
expect_in "$OUT/stderr" "data verify: an empty path among its arguments" "says a path is empty (not that none was given)"
expect_exit 0 "verify" -- "$LONGCTX" data verify ab.h5 stdin.h5 --quiet
expect_in "$OUT/stdout" "ab.h5: ok \(3012 tokens in 2 document\(s\), ids 0\.\.999 of vocab 1000\)" "reports each file"
# flip_byte FILE DATASET AT: flips the lowest bit of byte AT of DATASET's first chunk in FILE.
flip_byte() {
  /usr/bin/python3 - "$@" <<'PY' || fail "could not flip byte $3 of $1's /$2"
import h5py, sys
path, dataset, at = sys.argv[1], sys.argv[2], int(sys.argv[3])
with h5py.File(path, "r") as f:
    offset = f[dataset].id.get_chunk_info(0).byte_offset + at
with open(path, "r+b") as f:
    f.seek(offset); b = f.read(1); f.seek(offset); f.write(bytes([b[0] ^ 0x01]))
PY
}
cp ab.h5 flipped.h5
flip_byte flipped.h5 tokens 100
expect_exit 3 "verify a flipped byte" -- "$LONGCTX" data verify ab.h5 flipped.h5 --quiet
expect_in "$OUT/stdout" "flipped.h5: DAMAGED: /tokens \[0, 3012\) cannot be read \(.*Fletcher32" "names the damaged tokens and the checksum"
expect_in "$OUT/stdout" "ab.h5: ok" "... and still checks the others"
# A /doc_offsets that cannot be read is named, and the tokens are checked still (before: "not opened", the
# figures null and no token read).
cp ab.h5 offsets_flipped.h5
flip_byte offsets_flipped.h5 doc_offsets 9  # 3000, the second offset, becomes another number
expect_exit 3 "verify a flipped byte of /doc_offsets" -- "$LONGCTX" data verify offsets_flipped.h5 --json --quiet
expect_in "$OUT/stdout" '"ok": false, "tokens": 3012, "documents": null, "vocab": 1000, "ids_read": 3012,' \
  "every token read, the documents unknown"
expect_in "$OUT/stdout" '/doc_offsets: read failed: Fletcher32 checksum mismatch \(damaged on disk\): the documents are not known' \
  "names /doc_offsets"
# So is a /doc_offsets that is missing or not integers (before: missing, it was "not opened", without DAMAGED).
cp ab.h5 offsets_gone.h5
/usr/bin/python3 -c "
import h5py
with h5py.File('offsets_gone.h5', 'r+') as f: del f['doc_offsets']
"
expect_exit 3 "verify with /doc_offsets missing" -- "$LONGCTX" data verify offsets_gone.h5 --json --quiet
expect_in "$OUT/stdout" '"ok": false, "tokens": 3012, "documents": null, "vocab": 1000, "ids_read": 3012,.*no dataset .?/doc_offsets.?: the documents are not known' \
  "every token read, the missing /doc_offsets named"
expect_exit 3 "... and in words" -- "$LONGCTX" data verify offsets_gone.h5 --quiet
expect_in "$OUT/stdout" "^offsets_gone.h5: DAMAGED: no dataset '/doc_offsets': the documents are not known$" "says DAMAGED"
# An attribute that contradicts its dataset is damage too (before: token_count's was said without DAMAGED).
cp ab.h5 counted.h5
/usr/bin/python3 -c "
import h5py, numpy as np
with h5py.File('counted.h5', 'r+') as f: f.attrs['token_count'] = np.int64(3011)
"
expect_exit 3 "verify with a token_count that is not /tokens'" -- "$LONGCTX" data verify counted.h5 --quiet
expect_in "$OUT/stdout" "^counted.h5: DAMAGED: token_count attribute is 3011 but /tokens holds 3012 tokens$" "says DAMAGED"
cp ab.h5 lowered.h5
/usr/bin/python3 -c "
import h5py
with h5py.File('lowered.h5', 'r+') as f: f.attrs['vocab'] = 500
"
expect_exit 3 "verify ids past the vocab attribute" -- "$LONGCTX" data verify lowered.h5 --json --quiet
/usr/bin/python3 -c "
import json, sys
d = json.loads(open('$OUT/stdout').read())
sys.exit(0 if not d['ok'] and d['outside'] > 0 and 'is outside [0, vocab=500)' in d['problems'][0] else 1)
" && pass "... --json names them" || fail "verify --json: $(cat "$OUT/stdout")"
/usr/bin/python3 -c "
import h5py, numpy as np
with h5py.File('byhand.h5', 'w') as f:
    f['tokens'] = np.arange(10, dtype=np.int32); f['doc_offsets'] = np.array([0, 10])
    f.attrs.update({'format': 'longctx-tokens', 'format_version': 1, 'vocab': 10})
"
expect_exit 0 "verify a token file made by hand" -- "$LONGCTX" data verify byhand.h5 --quiet
expect_in "$OUT/stdout" "byhand.h5: ok \(10 tokens in 1 document\(s\), ids 0\.\.9 of vocab 10; no checksum on /tokens, /doc_offsets;" \
  "says what no checksum covers"
expect_in "$OUT/stdout" "no digest on /tokens \(imported by an older longctx, or made otherwise: \`data import\` again adds one\)" \
  "... and that it has no digest"
# ... said of a damaged one too (before: of a whole one only; --json had it for both).
/usr/bin/python3 -c "import h5py; h5py.File('byhand.h5', 'r+').attrs['vocab'] = 5"
expect_exit 3 "verify it with vocab 5" -- "$LONGCTX" data verify byhand.h5 --quiet
expect_in "$OUT/stdout" "byhand.h5: DAMAGED: /tokens\[5\] = 5 is outside \[0, vocab=5\) .* \(no checksum on /tokens, /doc_offsets; no digest on /tokens" \
  "names the damage, and what no checksum covers"
/usr/bin/python3 -c "import h5py; h5py.File('byhand.h5', 'r+').attrs['vocab'] = 10"
# Float /doc_offsets (a fraction read as int64 went unseen: 33.7 was 33, and verify said ok) are refused.
/usr/bin/python3 -c "
import h5py, numpy as np
with h5py.File('byhand.h5', 'r') as f, h5py.File('float_offsets.h5', 'w') as g:
    g['tokens'] = f['tokens'][...]; g['doc_offsets'] = np.array([0, 3.7, 10.0])
    g.attrs.update(dict(f.attrs))
"
expect_exit 3 "verify a token file with float /doc_offsets" -- "$LONGCTX" data verify float_offsets.h5 --quiet
expect_in "$OUT/stdout" "float_offsets.h5.*/doc_offsets.*dtype float64, expected an integer type \(token positions\)" "... names the dtype"
# uint64 /doc_offsets read as themselves; one above int64's range is quoted as stored (before: HDF5's
# conversion clamped it to 9223372036854775807).
/usr/bin/python3 -c "
import h5py, numpy as np
for name, offsets in (('u64_offsets.h5', [0, 4, 10]), ('u64_huge_offset.h5', [0, 2**63 + 5, 10])):
    with h5py.File('byhand.h5', 'r') as f, h5py.File(name, 'w') as g:
        g['tokens'] = f['tokens'][...]; g['doc_offsets'] = np.array(offsets, dtype=np.uint64)
        g.attrs.update(dict(f.attrs))
"
expect_exit 0 "verify a token file with uint64 /doc_offsets" -- "$LONGCTX" data verify u64_offsets.h5 --quiet
expect_in "$OUT/stdout" "u64_offsets.h5: ok \(10 tokens in 2 document\(s\)" "... reads them"
expect_exit 3 "verify a uint64 /doc_offsets above int64's range" -- "$LONGCTX" data verify u64_huge_offset.h5 --quiet
expect_in "$OUT/stdout" "/doc_offsets\[1\] = 9223372036854775813: offsets must rise from 0 to the token count 10" \
  "... quotes it as stored"
# A file that is no token dataset: its figures are unknown, null in --json (before: "tokens": 0, "vocab": 0).
printf 'not hdf5' >nothdf5.h5
expect_exit 3 "verify --json a file that is not HDF5, then a good one" -- "$LONGCTX" data verify nothdf5.h5 byhand.h5 --json --quiet
/usr/bin/python3 -c "
import json, sys
bad, good = [json.loads(line) for line in open('$OUT/stdout')]
sys.exit(0 if [bad[k] for k in ('ok', 'tokens', 'documents', 'vocab', 'ids_read', 'smallest_id', 'largest_id', 'digest')] ==
         [False, None, None, None, 0, None, None, None] and 'cannot open as an HDF5 file' in bad['problems'][0] and
         [good[k] for k in ('ok', 'tokens', 'documents', 'vocab', 'smallest_id', 'largest_id')] == [True, 10, 1, 10, 0, 9]
         else 1)
" && pass "... null where the file gave nothing, the figures of the next" || fail "verify --json: $(cat "$OUT/stdout")"
# ... and a text file given where a token dataset goes says how to make one (before: "not HDF5" alone).
expect_exit 3 "train on a text file as data.path" -- "$LONGCTX" train --quiet --data.task file --data.path nothdf5.h5 \
  --model.vocab 256 --data.seq_len 256 --train.steps 1
expect_in "$OUT/stderr" "nothdf5.h5: cannot open as an HDF5 file .*A token dataset is made by \`longctx data import\`: --text nothdf5.h5 for byte tokens" \
  "... names data import"
# A token a tool changed, its chunk's checksum rewritten with it: Fletcher32 passes, the digest does not.
cp ab.h5 edited.h5
/usr/bin/python3 -c "
import h5py
with h5py.File('edited.h5', 'r+') as f: f['tokens'][1000] = (int(f['tokens'][1000]) + 1) % 1000
"
expect_exit 3 "verify a token changed with its checksum" -- "$LONGCTX" data verify edited.h5 --json --quiet
/usr/bin/python3 -c "
import json, sys
d = json.loads(open('$OUT/stdout').read())
sys.exit(0 if not d['ok'] and d['digest'] and d['outside'] == 0 and len(d['problems']) == 1 and
         \"/tokens' digest is 0x\" in d['problems'][0] and 'tokens changed since the import' in d['problems'][0] else 1)
" && pass "... the digest finds it" || fail "verify edited: $(cat "$OUT/stdout")"
cp ab.h5 text_digest.h5
/usr/bin/python3 -c "
import h5py
with h5py.File('text_digest.h5', 'r+') as f: f['tokens'].attrs['digest'] = 'abc'
"
expect_exit 3 "verify a file whose digest is no integer, then another" -- "$LONGCTX" data verify text_digest.h5 ab.h5 --quiet
expect_in "$OUT/stdout" "^text_digest.h5: DAMAGED: .*digest" "names the attribute"
expect_in "$OUT/stdout" "^ab.h5: ok" "... and goes on to the next file"
expect_exit 3 "verify a missing file" -- "$LONGCTX" data verify nope.h5 --quiet
expect_in "$OUT/stdout" "^nope.h5: no such file" "says so, not 'damaged'"

# ---- inputs an outside review found refused wrongly (before: each refused) ----
/usr/bin/python3 - <<'PY' || fail "numpy could not write the review's inputs"
import numpy as np, struct
np.array([20115], '<u2').tofile('npyish.bin')          # its bytes begin as .npy's magic does: \x93N
np.save('wide.npy', np.array([5, 70000], '<i4'))
def npy(name, header, array):
    h = header.encode(); h += b' ' * ((64 - (10 + len(h) + 1) % 64) % 64) + b'\n'
    open(name, 'wb').write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(h)) + h + array.tobytes())
ids = np.arange(6, dtype='<u2').reshape(2, 3)
npy('order.npy', "{'shape': (2, 3), 'descr': '<u2', 'fortran_order': False}", ids)
npy('spaced.npy', "{'descr' :  '<u2' , 'fortran_order' : False , 'shape' : ( 2 , 3 ) , }", ids)
npy('bare_shape.npy', "{'descr': '<u2', 'fortran_order': False, 'shape': 6, }", ids)
for i, shape in enumerate(["(6,,)", "(,6)", "(6]", "(6)", "[6]"]):  # NumPy refuses each (before: read)
    npy('bad_shape%d.npy' % i, "{'descr': '<u2', 'fortran_order': False, 'shape': %s, }" % shape, ids)
npy('trailing.npy', "{'descr': '<u2', 'fortran_order': False, 'shape': (2, 3,), }", ids)
npy('huge_shape.npy', "{'descr': '<u2', 'fortran_order': False, 'shape': (99999999999999999999,), }", ids)
npy('huge_bad.npy', "{'descr': '<u2', 'fortran_order': False, 'shape': (99999999999999999999x,), }", ids)
npy('python2.npy', "{'descr': '<u2', 'fortran_order': False, 'shape': (2L, 3L), }", ids)  # NumPy under Python 2
npy('no_order.npy', "{'descr': 'u2', 'fortran_order': False, 'shape': (2, 3), }", ids)    # no byte order: the machine's
npy('column.npy', "{'descr': '<u2', 'fortran_order': True, 'shape': (6, 1), }", ids)      # one long axis: either order
npy('order_text.npy', "{'descr': '<u2', 'fortran_order': 'False', 'shape': (6,), }", ids)  # NumPy refuses a string
PY
expect_exit 0 "raw uint16 ids that begin as .npy's magic does" -- "$LONGCTX" data import --ids npyish.bin --ids-dtype uint16 --out npyish.h5 --quiet
/usr/bin/python3 -c "import h5py, sys; sys.exit(0 if list(h5py.File('npyish.h5', 'r')['tokens'][:]) == [20115] else 1)" &&
  pass "... holds the id 20115" || fail "npyish.h5 does not hold [20115]"
for name in order spaced python2 no_order column; do
  expect_exit 0 "a .npy header NumPy reads: another key order or spacing, (2L, 3L), 'u2', (6, 1) Fortran ($name)" -- "$LONGCTX" data import --ids $name.npy --out $name.h5 --quiet
  /usr/bin/python3 -c "import h5py, sys; sys.exit(0 if list(h5py.File('$name.h5', 'r')['tokens'][:]) == list(range(6)) else 1)" &&
    pass "... holds its 6 ids in C order" || fail "$name.h5 does not hold 0..5"
done
expect_exit 3 "a .npy fortran_order that is no True or False" -- "$LONGCTX" data import --ids order_text.npy --out ot.h5 --quiet
expect_in "$OUT/stderr" "order_text.npy: damaged .npy header: fortran_order is 'False', not True or False" "... is damage"
expect_exit 3 "a .npy shape that is no tuple" -- "$LONGCTX" data import --ids bare_shape.npy --out bare.h5 --quiet
expect_in "$OUT/stderr" "bare_shape.npy: damaged .npy shape 6" "... is damage"
for i in 0 1 2 3 4; do
  expect_exit 3 "a .npy shape NumPy refuses (bad_shape$i.npy)" -- "$LONGCTX" data import --ids bad_shape$i.npy --out bad.h5 --quiet
  expect_in "$OUT/stderr" "bad_shape$i.npy: damaged .npy shape" "... is damage"
done
# A valid shape past int64 is too large, not damaged (before: "damaged"); digits with junk are damage.
expect_exit 3 "a .npy shape of 10^20" -- "$LONGCTX" data import --ids huge_shape.npy --out huge.h5 --quiet
expect_in "$OUT/stderr" "huge_shape.npy: .npy shape \(99999999999999999999,\) is larger than any file" "... is too large"
expect_exit 3 "a .npy shape of 10^20 and a letter" -- "$LONGCTX" data import --ids huge_bad.npy --out huge.h5 --quiet
expect_in "$OUT/stderr" "huge_bad.npy: damaged .npy shape" "... is damage"
expect_exit 0 "a .npy shape with a trailing comma, (2, 3,)" -- "$LONGCTX" data import --ids trailing.npy --out trailing.h5 --quiet
expect_in "$OUT/stdout" "imported 1 document\(s\), 6 tokens" "... 6 ids"
expect_exit 0 "raw ids in a file whose size says 0 (/proc)" -- "$LONGCTX" data import --ids /proc/self/status --ids-dtype uint8 --out proc.h5 --quiet
expect_in "$OUT/stdout" "imported 1 document\(s\), [1-9][0-9]* tokens" "... are imported"
expect_exit 3 "a piped .npy wider than --ids-dtype, no --vocab" -- bash -c "'$LONGCTX' data import --ids <(cat wide.npy) --ids-dtype uint16 --out wide.h5 --quiet"
expect_in "$OUT/stderr" "id 70000 .* is outside \[0, 65536\): what the storage holds, sized before the streams were read, by --ids-dtype uint16 .*: give --vocab" \
  "... says the storage was sized by --ids-dtype (before: 'what the inputs' dtypes hold')"
expect_in "$OUT/stderr" "its .npy header says int32; --ids-dtype uint16 is for raw files .*; it sized /tokens' storage all the same, chosen before this pipe was read" \
  "... and the warning about --ids-dtype says so too (before: as if it were ignored)"

# ---- train on ids ----
TRAIN=(train --quiet --model.layers 1 --model.dim 16 --model.heads 2 --model.mlp_hidden 16 --model.segment_lengths 32,128
       --model.dilation_rates 1,2 --data.task file --data.path ab.h5 --data.seq_len 128 --train.steps 2)
expect_exit 0 "train on uint16 ids at 2 ranks" -- "${MPIRUN[@]}" -np 2 "$LONGCTX" "${TRAIN[@]}" --model.vocab 1000
expect_in "$OUT/stdout" "step +2  loss [67]\." "loss near ln(1000)"
expect_exit 2 "train with model.vocab below the file's" -- "$LONGCTX" "${TRAIN[@]}" --model.vocab 999
expect_in "$OUT/stderr" "model.vocab=999 is smaller than the vocabulary \(1000\) of data.path=ab.h5: a new run needs model.vocab >= 1000" "says why and what to give"
cp ab.h5 bad_id.h5
/usr/bin/python3 -c "
import h5py
with h5py.File('bad_id.h5', 'r+') as f: f['tokens'][5] = 5000
"
# Before the run, its tokens are checked against the file's digest, as data verify does (here: one changed with
# its chunk's checksum, which reads without an error; before: trained on). LONGCTX_TOKEN_CHECK_BYTES=0 skips it,
# and the reads below find what they read.
expect_exit 3 "train on a file with a token changed with its checksum" -- "$LONGCTX" "${TRAIN[@]/ab.h5/edited.h5}" --model.vocab 1000
expect_in "$OUT/stderr" "data.path=edited.h5 is damaged: edited.h5: DAMAGED: /tokens' digest is 0x[0-9a-f]+, its digest attribute says" \
  "... refused before the run, naming the digest"
expect_exit 0 "... trained with LONGCTX_TOKEN_CHECK_BYTES=0" -- env LONGCTX_TOKEN_CHECK_BYTES=0 "$LONGCTX" "${TRAIN[@]/ab.h5/edited.h5}" \
  --model.vocab 1000
expect_exit 0 "... and where it is past LONGCTX_TOKEN_CHECK_BYTES=1K, said" -- env LONGCTX_TOKEN_CHECK_BYTES=1K "$LONGCTX" \
  "${TRAIN[@]/ab.h5/edited.h5}" --model.vocab 1000
expect_in "$OUT/stderr" "data.path=edited.h5: .* more than LONGCTX_TOKEN_CHECK_BYTES \(1.0 KiB\) has a run read first; \`longctx data verify edited.h5\`" \
  "... pointing to data verify"
expect_exit 3 "train on a file with an id past its vocab" -- env LONGCTX_TOKEN_CHECK_BYTES=0 "$LONGCTX" "${TRAIN[@]/ab.h5/bad_id.h5}" \
  --model.vocab 8000
expect_in "$OUT/stderr" "data.path=bad_id.h5: token 5000 at position 5 is outside \[0, 1000\), the file's vocab \(\`longctx data verify bad_id.h5\` checks" \
  "is refused against the file's vocab, pointing to data verify"
# Refused as its work began, the run leaves no log.jsonl it made (before: an empty one); one that was there
# stays.
: >was_there.jsonl
expect_exit 3 "... with log.jsonl given" -- env LONGCTX_TOKEN_CHECK_BYTES=0 "$LONGCTX" "${TRAIN[@]/ab.h5/bad_id.h5}" \
  --model.vocab 8000 --log.jsonl refused.jsonl
[ ! -e refused.jsonl ] && pass "... leaves no empty log.jsonl" || fail "left refused.jsonl ($(wc -c <refused.jsonl) bytes)"
expect_exit 3 "... with a log.jsonl that was there" -- env LONGCTX_TOKEN_CHECK_BYTES=0 "$LONGCTX" "${TRAIN[@]/ab.h5/bad_id.h5}" \
  --model.vocab 8000 --log.jsonl was_there.jsonl
[ -e was_there.jsonl ] && pass "... keeps one that was there" || fail "removed was_there.jsonl"
# ... with a path that pastes back whole (before: `longctx data verify bad id's.h5`, three words to a shell).
spaced="bad id's.h5"
cp bad_id.h5 "$spaced"
expect_exit 3 "... and named with a blank and a quote" -- env LONGCTX_TOKEN_CHECK_BYTES=0 "$LONGCTX" "${TRAIN[@]/ab.h5/$spaced}" \
  --model.vocab 8000
expect_in "$OUT/stderr" "\(\`longctx data verify 'bad id'\\\\''s.h5'\` checks" "... quoted for the shell"
# A damaged chunk: the error says which tokens it read, for what, and points to data verify (before: the
# checksum's message alone).
expect_exit 3 "train on a file with a damaged chunk" -- env LONGCTX_TOKEN_CHECK_BYTES=0 "$LONGCTX" "${TRAIN[@]/ab.h5/flipped.h5}" \
  --model.vocab 1000
expect_in "$OUT/stderr" "Fletcher32.* \(reading tokens \[[0-9]+, [0-9]+\) for training; \`longctx data verify flipped.h5\` names every damaged range\)" \
  "names the tokens it read and points to data verify"
finish
