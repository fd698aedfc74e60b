#!/usr/bin/python3
"""Mutation check of the test suite: does it notice when the code is wrong?

Applies one small source change (a mutant) at a time, rebuilds the targets the mutant names, runs the
ctest tests it names (-R), and reports KILLED (a test failed: good) or SURVIVED (every test passed: the
suite does not check that behaviour). The source file is restored after each mutant, also on Ctrl-C or an
error: written whole to a temporary and renamed over it, with Ctrl-C ignored meanwhile. While a mutant is
applied, the original also lies next to it as FILE.mutate-original; a run killed outright (kill -9, a lost
terminal) leaves it there, and the next run puts it back before anything else. Mutants whose `old` text no
longer occurs exactly once are reported STALE and skipped.

usage: jobs/dev/mutate.py [--build DIR] [MUTANTS.json] [ID ...]
       jobs/dev/mutate.py --check-current [MUTANTS.json]   (no build: is each `old` text there, once? ctest's
                                                           mutants_current)
  MUTANTS.json  list of {id, file, old, new, what, targets, tests[, equivalent]} (default:
                jobs/dev/mutants.json next to this script); `equivalent` marks a change that cannot alter
                behaviour (or only speed), whose survival is expected
  ID ...        run only these mutants
  --build DIR   build directory (default: build), configured already

Exit 0 when every non-equivalent mutant was killed, 1 otherwise. It edits the working tree while it runs:
do not edit or commit the mutated files meanwhile. A full run takes about 35 minutes on 2 cores. Each
test keeps its own ctest TIMEOUT."""
import json, os, signal, subprocess, sys, time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BACKUP = '.mutate-original'  # the original of a mutated file, while the mutant is applied


def write_whole(path, text):
    """Replaces `path` by `text` at once: a crash or a signal leaves the old file or the new, never a part."""
    temporary = path + '.mutate-tmp'
    with open(temporary, 'w') as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)


def restore(source, original):
    """Puts `original` back and drops the backup; Ctrl-C waits until both are done."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        write_whole(source, original)
        os.remove(source + BACKUP)
    finally:
        signal.signal(signal.SIGINT, previous)


def restore_left_backups(mutants):
    """A run killed while a mutant was applied left its backup: put the original back first."""
    for source in sorted({os.path.join(ROOT, m['file']) for m in mutants}):
        if os.path.exists(source + BACKUP):
            restore(source, open(source + BACKUP).read())
            print(f'restored {os.path.relpath(source, ROOT)} from the backup a killed run left', flush=True)


def check_current(mutants):
    """Exit status 0 when every mutant's `old` text occurs exactly once in its file (nothing is changed)."""
    stale = []
    for m in mutants:
        try:
            count = open(os.path.join(ROOT, m['file'])).read().count(m['old'])
        except OSError as e:
            count, m = 0, dict(m, file=f"{m['file']} ({e.strerror})")
        if count != 1:
            stale.append(f"[{m['id']}] its text occurs {count} times in {m['file']}")
    seen = set()
    for m in mutants:  # an id names one mutant (before: two x2 and two hb1, of which a run took the first)
        if m['id'] in seen:
            stale.append(f"[{m['id']}] is the id of another mutant too: give it its own")
        seen.add(m['id'])
    for line in stale:
        print(line)
    print(f'{len(mutants) - len(stale)} of {len(mutants)} mutants name code that is there' +
          ('' if not stale else ': move or rewrite the others with the code they mutate'))
    return 1 if stale else 0


def main(argv):
    build = 'build'
    if '-h' in argv or '--help' in argv:
        print(__doc__)
        return 0
    if '--build' in argv:
        i = argv.index('--build')
        if i + 1 >= len(argv) or argv[i + 1].startswith('-'):
            print('mutate.py: --build takes a directory (--build DIR; --help)', file=sys.stderr)
            return 2
        build = argv[i + 1]
        del argv[i:i + 2]
    check_only = '--check-current' in argv
    argv = [a for a in argv if a != '--check-current']
    options = [a for a in argv if a.startswith('-')]
    if options:  # not read as mutant ids
        print(f'mutate.py: unknown option {options[0]} (options: --build DIR, --check-current, --help)', file=sys.stderr)
        return 2
    path = argv[0] if argv and argv[0].endswith('.json') else os.path.join(os.path.dirname(__file__), 'mutants.json')
    only = set(a for a in argv if not a.endswith('.json'))
    mutants = json.load(open(path))
    if check_only:
        return check_current(mutants)
    unknown = only - {m['id'] for m in mutants}
    if unknown:
        print(f'unknown mutant ids: {" ".join(sorted(unknown))}', file=sys.stderr)
        return 2
    restore_left_backups(mutants)
    results = []
    for m in mutants:
        if only and m['id'] not in only:
            continue
        source = os.path.join(ROOT, m['file'])
        original = open(source).read()
        if original.count(m['old']) != 1:
            print(f"[{m['id']}] STALE: its text occurs {original.count(m['old'])} times in {m['file']}", flush=True)
            results.append((m, 'STALE'))
            continue
        start = time.time()
        write_whole(source + BACKUP, original)
        try:
            write_whole(source, original.replace(m['old'], m['new']))
            built = subprocess.run(['cmake', '--build', build, '-j', str(os.cpu_count() or 2), '--target'] + m['targets'],
                                   cwd=ROOT, capture_output=True, text=True)
            if built.returncode != 0:
                verdict, detail = 'BUILD-FAILED', (built.stdout + built.stderr)[-300:]
            else:
                run = subprocess.run(['ctest', '--test-dir', build, '-R', m['tests'], '--stop-on-failure'], cwd=ROOT,
                                     capture_output=True, text=True)
                ran = [l for l in run.stdout.splitlines() if ' Test ' in l and '#' in l]
                failed = [l.strip() for l in ran if 'Passed' not in l]
                if not ran:
                    verdict, detail = 'NO-TESTS', f"ctest -R '{m['tests']}' ran nothing"
                else:
                    verdict = 'KILLED' if run.returncode != 0 else 'SURVIVED'
                    detail = failed[0] if failed else ''
        finally:
            restore(source, original)
        note = ' (equivalent: expected)' if verdict == 'SURVIVED' and m.get('equivalent') else ''
        print(f"[{m['id']}] {verdict}{note} {time.time() - start:.0f} s  {m['file']}: {m['what']}  {detail}", flush=True)
        results.append((m, verdict))
    killed = sum(v == 'KILLED' for _, v in results)
    missed = [m['id'] for m, v in results if v != 'KILLED' and not (v == 'SURVIVED' and m.get('equivalent'))]
    print(f'{killed} of {len(results)} killed; not killed (and not equivalent): {" ".join(missed) or "none"}')
    print('(the sources are restored; rebuild before using the build directory: cmake --build ' + build + ')')
    return 1 if missed else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
