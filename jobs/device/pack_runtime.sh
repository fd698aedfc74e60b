#!/usr/bin/env bash
# Packs what a built `longctx` needs at run time into one folder, for a machine that has a GPU and its
# driver but none of our build dependencies and cannot install (the `device` tool's machine): the shared
# libraries of the binary, of Open MPI's launcher and of every Open MPI / PMIx plugin (glibc excepted),
# the plugins themselves, Open MPI's help files and launcher binaries, laid out under DIR/root as on this
# machine, and DIR/env.sh, which points the loader and Open MPI / PMIx there (OPAL_PREFIX,
# PMIX_PREFIX).
#
#   jobs/device/pack_runtime.sh [BUILD (build-cuda)] [DIR (.device/runtime)]
#   there:  source DIR/env.sh && BUILD/bin/longctx --version && mpirun -np 2 BUILD/bin/longctx info
#
# jobs/device/check_pack.sh checks a pack here with the system's MPI, HDF5 and Boost hidden.
set -euo pipefail
case "${1:-}" in  # --help: the header above; an option is refused before anything runs (exit 2)
  -h | --help) sed -n '2,/^[^#]/{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;
  -*) echo "pack_runtime.sh: unknown option '$1' (--help)" >&2; exit 2 ;;
esac
[ $# -le 2 ] || { echo "pack_runtime.sh: takes at most two arguments, BUILD and DIR (got: $*; --help)" >&2; exit 2; }
build=${1:-build-cuda}
out=${2:-.device/runtime}
binary="$build/bin/longctx"
[ -x "$binary" ] || { echo "pack_runtime: $binary not found; build it first (LONGCTX_BUILD=$build ./jobs/build.sh)" >&2; exit 2; }
packages=(libopenmpi3 openmpi-bin openmpi-common libpmix2)
for p in "${packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || { echo "pack_runtime: package $p is not installed" >&2; exit 2; }
done

rm -rf "$out"
mkdir -p "$out/root"
list=$(mktemp)
trap 'rm -f "$list" "$list".*' EXIT
# The packages' regular files (symlinks to files included: cp -L below stores their contents).
dpkg -L "${packages[@]}" | while read -r f; do [ -f "$f" ] && echo "$f"; done | grep -v '^/usr/share/doc/' >"$list"
echo "$binary" >>"$list"
# The shared libraries of every ELF file in the list, minus glibc (the target's own must be used).
glibc='/(libc|libm|libpthread|libdl|librt|libresolv|libutil|ld-linux-x86-64)\.so'
grep -v "^$binary\$" "$list" | while read -r f; do [ "$(head -c 4 "$f" | tail -c 3 | tr -d '\0')" = ELF ] && echo "$f"; done >"$list.elf" || true
# Each by its soname, in its real folder (/lib is /usr/lib here), stored as a file (cp -L).
{ cat "$list.elf"; echo "$binary"; } | xargs -r ldd 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// {print $3}' |
  grep -Ev "$glibc" | while read -r f; do echo "$(readlink -f "$(dirname "$f")")/$(basename "$f")"; done |
  sort -u >"$list.libs"
rm -f "$list.elf"
# Links within a folder stay links; absolute ones (Debian's alternatives: mpirun) become files.
grep -v "^$binary\$" "$list" | sort -u | while read -r f; do
  if [ -L "$f" ] && [[ "$(readlink "$f")" != /* ]]; then cp -P --parents "$f" "$out/root/"; else cp -L --parents "$f" "$out/root/"; fi
done
while read -r f; do [ -e "$out/root$f" ] || cp -L --parents "$f" "$out/root/"; done <"$list.libs"
rm -f "$list.libs"

# Debian makes mpirun / mpiexec by alternatives at install time.
ln -sf orterun "$out/root/usr/bin/mpirun"
ln -sf orterun "$out/root/usr/bin/mpiexec"

cat >"$out/env.sh" <<'EOF'
# Source me (bash): longctx's run-time libraries and Open MPI from this folder.
_devrt=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/root
export OPAL_PREFIX=$_devrt/usr
export PMIX_PREFIX=$_devrt/usr/lib/x86_64-linux-gnu/pmix2 PMIX_INSTALL_PREFIX=$_devrt/usr/lib/x86_64-linux-gnu/pmix2
export LD_LIBRARY_PATH=$_devrt/usr/lib/x86_64-linux-gnu/openmpi/lib:$_devrt/usr/lib/x86_64-linux-gnu:$_devrt/lib/x86_64-linux-gnu:$_devrt/usr/lib/x86_64-linux-gnu/pmix2/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# PMIx 4 does not relocate by its prefix variables alone: name its plugin folder.
export PMIX_MCA_mca_base_component_path=$_devrt/usr/lib/x86_64-linux-gnu/pmix2/lib/pmix
export PATH=$_devrt/usr/bin:$PATH
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
# Shared memory and TCP between the ranks of one machine; no fabric plugins are looked for.
export OMPI_MCA_pml=ob1 OMPI_MCA_btl=self,vader,tcp OMPI_MCA_mtl=^ofi,psm,psm2 OMPI_MCA_btl_base_warn_component_unused=0
unset _devrt
EOF
echo "pack_runtime: $(du -sh "$out" | cut -f1) in $out ($(find "$out/root" -type f | wc -l) files); there: source $out/env.sh"
