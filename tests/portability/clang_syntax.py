#!/usr/bin/python3
"""Compiles every C++ source of the build once more with Clang, syntax and semantics only (-fsyntax-only),
with the same defines, include paths and language level as the build (from its compile_commands.json).
The build itself uses one compiler; this keeps the code C++17 that Clang accepts too (GCC-only builtins,
extensions and missing includes fail here). Exit 77 (skipped) where no clang++ is installed.

usage: clang_syntax.py BUILD_DIR/compile_commands.json [clang++]"""
import concurrent.futures, json, os, shlex, shutil, subprocess, sys, time

SKIP = 77


def clang_command(entry, clang):
    """The build's own command for the source, with clang++ for the compiler, no output, -fsyntax-only."""
    args = entry['arguments'] if 'arguments' in entry else shlex.split(entry['command'])
    out = [clang, '-fsyntax-only', '-Wno-unknown-warning-option']
    rest = iter(args[1:])
    for arg in rest:
        if arg == '-o':
            next(rest, None)
        elif arg != '-c':
            out.append(arg)
    return out


def main():
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    clang = sys.argv[2] if len(sys.argv) > 2 else shutil.which('clang++')
    if not clang or not shutil.which(clang):
        print('clang++ not found: skipped (apt-get install clang)')
        return SKIP
    entries = [e for e in json.load(open(sys.argv[1])) if e['file'].endswith('.cpp')]
    if not entries:
        print(f'{sys.argv[1]}: no C++ sources listed', file=sys.stderr)
        return 2
    version = subprocess.run([clang, '--version'], capture_output=True, text=True).stdout.splitlines()[0]
    print(f'{version}: {len(entries)} sources', flush=True)
    start = time.time()

    def check(entry):
        run = subprocess.run(clang_command(entry, clang), cwd=entry['directory'], capture_output=True, text=True)
        return entry['file'], run.returncode, run.stderr

    failed = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        for path, rc, stderr in pool.map(check, entries):
            if rc != 0:
                failed += 1
                print(f'FAILED {path}\n{stderr}', flush=True)
    print(f'{len(entries) - failed} of {len(entries)} sources compile with Clang ({time.time() - start:.0f} s)')
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
